-- +goose Up
CREATE TABLE users (
    id            UUID PRIMARY KEY,
    email         TEXT NOT NULL,
    name          TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    is_admin      BOOLEAN NOT NULL DEFAULT false,
    active        BOOLEAN NOT NULL DEFAULT true,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE teams (
    id         UUID PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The platform team owns what belongs to everyone (built-in templates).
INSERT INTO teams (id, name) VALUES ('00000000-0000-0000-0000-000000000000', 'platform');

CREATE TABLE team_members (
    team_id    UUID NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members (user_id);

CREATE TABLE sessions (
    id         UUID PRIMARY KEY,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    team_id    UUID REFERENCES teams (id) ON DELETE SET NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_keys (
    id           UUID PRIMARY KEY,
    team_id      UUID NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    created_by   UUID REFERENCES users (id) ON DELETE SET NULL,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    hash         BYTEA NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX api_keys_team ON api_keys (team_id);

CREATE TABLE hosts (
    id                   UUID PRIMARY KEY,
    name                 TEXT NOT NULL,
    address              TEXT NOT NULL DEFAULT '',
    status               TEXT NOT NULL CHECK (status IN ('pending', 'ready', 'draining', 'unreachable')),
    secret_hash          BYTEA,
    secret_enc           BYTEA,
    runtime              TEXT NOT NULL DEFAULT '',
    accelerator          TEXT NOT NULL DEFAULT '',
    cpus                 INTEGER NOT NULL DEFAULT 0,
    memory_mib           BIGINT NOT NULL DEFAULT 0,
    disk_free_mib        BIGINT NOT NULL DEFAULT 0,
    max_sandboxes        INTEGER NOT NULL DEFAULT 0,
    sandbox_count        INTEGER NOT NULL DEFAULT 0,
    committed_vcpus      INTEGER NOT NULL DEFAULT 0,
    committed_memory_mib BIGINT NOT NULL DEFAULT 0,
    templates            TEXT[] NOT NULL DEFAULT '{}',
    unknown_sandboxes    TEXT[] NOT NULL DEFAULT '{}',
    last_heartbeat_at    TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE host_tokens (
    id         UUID PRIMARY KEY,
    hash       BYTEA NOT NULL UNIQUE,
    created_by UUID REFERENCES users (id) ON DELETE SET NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ,
    host_id    UUID REFERENCES hosts (id) ON DELETE SET NULL
);

CREATE TABLE templates (
    team_id    UUID NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, name)
);

CREATE TABLE snapshots (
    id                UUID PRIMARY KEY,
    team_id           UUID NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    name              TEXT NOT NULL,
    host_id           UUID REFERENCES hosts (id) ON DELETE SET NULL,
    source_sandbox_id UUID,
    template          TEXT NOT NULL,
    vcpus             INTEGER NOT NULL,
    memory_mib        INTEGER NOT NULL,
    disk_mib          INTEGER NOT NULL,
    size_bytes        BIGINT NOT NULL DEFAULT 0,
    status            TEXT NOT NULL CHECK (status IN ('creating', 'ready', 'error')),
    error             TEXT NOT NULL DEFAULT '',
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (team_id, name)
);

CREATE TABLE sandboxes (
    id                 UUID PRIMARY KEY,
    team_id            UUID NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    host_id            UUID REFERENCES hosts (id) ON DELETE SET NULL,
    template           TEXT NOT NULL,
    snapshot_id        UUID REFERENCES snapshots (id) ON DELETE SET NULL,
    state              TEXT NOT NULL CHECK (state IN ('creating', 'running', 'pausing', 'paused', 'resuming', 'stopping', 'stopped', 'error')),
    vcpus              INTEGER NOT NULL,
    memory_mib         INTEGER NOT NULL,
    disk_mib           INTEGER NOT NULL,
    timeout_seconds    INTEGER NOT NULL,
    on_timeout         TEXT NOT NULL CHECK (on_timeout IN ('destroy', 'pause')),
    allow_internet     BOOLEAN NOT NULL,
    -- Ports other than envd's take anyone, or only holders of the traffic token.
    allow_public_traffic BOOLEAN NOT NULL DEFAULT true,
    -- A request through the sandbox proxy resumes it when paused.
    auto_resume        BOOLEAN NOT NULL DEFAULT false,
    metadata           JSONB NOT NULL DEFAULT '{}',
    envd_token_enc     BYTEA,
    traffic_token_enc  BYTEA,
    envd_version       TEXT NOT NULL DEFAULT '',
    error              TEXT NOT NULL DEFAULT '',
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    state_changed_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at         TIMESTAMPTZ,
    stopped_at         TIMESTAMPTZ
);
CREATE INDEX sandboxes_team ON sandboxes (team_id, created_at DESC);
CREATE INDEX sandboxes_host ON sandboxes (host_id) WHERE state NOT IN ('stopped', 'error');

CREATE TABLE audit_log (
    id            UUID PRIMARY KEY,
    team_id       UUID REFERENCES teams (id) ON DELETE CASCADE,
    actor_type    TEXT NOT NULL,
    actor_id      TEXT NOT NULL,
    action        TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    result        TEXT NOT NULL CHECK (result IN ('ok', 'error')),
    status        INTEGER NOT NULL,
    detail        TEXT NOT NULL DEFAULT '',
    ip            TEXT NOT NULL DEFAULT '',
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_team ON audit_log (team_id, created_at DESC);

-- +goose Down
DROP TABLE audit_log;
DROP TABLE sandboxes;
DROP TABLE snapshots;
DROP TABLE templates;
DROP TABLE host_tokens;
DROP TABLE hosts;
DROP TABLE api_keys;
DROP TABLE sessions;
DROP TABLE team_members;
DROP TABLE teams;
DROP TABLE users;
