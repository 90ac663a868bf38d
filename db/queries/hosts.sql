-- name: CreateHostToken :one
INSERT INTO host_tokens (id, hash, created_by, expires_at) VALUES ($1, $2, $3, $4) RETURNING *;

-- name: UseHostToken :one
UPDATE host_tokens SET used_at = now(), host_id = $2
WHERE hash = $1 AND used_at IS NULL AND expires_at > now()
RETURNING id;

-- name: CreateHost :one
INSERT INTO hosts (id, name, address, status, secret_hash, secret_enc)
VALUES ($1, $2, $3, 'pending', $4, $5)
RETURNING *;

-- name: GetHost :one
SELECT * FROM hosts WHERE id = $1;

-- name: ListHosts :many
SELECT * FROM hosts ORDER BY created_at, id;

-- name: HostHeartbeat :one
UPDATE hosts SET
    address = $2, runtime = $3, accelerator = $4, cpus = $5, memory_mib = $6,
    disk_free_mib = $7, max_sandboxes = $8, sandbox_count = $9,
    committed_vcpus = $10, committed_memory_mib = $11, templates = $12,
    last_heartbeat_at = now(),
    status = CASE WHEN status IN ('pending', 'unreachable') THEN 'ready' ELSE status END
WHERE id = $1
RETURNING *;

-- name: SetHostStatus :one
UPDATE hosts SET status = $2 WHERE id = $1 RETURNING *;

-- name: SetHostUnknownSandboxes :exec
UPDATE hosts SET unknown_sandboxes = $2 WHERE id = $1;

-- name: MarkStaleHostsUnreachable :many
UPDATE hosts SET status = 'unreachable'
WHERE status IN ('ready', 'draining') AND (last_heartbeat_at IS NULL OR last_heartbeat_at < @cutoff::timestamptz)
RETURNING id;

-- name: DeleteHost :execrows
DELETE FROM hosts WHERE id = $1;

-- name: UpsertTemplate :exec
INSERT INTO templates (team_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING;

-- name: ListTemplates :many
SELECT * FROM templates WHERE team_id = $1 OR team_id = '00000000-0000-0000-0000-000000000000' ORDER BY name;
