package service

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
)

// CreateTeam makes a team owned by the signed-in caller.
func (s *Service) CreateTeam(ctx context.Context, c auth.Caller, name string) (db.Team, error) {
	if c.Kind != auth.Session {
		return db.Team{}, errf(ErrForbidden, "teams are created by signed-in users, not API keys")
	}
	if err := validName("team name", name, 100); err != nil {
		return db.Team{}, err
	}
	var t db.Team
	err := s.inTx(ctx, func(q *db.Queries) error {
		var err error
		if t, err = q.CreateTeam(ctx, db.CreateTeamParams{ID: id.New(), Name: name}); err != nil {
			return err
		}
		_, err = q.AddMember(ctx, db.AddMemberParams{TeamID: t.ID, UserID: c.UserID, Role: "owner"})
		return err
	})
	return t, err
}

// ListTeams lists the teams the caller belongs to (an API key: its team).
func (s *Service) ListTeams(ctx context.Context, c auth.Caller) ([]db.ListTeamsForUserRow, error) {
	if c.Kind == auth.APIKey {
		t, err := s.Q.GetTeam(ctx, c.TeamID)
		if err != nil {
			return nil, err
		}
		return []db.ListTeamsForUserRow{{ID: t.ID, Name: t.Name, CreatedAt: t.CreatedAt, Role: c.Role}}, nil
	}
	return s.Q.ListTeamsForUser(ctx, c.UserID)
}

// teamRole is the caller's role in team, or ErrNotFound when the caller
// is not in it: another team's existence is not revealed.
func (s *Service) teamRole(ctx context.Context, c auth.Caller, team uuid.UUID) (string, error) {
	if c.Kind == auth.APIKey {
		if team != c.TeamID {
			return "", errf(ErrNotFound, "team not found")
		}
		return c.Role, nil
	}
	role, err := s.Q.GetMemberRole(ctx, db.GetMemberRoleParams{TeamID: team, UserID: c.UserID})
	if errors.Is(err, pgx.ErrNoRows) {
		return "", errf(ErrNotFound, "team not found")
	}
	return role, err
}

func (s *Service) requireTeamManager(ctx context.Context, c auth.Caller, team uuid.UUID) (string, error) {
	role, err := s.teamRole(ctx, c, team)
	if err != nil {
		return "", err
	}
	if role != "owner" && role != "admin" {
		return "", errf(ErrForbidden, "this needs the owner or admin role in the team")
	}
	return role, nil
}

// GetTeam returns a team the caller belongs to.
func (s *Service) GetTeam(ctx context.Context, c auth.Caller, team uuid.UUID) (db.Team, string, error) {
	role, err := s.teamRole(ctx, c, team)
	if err != nil {
		return db.Team{}, "", err
	}
	t, err := s.Q.GetTeam(ctx, team)
	return t, role, notFound(err, "team")
}

// RenameTeam renames a team (owner or admin).
func (s *Service) RenameTeam(ctx context.Context, c auth.Caller, team uuid.UUID, name string) (db.Team, error) {
	if _, err := s.requireTeamManager(ctx, c, team); err != nil {
		return db.Team{}, err
	}
	if err := validName("team name", name, 100); err != nil {
		return db.Team{}, err
	}
	t, err := s.Q.RenameTeam(ctx, db.RenameTeamParams{ID: team, Name: name})
	return t, notFound(err, "team")
}

// DeleteTeam deletes a team (owner only) that has no live sandboxes.
func (s *Service) DeleteTeam(ctx context.Context, c auth.Caller, team uuid.UUID) error {
	role, err := s.teamRole(ctx, c, team)
	if err != nil {
		return err
	}
	if role != "owner" {
		return errf(ErrForbidden, "only an owner can delete a team")
	}
	n, err := s.Q.CountActiveSandboxes(ctx, team)
	if err != nil {
		return err
	}
	if n > 0 {
		return errf(ErrConflict, "the team still has %d sandboxes; destroy them first", n)
	}
	// Snapshots hold files (memory included) on their hosts: they go
	// first, so that no file outlives its row. A host that cannot remove
	// one stops the deletion, to be tried again.
	snaps, err := s.Q.ListAllTeamSnapshots(ctx, team) // templates' and layers' too
	if err != nil {
		return err
	}
	for _, sn := range snaps {
		if err := s.deleteSnapshotFiles(ctx, sn); err != nil {
			return errf(ErrConflict, "the team's snapshot %q could not be removed (%v); try again once its host is back, or delete the snapshot", sn.Name, err)
		}
		if err := s.Q.DeleteSnapshot(ctx, sn.ID); err != nil {
			return err
		}
	}
	return s.Q.DeleteTeam(ctx, team)
}

// ListMembers lists a team's members.
func (s *Service) ListMembers(ctx context.Context, c auth.Caller, team uuid.UUID) ([]db.ListMembersRow, error) {
	if _, err := s.teamRole(ctx, c, team); err != nil {
		return nil, err
	}
	return s.Q.ListMembers(ctx, team)
}

func validRole(role string) error {
	if !roles[role] {
		return errf(ErrInvalid, "role %q: use owner, admin or member", role)
	}
	return nil
}

// SetMemberRole changes a member's role; a team always keeps an owner.
func (s *Service) SetMemberRole(ctx context.Context, c auth.Caller, team, user uuid.UUID, role string) error {
	myRole, err := s.requireTeamManager(ctx, c, team)
	if err != nil {
		return err
	}
	if err := validRole(role); err != nil {
		return err
	}
	return s.inTx(ctx, func(q *db.Queries) error {
		cur, err := q.GetMemberRole(ctx, db.GetMemberRoleParams{TeamID: team, UserID: user})
		if err != nil {
			return notFound(err, "member")
		}
		if (cur == "owner" || role == "owner") && myRole != "owner" {
			return errf(ErrForbidden, "only an owner can grant or take the owner role")
		}
		if cur == "owner" && role != "owner" {
			if err := lastOwner(ctx, q, team); err != nil {
				return err
			}
		}
		_, err = q.SetMemberRole(ctx, db.SetMemberRoleParams{TeamID: team, UserID: user, Role: role})
		return err
	})
}

func lastOwner(ctx context.Context, q *db.Queries, team uuid.UUID) error {
	n, err := q.CountOwners(ctx, team)
	if err != nil {
		return err
	}
	if n <= 1 {
		return errf(ErrConflict, "a team needs at least one owner")
	}
	return nil
}

// RemoveMember removes a member (a manager, or the member themself).
func (s *Service) RemoveMember(ctx context.Context, c auth.Caller, team, user uuid.UUID) error {
	myRole, err := s.teamRole(ctx, c, team)
	if err != nil {
		return err
	}
	self := c.Kind == auth.Session && user == c.UserID
	if !self && myRole != "owner" && myRole != "admin" {
		return errf(ErrForbidden, "this needs the owner or admin role in the team")
	}
	return s.inTx(ctx, func(q *db.Queries) error {
		cur, err := q.GetMemberRole(ctx, db.GetMemberRoleParams{TeamID: team, UserID: user})
		if err != nil {
			return notFound(err, "member")
		}
		if cur == "owner" {
			if !self && myRole != "owner" {
				return errf(ErrForbidden, "only an owner can remove an owner")
			}
			if err := lastOwner(ctx, q, team); err != nil {
				return err
			}
		}
		_, err = q.RemoveMember(ctx, db.RemoveMemberParams{TeamID: team, UserID: user})
		return err
	})
}

func requireAdmin(c auth.Caller) error {
	if !c.Admin {
		return errf(ErrForbidden, "this needs a platform admin")
	}
	return nil
}

// AdminListUsers lists every user.
func (s *Service) AdminListUsers(ctx context.Context, c auth.Caller) ([]db.User, error) {
	if err := requireAdmin(c); err != nil {
		return nil, err
	}
	return s.Q.ListUsers(ctx)
}

// AdminSetUserActive activates or deactivates a user; deactivation ends
// their sessions at once.
func (s *Service) AdminSetUserActive(ctx context.Context, c auth.Caller, user uuid.UUID, active bool) (db.User, error) {
	if err := requireAdmin(c); err != nil {
		return db.User{}, err
	}
	if user == c.UserID && !active {
		return db.User{}, errf(ErrConflict, "you cannot deactivate yourself")
	}
	u, err := s.Q.SetUserActive(ctx, db.SetUserActiveParams{ID: user, Active: active})
	if err != nil {
		return u, notFound(err, "user")
	}
	if !active {
		err = s.Q.DeleteUserSessions(ctx, user)
	}
	return u, err
}

// AdminListTeams lists every team.
func (s *Service) AdminListTeams(ctx context.Context, c auth.Caller) ([]db.Team, error) {
	if err := requireAdmin(c); err != nil {
		return nil, err
	}
	return s.Q.ListAllTeams(ctx)
}
