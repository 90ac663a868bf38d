-- name: CreateTemplateSnapshot :one
INSERT INTO snapshots (id, team_id, name, host_id, source_sandbox_id, template, vcpus, memory_mib, disk_mib, status, kind)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'creating', $10)
RETURNING *;

-- name: UpsertTeamTemplate :one
INSERT INTO team_templates (id, team_id, name) VALUES ($1, $2, $3)
ON CONFLICT (team_id, name) DO UPDATE SET name = EXCLUDED.name
RETURNING *;

-- name: GetTeamTemplate :one
SELECT * FROM team_templates WHERE id = $1 AND team_id = $2;

-- name: GetTeamTemplateByName :one
SELECT * FROM team_templates WHERE team_id = $1 AND name = $2;

-- name: ListTeamTemplates :many
SELECT * FROM team_templates WHERE team_id = $1 ORDER BY name;

-- name: ListVisibleTemplates :many
-- The team's own templates and every published one, its own first.
SELECT * FROM team_templates WHERE team_id = $1 OR public ORDER BY team_id <> $1, name;

-- name: GetPublicTemplate :one
SELECT * FROM team_templates WHERE id = $1 AND public;

-- name: GetPublicTemplateByName :one
SELECT * FROM team_templates WHERE name = $1 AND public;

-- name: SetTemplatePublic :one
UPDATE team_templates SET public = $2 WHERE id = $1 RETURNING *;

-- name: DeleteTeamTemplate :exec
DELETE FROM team_templates WHERE id = $1;

-- name: CreateTemplateBuild :one
INSERT INTO template_builds (id, template_id, team_id, status, spec, vcpus, memory_mib)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING *;

-- name: GetTemplateBuild :one
SELECT * FROM template_builds WHERE id = $1 AND template_id = $2;

-- name: ListTemplateBuilds :many
SELECT * FROM template_builds WHERE template_id = $1 ORDER BY created_at DESC, id;

-- name: LatestReadyBuild :one
SELECT * FROM template_builds WHERE template_id = $1 AND status = 'ready' AND snapshot_id IS NOT NULL
ORDER BY finished_at DESC, id LIMIT 1;

-- name: StartTemplateBuild :one
UPDATE template_builds SET status = 'building', spec = $2 WHERE id = $1 AND status = 'waiting' RETURNING *;

-- name: FinishTemplateBuild :one
UPDATE template_builds SET status = $2, snapshot_id = $3, envs = $4, workdir = $5, failed_step = $6, exit_code = $7,
    error = $8, finished_at = now()
WHERE id = $1 RETURNING *;

-- name: RequestBuildCancel :one
UPDATE template_builds SET cancel_requested = true WHERE id = $1 AND status IN ('waiting', 'building') RETURNING *;

-- name: BuildCancelRequested :one
SELECT cancel_requested FROM template_builds WHERE id = $1;

-- name: FailOrphanBuilds :exec
UPDATE template_builds SET status = 'error', error = 'the control plane running this build stopped', finished_at = now()
WHERE status = 'building';

-- name: AppendBuildLog :exec
INSERT INTO template_build_logs (build_id, seq, level, step, message)
VALUES ($1, (SELECT coalesce(max(seq), -1) + 1 FROM template_build_logs WHERE build_id = $1), $2, $3, $4);

-- name: BuildLogs :many
SELECT * FROM template_build_logs WHERE build_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3;

-- name: SetTemplateTag :exec
INSERT INTO template_tags (template_id, tag, build_id) VALUES ($1, $2, $3)
ON CONFLICT (template_id, tag) DO UPDATE SET build_id = EXCLUDED.build_id, created_at = now();

-- name: DeleteTemplateTag :exec
DELETE FROM template_tags WHERE template_id = $1 AND tag = $2;

-- name: ListTemplateTags :many
SELECT * FROM template_tags WHERE template_id = $1 ORDER BY tag;

-- name: GetTemplateTag :one
SELECT * FROM template_tags WHERE template_id = $1 AND tag = $2;

-- name: TemplateFileExists :one
SELECT count(*) > 0 FROM template_files WHERE team_id = $1 AND hash = $2;

-- name: PutTemplateFile :exec
INSERT INTO template_files (team_id, hash, data) VALUES ($1, $2, $3)
ON CONFLICT (team_id, hash) DO UPDATE SET data = EXCLUDED.data;

-- name: GetTemplateFile :one
SELECT data FROM template_files WHERE team_id = $1 AND hash = $2;

-- name: DeleteTemplateFile :exec
DELETE FROM template_files WHERE team_id = $1 AND hash = $2;

-- name: ReadyBuildSpecs :many
SELECT spec FROM template_builds WHERE team_id = $1 AND status IN ('ready', 'building', 'waiting') AND id <> $2;

-- name: GetTemplateLayer :one
SELECT l.snapshot_id, s.host_id FROM template_layers l JOIN snapshots s ON s.id = l.snapshot_id
WHERE l.team_id = $1 AND l.key = $2 AND s.status = 'ready';

-- name: PutTemplateLayer :exec
INSERT INTO template_layers (team_id, key, snapshot_id, build_id) VALUES ($1, $2, $3, $4)
ON CONFLICT (team_id, key) DO UPDATE SET snapshot_id = EXCLUDED.snapshot_id, build_id = EXCLUDED.build_id;

-- name: BuildLayerSnapshots :many
SELECT s.* FROM template_layers l JOIN snapshots s ON s.id = l.snapshot_id WHERE l.build_id = $1;

-- name: TemplateSnapshots :many
SELECT s.* FROM template_builds b JOIN snapshots s ON s.id = b.snapshot_id WHERE b.template_id = $1;

-- name: TeamLayerSnapshots :many
SELECT s.* FROM template_layers l JOIN snapshots s ON s.id = l.snapshot_id WHERE l.team_id = $1;

-- name: SandboxesFromSnapshots :one
SELECT count(*) FROM sandboxes WHERE snapshot_id = ANY(sqlc.arg(ids)::uuid[]) AND state NOT IN ('stopped', 'error');

-- name: ListAllTeamSnapshots :many
SELECT * FROM snapshots WHERE team_id = $1 ORDER BY created_at, id;
