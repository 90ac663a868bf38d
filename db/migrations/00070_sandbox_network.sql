-- +goose Up
-- A sandbox's own egress policy ({"allowOut": [...], "denyOut": [...]},
-- internal/egress.Policy), sent to its host at create and on change.
ALTER TABLE sandboxes ADD COLUMN network jsonb NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE sandboxes DROP COLUMN network;
