-- name: CreateTeam :one
INSERT INTO teams (id, name) VALUES ($1, $2) RETURNING *;

-- name: GetTeam :one
SELECT * FROM teams WHERE id = $1;

-- name: RenameTeam :one
UPDATE teams SET name = $2 WHERE id = $1 RETURNING *;

-- name: DeleteTeam :exec
DELETE FROM teams WHERE id = $1;

-- name: ListAllTeams :many
SELECT * FROM teams ORDER BY created_at, id;

-- name: ListTeamsForUser :many
SELECT t.id, t.name, t.created_at, m.role
FROM teams t JOIN team_members m ON m.team_id = t.id
WHERE m.user_id = $1
ORDER BY t.created_at, t.id;

-- name: AddMember :one
INSERT INTO team_members (team_id, user_id, role) VALUES ($1, $2, $3) RETURNING *;

-- name: GetMemberRole :one
SELECT role FROM team_members WHERE team_id = $1 AND user_id = $2;

-- name: ListMembers :many
SELECT u.id, u.email, u.name, m.role, m.created_at
FROM team_members m JOIN users u ON u.id = m.user_id
WHERE m.team_id = $1
ORDER BY m.created_at, u.id;

-- name: SetMemberRole :execrows
UPDATE team_members SET role = $3 WHERE team_id = $1 AND user_id = $2;

-- name: RemoveMember :execrows
DELETE FROM team_members WHERE team_id = $1 AND user_id = $2;

-- name: CountOwners :one
SELECT count(*) FROM team_members WHERE team_id = $1 AND role = 'owner';

-- name: CreateAPIKey :one
INSERT INTO api_keys (id, team_id, created_by, name, prefix, hash)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING *;

-- name: GetAPIKeyByHash :one
-- A key acts only while the user who made it is active.
SELECT sqlc.embed(k), coalesce(u.active, true)::boolean AS owner_active
FROM api_keys k LEFT JOIN users u ON u.id = k.created_by
WHERE k.hash = $1 AND k.revoked_at IS NULL;

-- name: TouchAPIKey :exec
UPDATE api_keys SET last_used_at = now()
WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute');

-- name: ListAPIKeys :many
SELECT * FROM api_keys WHERE team_id = $1 ORDER BY created_at, id;

-- name: RevokeAPIKey :execrows
UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND team_id = $2 AND revoked_at IS NULL;

-- name: IsMemberByEmail :one
SELECT EXISTS (
    SELECT 1 FROM team_members m JOIN users u ON u.id = m.user_id
    WHERE m.team_id = $1 AND lower(u.email) = lower(@email::text));

-- name: CreateInvitation :one
INSERT INTO team_invitations (id, team_id, email, role, invited_by, expires_at)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING *;

-- name: DeleteExpiredInvitation :exec
DELETE FROM team_invitations WHERE team_id = $1 AND lower(email) = lower(@email::text) AND expires_at <= now();

-- name: ListTeamInvitations :many
SELECT * FROM team_invitations WHERE team_id = $1 AND expires_at > now() ORDER BY created_at, id;

-- name: DeleteTeamInvitation :execrows
DELETE FROM team_invitations WHERE id = $1 AND team_id = $2;

-- name: ListInvitationsForEmail :many
SELECT i.id, i.team_id, t.name AS team_name, i.role, i.created_at, i.expires_at, coalesce(u.email, '') AS invited_by_email
FROM team_invitations i
JOIN teams t ON t.id = i.team_id
LEFT JOIN users u ON u.id = i.invited_by
WHERE lower(i.email) = lower(@email::text) AND i.expires_at > now()
ORDER BY i.created_at, i.id;

-- name: TakeInvitation :one
DELETE FROM team_invitations
WHERE id = $1 AND lower(email) = lower(@email::text) AND expires_at > now()
RETURNING *;
