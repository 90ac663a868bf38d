-- name: CreateSandbox :one
INSERT INTO sandboxes (id, team_id, host_id, template, snapshot_id, state, vcpus, memory_mib, disk_mib,
    timeout_seconds, on_timeout, allow_internet, allow_public_traffic, auto_resume, metadata, envd_token_enc, traffic_token_enc)
VALUES ($1, $2, $3, $4, $5, 'creating', $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
RETURNING *;

-- name: GetSandbox :one
SELECT * FROM sandboxes WHERE id = $1 AND team_id = $2;

-- name: GetSandboxAny :one
SELECT * FROM sandboxes WHERE id = $1;

-- name: ListSandboxes :many
SELECT * FROM sandboxes
WHERE team_id = $1
  AND (sqlc.narg(state)::text IS NULL OR state = sqlc.narg(state)::text)
  AND (sqlc.narg(states)::text[] IS NULL OR state = ANY(sqlc.narg(states)::text[]))
  AND (sqlc.narg(started_after)::timestamptz IS NULL OR created_at > sqlc.narg(started_after)::timestamptz)
  AND (sqlc.narg(template)::text IS NULL OR template = sqlc.narg(template)::text)
  AND (sqlc.narg(metadata)::jsonb IS NULL OR metadata @> sqlc.narg(metadata)::jsonb)
  AND (sqlc.arg(include_stopped)::boolean OR state NOT IN ('stopped', 'error'))
ORDER BY
  CASE WHEN sqlc.arg(oldest_first)::boolean THEN created_at END ASC,
  CASE WHEN NOT sqlc.arg(oldest_first)::boolean THEN created_at END DESC,
  id
LIMIT $2 OFFSET $3;

-- name: ListAllSandboxes :many
SELECT * FROM sandboxes
WHERE (sqlc.arg(include_stopped)::boolean OR state NOT IN ('stopped', 'error'))
ORDER BY created_at DESC, id
LIMIT $1 OFFSET $2;

-- name: ListActiveSandboxesOnHost :many
SELECT * FROM sandboxes WHERE host_id = $1 AND state NOT IN ('stopped', 'error');

-- name: SetSandboxState :one
UPDATE sandboxes SET state = $2, error = $3, state_changed_at = now(),
    stopped_at = CASE WHEN $2 IN ('stopped', 'error') THEN coalesce(stopped_at, now()) ELSE stopped_at END
WHERE id = $1
RETURNING *;

-- name: TransitionSandbox :one
UPDATE sandboxes SET state = @to_state, error = '', state_changed_at = now()
WHERE id = $1 AND state = ANY(@from_states::text[])
RETURNING *;

-- name: SetSandboxRunning :one
UPDATE sandboxes SET state = 'running', error = '', envd_version = $2, expires_at = $3, state_changed_at = now()
WHERE id = $1 AND state = ANY(@from_states::text[])
RETURNING *;

-- name: SetSandboxPaused :one
UPDATE sandboxes SET state = 'paused', error = '', expires_at = NULL, state_changed_at = now()
WHERE id = $1 AND state = ANY(@from_states::text[])
RETURNING *;

-- name: SetSandboxHost :exec
UPDATE sandboxes SET host_id = $2 WHERE id = $1;

-- name: SetSandboxExpiry :one
UPDATE sandboxes SET expires_at = $2, timeout_seconds = $3 WHERE id = $1 RETURNING *;

-- name: CountActiveSandboxes :one
SELECT count(*) FROM sandboxes WHERE team_id = $1 AND state NOT IN ('stopped', 'error');

-- name: CreateSnapshot :one
INSERT INTO snapshots (id, team_id, name, host_id, source_sandbox_id, template, vcpus, memory_mib, disk_mib, status)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'creating')
RETURNING *;

-- name: GetSnapshot :one
SELECT * FROM snapshots WHERE id = $1 AND team_id = $2;

-- name: GetSnapshotByName :one
SELECT * FROM snapshots WHERE team_id = $1 AND name = $2 AND kind = 'user';

-- name: ListSnapshots :many
SELECT * FROM snapshots WHERE team_id = $1 AND kind = 'user' ORDER BY created_at, id;

-- name: SetSnapshotReady :one
UPDATE snapshots SET status = 'ready', size_bytes = $2 WHERE id = $1 RETURNING *;

-- name: DeleteSnapshot :exec
DELETE FROM snapshots WHERE id = $1;

-- name: HostLoads :many
SELECT host_id::uuid AS host_id, count(*)::int AS sandboxes, sum(vcpus)::int AS vcpus, sum(memory_mib)::bigint AS memory_mib
FROM sandboxes
WHERE host_id IS NOT NULL AND state NOT IN ('stopped', 'error', 'paused')
GROUP BY host_id;

-- name: SetSandboxDisk :exec
UPDATE sandboxes SET disk_mib = $2 WHERE id = $1;

-- name: SetSandboxEnvVarNames :exec
UPDATE sandboxes SET env_var_names = $2 WHERE id = $1;

-- name: SetSandboxNetwork :one
UPDATE sandboxes SET network = $2 WHERE id = $1 RETURNING *;
