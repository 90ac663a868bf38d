-- name: CreateIdentity :one
INSERT INTO user_identities (provider, subject, user_id, login)
VALUES ($1, $2, $3, $4)
RETURNING *;

-- name: GetIdentity :one
SELECT * FROM user_identities WHERE provider = $1 AND subject = $2;

-- name: GetUserIdentity :one
SELECT * FROM user_identities WHERE user_id = $1 AND provider = $2;

-- name: SetIdentityLogin :exec
UPDATE user_identities SET login = $3 WHERE provider = $1 AND subject = $2;

-- name: DeleteUserIdentity :execrows
DELETE FROM user_identities WHERE user_id = $1 AND provider = $2;

-- name: CreateHandoff :exec
INSERT INTO auth_handoffs (hash, session_id, expires_at) VALUES ($1, $2, $3);

-- name: RedeemHandoff :one
DELETE FROM auth_handoffs WHERE hash = $1 AND expires_at > now()
RETURNING session_id;

-- name: DeleteExpiredHandoffs :exec
DELETE FROM auth_handoffs WHERE expires_at <= now();
