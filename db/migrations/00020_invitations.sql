-- Adding someone to a team is an invitation they accept or decline; until
-- then nothing changes for them. A user's active team is their own
-- remembered choice, defaulting to their personal team (it used to be
-- whichever of their teams was created first, which another user could
-- take over by adding them).
-- +goose Up
ALTER TABLE users ADD COLUMN personal_team_id UUID REFERENCES teams (id) ON DELETE SET NULL;
ALTER TABLE users ADD COLUMN active_team_id UUID REFERENCES teams (id) ON DELETE SET NULL;
-- A user's personal team is the first team they own.
UPDATE users u SET personal_team_id = (
    SELECT m.team_id FROM team_members m JOIN teams t ON t.id = m.team_id
    WHERE m.user_id = u.id AND m.role = 'owner'
    ORDER BY t.created_at, t.id LIMIT 1);

-- Invitations are kept by email, whether or not an account has it, so
-- that inviting reveals nothing about which emails are registered.
CREATE TABLE team_invitations (
    id         UUID PRIMARY KEY,
    team_id    UUID NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    email      TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    invited_by UUID REFERENCES users (id) ON DELETE SET NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX team_invitations_team_email ON team_invitations (team_id, lower(email));
CREATE INDEX team_invitations_email ON team_invitations (lower(email));

-- +goose Down
DROP TABLE team_invitations;
ALTER TABLE users DROP COLUMN active_team_id;
ALTER TABLE users DROP COLUMN personal_team_id;
