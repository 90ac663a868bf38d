-- name: GetTeamQuota :one
SELECT * FROM team_quotas WHERE team_id = $1;

-- name: SetTeamQuota :one
INSERT INTO team_quotas (team_id, sandboxes, vcpus, memory_mib, disk_mib, snapshots, creates_per_minute, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, now())
ON CONFLICT (team_id) DO UPDATE SET sandboxes = EXCLUDED.sandboxes, vcpus = EXCLUDED.vcpus, memory_mib = EXCLUDED.memory_mib,
    disk_mib = EXCLUDED.disk_mib, snapshots = EXCLUDED.snapshots, creates_per_minute = EXCLUDED.creates_per_minute, updated_at = now()
RETURNING *;

-- name: LockTeamQuota :exec
-- Serialises the quota checks of one team's creates and resumes.
SELECT pg_advisory_xact_lock(hashtextextended(sqlc.arg(team_id)::uuid::text, 7365896));

-- name: TeamUsage :one
-- Paused sandboxes hold disk but no CPU or memory.
SELECT
    count(*) FILTER (WHERE state NOT IN ('stopped', 'error'))::int AS sandboxes,
    coalesce(sum(vcpus) FILTER (WHERE state NOT IN ('stopped', 'error', 'paused')), 0)::int AS vcpus,
    coalesce(sum(memory_mib) FILTER (WHERE state NOT IN ('stopped', 'error', 'paused')), 0)::bigint AS memory_mib,
    -- A sandbox that named no disk counts as default_disk_mib until its host says.
    coalesce(sum(CASE WHEN disk_mib > 0 THEN disk_mib ELSE sqlc.arg(default_disk_mib)::int END) FILTER (WHERE state NOT IN ('stopped', 'error')), 0)::bigint AS disk_mib,
    count(*) FILTER (WHERE created_at > now() - interval '1 minute')::int AS created_last_minute,
    -- Cached build layers are the platform's, not the team's.
    (SELECT count(*) FROM snapshots s WHERE s.team_id = sqlc.arg(team_id)::uuid AND s.kind <> 'layer')::int AS snapshots
FROM sandboxes WHERE team_id = sqlc.arg(team_id)::uuid;
