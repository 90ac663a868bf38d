-- Usage metering: every period a sandbox spent running, with the vCPUs
-- and memory it held, so that usage per team and day (vCPU-seconds,
-- memory-MiB-seconds, running seconds) can be summed. A trigger on the
-- sandbox's state opens and closes the periods, whichever path changes
-- the state (the API, the proxy's auto-resume, the reconciler, a host's
-- report): paused, creating or stopped time is never in a period. The
-- rows outlive the sandbox (no foreign key to it); they go with the team.
-- +goose Up
CREATE TABLE sandbox_runs (
    id         BIGSERIAL PRIMARY KEY,
    sandbox_id UUID NOT NULL,
    team_id    UUID NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    vcpus      INTEGER NOT NULL,
    memory_mib INTEGER NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    ended_at   TIMESTAMPTZ,
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE INDEX sandbox_runs_team ON sandbox_runs (team_id, started_at);
CREATE UNIQUE INDEX sandbox_runs_open ON sandbox_runs (sandbox_id) WHERE ended_at IS NULL;

-- +goose StatementBegin
CREATE FUNCTION sandbox_runs_track() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.state = 'running' AND NEW.state <> 'running' THEN
        UPDATE sandbox_runs SET ended_at = now() WHERE sandbox_id = NEW.id AND ended_at IS NULL;
    END IF;
    IF NEW.state = 'running' AND (TG_OP = 'INSERT' OR OLD.state <> 'running') THEN
        INSERT INTO sandbox_runs (sandbox_id, team_id, vcpus, memory_mib, started_at)
        VALUES (NEW.id, NEW.team_id, NEW.vcpus, NEW.memory_mib, now())
        ON CONFLICT (sandbox_id) WHERE ended_at IS NULL DO NOTHING;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- +goose StatementEnd

CREATE TRIGGER sandbox_runs_track AFTER INSERT OR UPDATE OF state ON sandboxes
    FOR EACH ROW EXECUTE FUNCTION sandbox_runs_track();

-- Sandboxes running when this migration runs are metered from now on.
INSERT INTO sandbox_runs (sandbox_id, team_id, vcpus, memory_mib, started_at)
SELECT id, team_id, vcpus, memory_mib, now() FROM sandboxes WHERE state = 'running';

-- +goose Down
DROP TRIGGER sandbox_runs_track ON sandboxes;
DROP FUNCTION sandbox_runs_track();
DROP TABLE sandbox_runs;
