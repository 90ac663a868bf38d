-- name: TeamUsageByDay :many
-- A team's running periods cut at UTC midnights, summed per day from
-- @first_day to @last_day (inclusive); a period still open counts until now.
WITH days AS (
    SELECT d::date AS day, d AT TIME ZONE 'UTC' AS day_start, (d + interval '1 day') AT TIME ZONE 'UTC' AS day_end
    FROM generate_series(CAST(@first_day::date AS timestamp), CAST(@last_day::date AS timestamp), interval '1 day') AS d
), parts AS (
    SELECT days.day, r.sandbox_id, r.vcpus, r.memory_mib,
           EXTRACT(EPOCH FROM LEAST(COALESCE(r.ended_at, now()), days.day_end) - GREATEST(r.started_at, days.day_start))::float8 AS seconds
    FROM days JOIN sandbox_runs r
      ON r.team_id = @team_id AND r.started_at < days.day_end AND COALESCE(r.ended_at, now()) > days.day_start
)
SELECT days.day,
       count(DISTINCT parts.sandbox_id)::bigint AS sandboxes,
       COALESCE(sum(parts.seconds), 0)::float8 AS running_seconds,
       COALESCE(sum(parts.seconds * parts.vcpus), 0)::float8 AS vcpu_seconds,
       COALESCE(sum(parts.seconds * parts.memory_mib), 0)::float8 AS memory_mib_seconds
FROM days LEFT JOIN parts ON parts.day = days.day
GROUP BY days.day
ORDER BY days.day;

-- name: TeamUsageSandboxes :one
-- How many of a team's sandboxes ran at some time from @first_day to
-- @last_day (UTC, inclusive).
SELECT count(DISTINCT sandbox_id)::bigint FROM sandbox_runs
WHERE team_id = @team_id
  AND started_at < (CAST(@last_day::date AS timestamp) + interval '1 day') AT TIME ZONE 'UTC'
  AND COALESCE(ended_at, now()) > CAST(@first_day::date AS timestamp) AT TIME ZONE 'UTC';
