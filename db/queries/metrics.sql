-- name: CountLiveSandboxes :many
-- Sandboxes not stopped, by state and by the runtime of their host.
SELECT s.state, COALESCE(h.runtime, '')::text AS runtime, count(*)::bigint AS sandboxes
FROM sandboxes s LEFT JOIN hosts h ON h.id = s.host_id
WHERE s.state <> 'stopped'
GROUP BY 1, 2;
