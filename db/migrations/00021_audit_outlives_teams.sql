-- Audit rows outlive what they describe: deleting a team used to erase its
-- whole audit history (ON DELETE CASCADE), and the deletion itself could
-- not be recorded (its row referred to a team that no longer existed).
-- team_id is now a plain column naming the team the entry was about.
-- +goose Up
ALTER TABLE audit_log DROP CONSTRAINT audit_log_team_id_fkey;

-- +goose Down
DELETE FROM audit_log a WHERE team_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM teams t WHERE t.id = a.team_id);
ALTER TABLE audit_log ADD CONSTRAINT audit_log_team_id_fkey FOREIGN KEY (team_id) REFERENCES teams (id) ON DELETE CASCADE;
