package service

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
)

// InvitationTTL is how long an invitation can be accepted.
const InvitationTTL = 7 * 24 * time.Hour

// Invite invites email into team with role (owner or admin callers; only
// an owner invites owners). Nothing changes for the invitee until they
// accept. The answer is the same whether an account has that email or
// not: invitations are kept by email and no account is looked up.
func (s *Service) Invite(ctx context.Context, c auth.Caller, team uuid.UUID, email, role string) (db.TeamInvitation, error) {
	myRole, err := s.requireTeamManager(ctx, c, team)
	if err != nil {
		return db.TeamInvitation{}, err
	}
	if role == "" {
		role = "member"
	}
	if err := validRole(role); err != nil {
		return db.TeamInvitation{}, err
	}
	if role == "owner" && myRole != "owner" {
		return db.TeamInvitation{}, errf(ErrForbidden, "only an owner can invite another owner")
	}
	addr, err := validEmail(email)
	if err != nil {
		return db.TeamInvitation{}, err
	}
	var by *uuid.UUID
	if c.UserID != uuid.Nil {
		by = &c.UserID
	}
	var inv db.TeamInvitation
	err = s.inTx(ctx, func(q *db.Queries) error {
		// Who is already in the team is visible to its managers anyway.
		member, err := q.IsMemberByEmail(ctx, db.IsMemberByEmailParams{TeamID: team, Email: addr})
		if err != nil {
			return err
		}
		if member {
			return errf(ErrConflict, "%s is already a member of the team", addr)
		}
		if err := q.DeleteExpiredInvitation(ctx, db.DeleteExpiredInvitationParams{TeamID: team, Email: addr}); err != nil {
			return err
		}
		inv, err = q.CreateInvitation(ctx, db.CreateInvitationParams{ID: id.New(), TeamID: team, Email: addr, Role: role, InvitedBy: by, ExpiresAt: time.Now().Add(InvitationTTL)})
		if isUniqueViolation(err) {
			return errf(ErrConflict, "%s is already invited; revoke that invitation to send another", addr)
		}
		return err
	})
	return inv, err
}

// ListTeamInvitations lists a team's pending invitations (managers).
func (s *Service) ListTeamInvitations(ctx context.Context, c auth.Caller, team uuid.UUID) ([]db.TeamInvitation, error) {
	if _, err := s.requireTeamManager(ctx, c, team); err != nil {
		return nil, err
	}
	return s.Q.ListTeamInvitations(ctx, team)
}

// RevokeInvitation withdraws a pending invitation (managers).
func (s *Service) RevokeInvitation(ctx context.Context, c auth.Caller, team, inv uuid.UUID) error {
	if _, err := s.requireTeamManager(ctx, c, team); err != nil {
		return err
	}
	n, err := s.Q.DeleteTeamInvitation(ctx, db.DeleteTeamInvitationParams{ID: inv, TeamID: team})
	if err == nil && n == 0 {
		return errf(ErrNotFound, "invitation not found")
	}
	return err
}

// signedInUser is the session's user; invitations are answered by the
// person they were sent to, never by an API key.
func (s *Service) signedInUser(ctx context.Context, c auth.Caller) (db.User, error) {
	if c.Kind != auth.Session {
		return db.User{}, errf(ErrForbidden, "invitations are answered by a signed-in user, not an API key")
	}
	u, err := s.Q.GetUser(ctx, c.UserID)
	return u, notFound(err, "user")
}

// MyInvitations lists the pending invitations sent to the caller's email.
func (s *Service) MyInvitations(ctx context.Context, c auth.Caller) ([]db.ListInvitationsForEmailRow, error) {
	u, err := s.signedInUser(ctx, c)
	if err != nil {
		return nil, err
	}
	return s.Q.ListInvitationsForEmail(ctx, u.Email)
}

// AnswerInvitation accepts (joining the team with the invited role) or
// declines one of the caller's invitations. Accepting does not switch the
// caller's active team: that stays their own explicit choice.
func (s *Service) AnswerInvitation(ctx context.Context, c auth.Caller, inv uuid.UUID, accept bool) (db.TeamInvitation, error) {
	u, err := s.signedInUser(ctx, c)
	if err != nil {
		return db.TeamInvitation{}, err
	}
	var got db.TeamInvitation
	err = s.inTx(ctx, func(q *db.Queries) error {
		var err error
		got, err = q.TakeInvitation(ctx, db.TakeInvitationParams{ID: inv, Email: u.Email})
		if errors.Is(err, pgx.ErrNoRows) {
			return errf(ErrNotFound, "invitation not found (or expired)")
		}
		if err != nil || !accept {
			return err
		}
		_, err = q.AddMember(ctx, db.AddMemberParams{TeamID: got.TeamID, UserID: u.ID, Role: got.Role})
		if isUniqueViolation(err) {
			return errf(ErrConflict, "you are already a member of that team")
		}
		return err
	})
	return got, err
}
