-- name: InsertAudit :exec
INSERT INTO audit_log (id, team_id, actor_type, actor_id, action, resource_type, resource_id, result, status, detail, ip)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11);

-- name: ListAudit :many
SELECT * FROM audit_log
WHERE (sqlc.narg(team_id)::uuid IS NULL OR team_id = sqlc.narg(team_id)::uuid)
  AND (sqlc.narg(action)::text IS NULL OR action = sqlc.narg(action)::text)
  AND (sqlc.narg(resource_type)::text IS NULL OR resource_type = sqlc.narg(resource_type)::text)
  AND (sqlc.narg(resource_id)::text IS NULL OR resource_id = sqlc.narg(resource_id)::text)
  AND (sqlc.narg(actor_id)::text IS NULL OR actor_id = sqlc.narg(actor_id)::text)
  AND (sqlc.narg(before)::timestamptz IS NULL OR created_at < sqlc.narg(before)::timestamptz)
  AND (sqlc.narg(after)::timestamptz IS NULL OR created_at >= sqlc.narg(after)::timestamptz)
  AND (sqlc.narg(result)::text IS NULL OR result = sqlc.narg(result)::text)
ORDER BY created_at DESC, id
LIMIT $1;
