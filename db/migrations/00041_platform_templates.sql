-- Platform templates (issue 14): an admin publishes one of their team's
-- templates to every team. Other teams start sandboxes from it and build
-- on it; only its own team changes or deletes it. Published names are
-- unique, so a name resolves to one platform template.
-- +goose Up
ALTER TABLE team_templates ADD COLUMN public BOOLEAN NOT NULL DEFAULT false;
CREATE UNIQUE INDEX team_templates_public_name ON team_templates (name) WHERE public;

-- +goose Down
DROP INDEX team_templates_public_name;
ALTER TABLE team_templates DROP COLUMN public;
