-- name: CreateUser :one
INSERT INTO users (id, email, name, password_hash, is_admin)
VALUES ($1, $2, $3, $4, $5)
RETURNING *;

-- name: CountUsers :one
SELECT count(*) FROM users;

-- name: GetUser :one
SELECT * FROM users WHERE id = $1;

-- name: GetUserByEmail :one
SELECT * FROM users WHERE lower(email) = lower(@email::text);

-- name: ListUsers :many
SELECT * FROM users ORDER BY created_at, id;

-- name: SetUserActive :one
UPDATE users SET active = $2 WHERE id = $1 RETURNING *;

-- name: CreateSession :one
INSERT INTO sessions (id, user_id, team_id, expires_at)
VALUES ($1, $2, $3, $4)
RETURNING *;

-- name: GetSession :one
SELECT * FROM sessions WHERE id = $1 AND expires_at > now();

-- name: DeleteSession :exec
DELETE FROM sessions WHERE id = $1;

-- name: DeleteUserSessions :exec
DELETE FROM sessions WHERE user_id = $1;

-- name: SetSessionTeam :exec
UPDATE sessions SET team_id = $2 WHERE id = $1;

-- name: LockSignup :exec
SELECT pg_advisory_xact_lock(7365896);

-- name: SetUserName :one
UPDATE users SET name = $2 WHERE id = $1 RETURNING *;

-- name: SetUserPassword :exec
UPDATE users SET password_hash = $2 WHERE id = $1;

-- name: DeleteOtherSessions :exec
DELETE FROM sessions WHERE user_id = $1 AND id <> $2;

-- name: GetSessionAny :one
SELECT * FROM sessions WHERE id = $1;
