-- +goose Up
-- Accounts at outside identity providers (GitHub), linked to a user. A user
-- signed up through one has an empty password_hash: no password sign-in
-- until they set one.
CREATE TABLE user_identities (
    provider   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    login      TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, subject),
    UNIQUE (user_id, provider)
);

-- A browser sign-in through a provider ends in a one-time handoff: the
-- callback opens the session and sets a short-lived cookie holding a code
-- whose hash is here; the dashboard exchanges it once for the session.
CREATE TABLE auth_handoffs (
    hash       BYTEA PRIMARY KEY,
    session_id UUID NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    expires_at TIMESTAMPTZ NOT NULL
);

-- The names (never the values) of the env vars a sandbox was created with.
ALTER TABLE sandboxes ADD COLUMN env_var_names TEXT[] NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE sandboxes DROP COLUMN env_var_names;
DROP TABLE auth_handoffs;
DROP TABLE user_identities;
