-- Per-team quotas: what one team may hold at once, so that no team can take
-- a whole host from the others. A NULL limit is the installation's default
-- (WRENN_QUOTA_*); a row exists only for teams an admin gave other limits.
-- +goose Up
CREATE TABLE team_quotas (
    team_id            UUID PRIMARY KEY REFERENCES teams (id) ON DELETE CASCADE,
    sandboxes          INTEGER CHECK (sandboxes >= 0),
    vcpus              INTEGER CHECK (vcpus >= 0),
    memory_mib         BIGINT CHECK (memory_mib >= 0),
    disk_mib           BIGINT CHECK (disk_mib >= 0),
    snapshots          INTEGER CHECK (snapshots >= 0),
    creates_per_minute INTEGER CHECK (creates_per_minute >= 0),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX sandboxes_team_recent ON sandboxes (team_id, created_at);

-- +goose Down
DROP INDEX sandboxes_team_recent;
DROP TABLE team_quotas;
