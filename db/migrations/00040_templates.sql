-- Template builds (issue 14). A template is a team's named recipe; each
-- build runs its spec in a build sandbox and freezes the result as a
-- snapshot of kind 'template'. Cached layers are snapshots of kind 'layer'
-- keyed by the chain of step inputs (see README, "Templates").
-- +goose Up
ALTER TABLE snapshots ADD COLUMN kind TEXT NOT NULL DEFAULT 'user' CHECK (kind IN ('user', 'template', 'layer'));

CREATE TABLE team_templates (
    id         UUID PRIMARY KEY,
    team_id    UUID NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (team_id, name)
);

CREATE TABLE template_builds (
    id          UUID PRIMARY KEY,
    template_id UUID NOT NULL REFERENCES team_templates (id) ON DELETE CASCADE,
    team_id     UUID NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    -- waiting: created, spec not yet given (E2B's two-call start).
    status      TEXT NOT NULL CHECK (status IN ('waiting', 'building', 'ready', 'error', 'cancelled')),
    spec        JSONB NOT NULL DEFAULT '{}',
    vcpus       INTEGER NOT NULL,
    memory_mib  INTEGER NOT NULL,
    snapshot_id UUID REFERENCES snapshots (id) ON DELETE SET NULL,
    -- The environment and working directory the steps left, applied to
    -- every sandbox created from the build.
    envs        JSONB NOT NULL DEFAULT '{}',
    workdir     TEXT NOT NULL DEFAULT '',
    cancel_requested BOOLEAN NOT NULL DEFAULT false,
    failed_step INTEGER,
    exit_code   INTEGER,
    error       TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ
);
CREATE INDEX template_builds_template ON template_builds (template_id, created_at);

CREATE TABLE template_tags (
    template_id UUID NOT NULL REFERENCES team_templates (id) ON DELETE CASCADE,
    tag         TEXT NOT NULL,
    build_id    UUID NOT NULL REFERENCES template_builds (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (template_id, tag)
);

CREATE TABLE template_build_logs (
    build_id  UUID NOT NULL REFERENCES template_builds (id) ON DELETE CASCADE,
    seq       INTEGER NOT NULL,
    at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    level     TEXT NOT NULL,
    step      TEXT NOT NULL DEFAULT '',
    message   TEXT NOT NULL,
    PRIMARY KEY (build_id, seq)
);

-- Build context archives, content-addressed per team.
CREATE TABLE template_files (
    team_id    UUID NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    hash       TEXT NOT NULL,
    data       BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, hash)
);

CREATE TABLE template_layers (
    team_id     UUID NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    snapshot_id UUID NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
    build_id    UUID REFERENCES template_builds (id) ON DELETE SET NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, key)
);

-- +goose Down
DROP TABLE template_layers;
DROP TABLE template_files;
DROP TABLE template_build_logs;
DROP TABLE template_tags;
DROP TABLE template_builds;
DROP TABLE team_templates;
ALTER TABLE snapshots DROP COLUMN kind;
