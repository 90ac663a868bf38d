package service

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"git.omukk.dev/wrenn/sandbox/internal/cpauth"
	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
)

// ProviderGitHub names GitHub identities.
const ProviderGitHub = "github"

// ExternalIdentity is what an identity provider says about the person
// signing in.
type ExternalIdentity struct {
	Provider string
	Subject  string // the provider's stable user ID
	Login    string
	Name     string
	// Email is the primary email the provider has verified; empty if none.
	Email string
}

// Reasons an external sign-in or link is refused; the handler turns each
// into a message on the sign-in or settings page.
var (
	ErrExternalNoAccount = &Error{Kind: ErrForbidden, Msg: "no Wrenn account has this GitHub account's verified primary email, and sign-up is closed: ask an admin to create your account"}
	ErrExternalNoEmail   = &Error{Kind: ErrInvalid, Msg: "GitHub has no verified primary email for this account: verify one on GitHub, or sign up with email and password"}
	ErrExternalEmail     = &Error{Kind: ErrConflict, Msg: "an account with this email exists: sign in with your password and connect GitHub in Settings"}
	ErrExternalTaken     = &Error{Kind: ErrConflict, Msg: "this GitHub account is connected to another Wrenn user"}
	ErrExternalLinked    = &Error{Kind: ErrConflict, Msg: "your account is already connected to another GitHub account: disconnect it first"}
	ErrDeactivated       = &Error{Kind: ErrForbidden, Msg: "this account is deactivated; ask an admin"}
)

// SignInExternal signs in the user an identity belongs to. An identity
// seen for the first time links to the user whose email is its verified
// primary email, or creates a user where sign-up is allowed. It returns
// the new session's ID; RedeemHandoff turns it into a token.
func (s *Service) SignInExternal(ctx context.Context, ext ExternalIdentity) (db.User, uuid.UUID, error) {
	var u db.User
	err := s.inTx(ctx, func(q *db.Queries) error {
		ident, err := q.GetIdentity(ctx, db.GetIdentityParams{Provider: ext.Provider, Subject: ext.Subject})
		switch {
		case err == nil:
			if u, err = q.GetUser(ctx, ident.UserID); err != nil {
				return err
			}
			if ident.Login != ext.Login {
				return q.SetIdentityLogin(ctx, db.SetIdentityLoginParams{Provider: ext.Provider, Subject: ext.Subject, Login: ext.Login})
			}
			return nil
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		if ext.Email == "" {
			return ErrExternalNoEmail
		}
		u, err = q.GetUserByEmail(ctx, ext.Email)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if !s.Config.AllowSignup {
				return ErrExternalNoAccount
			}
			name := strings.TrimSpace(ext.Name)
			if validName("name", name, 100) != nil {
				name = ext.Login
			}
			if u, _, err = createUser(ctx, q, ext.Email, name, ""); err != nil {
				return err
			}
		case err != nil:
			return err
		}
		if !u.Active {
			return ErrDeactivated
		}
		if _, err := q.GetUserIdentity(ctx, db.GetUserIdentityParams{UserID: u.ID, Provider: ext.Provider}); err == nil {
			return ErrExternalLinked
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		_, err = q.CreateIdentity(ctx, db.CreateIdentityParams{Provider: ext.Provider, Subject: ext.Subject, UserID: u.ID, Login: ext.Login})
		return err
	})
	if err != nil {
		return db.User{}, uuid.Nil, err
	}
	if !u.Active {
		return db.User{}, uuid.Nil, ErrDeactivated
	}
	team, err := s.loginTeam(ctx, u.ID)
	if err != nil {
		return db.User{}, uuid.Nil, err
	}
	sess, err := s.newSessionRow(ctx, u.ID, team)
	return u, sess.ID, err
}

// LinkExternal connects an identity to the user of a session that is
// still open (the session that started the link).
func (s *Service) LinkExternal(ctx context.Context, session, user uuid.UUID, ext ExternalIdentity) error {
	sess, err := s.Q.GetSession(ctx, session)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && sess.UserID != user {
		return errf(ErrUnauthorized, "your session ended while GitHub was asked; sign in and connect again")
	}
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(q *db.Queries) error {
		if ident, err := q.GetIdentity(ctx, db.GetIdentityParams{Provider: ext.Provider, Subject: ext.Subject}); err == nil {
			if ident.UserID == user {
				return q.SetIdentityLogin(ctx, db.SetIdentityLoginParams{Provider: ext.Provider, Subject: ext.Subject, Login: ext.Login})
			}
			return ErrExternalTaken
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		_, err := q.CreateIdentity(ctx, db.CreateIdentityParams{Provider: ext.Provider, Subject: ext.Subject, UserID: user, Login: ext.Login})
		if isUniqueViolation(err) {
			return ErrExternalLinked
		}
		return err
	})
}

// UnlinkExternal disconnects the caller's identity at provider. A user
// without a password keeps it: they could not sign in otherwise.
func (s *Service) UnlinkExternal(ctx context.Context, c auth.Caller, provider string) error {
	if c.Kind != auth.Session {
		return errf(ErrInvalid, "connected accounts belong to a user; sign in to change them")
	}
	u, err := s.Q.GetUser(ctx, c.UserID)
	if err != nil {
		return notFound(err, "user")
	}
	if u.PasswordHash == "" {
		return errf(ErrConflict, "set a password first: without one, GitHub is your only way to sign in")
	}
	n, err := s.Q.DeleteUserIdentity(ctx, db.DeleteUserIdentityParams{UserID: c.UserID, Provider: provider})
	if err == nil && n == 0 {
		return errf(ErrNotFound, "no %s account is connected", provider)
	}
	return err
}

// Identity is the caller's identity at provider, if connected.
func (s *Service) Identity(ctx context.Context, user uuid.UUID, provider string) (*db.UserIdentity, error) {
	ident, err := s.Q.GetUserIdentity(ctx, db.GetUserIdentityParams{UserID: user, Provider: provider})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &ident, nil
}

// HandoffTTL is how long a browser has to exchange a handoff code.
const HandoffTTL = time.Minute

// CreateHandoff returns a one-time code for session, to be exchanged once
// (RedeemHandoff) within HandoffTTL.
func (s *Service) CreateHandoff(ctx context.Context, session uuid.UUID) (string, error) {
	code := cpauth.NewToken("")
	if err := s.Q.DeleteExpiredHandoffs(ctx); err != nil {
		return "", err
	}
	err := s.Q.CreateHandoff(ctx, db.CreateHandoffParams{Hash: cpauth.HashSecret(code), SessionID: session, ExpiresAt: time.Now().Add(HandoffTTL)})
	return code, err
}

// RedeemHandoff exchanges a handoff code, once, for its session's token.
func (s *Service) RedeemHandoff(ctx context.Context, code string) (string, db.Session, error) {
	if code == "" {
		return "", db.Session{}, errf(ErrUnauthorized, "no sign-in to complete; sign in again")
	}
	sid, err := s.Q.RedeemHandoff(ctx, cpauth.HashSecret(code))
	if errors.Is(err, pgx.ErrNoRows) {
		return "", db.Session{}, errf(ErrUnauthorized, "this sign-in expired or was already completed; sign in again")
	}
	if err != nil {
		return "", db.Session{}, err
	}
	sess, err := s.Q.GetSession(ctx, sid)
	if err != nil {
		return "", db.Session{}, notFound(err, "session")
	}
	tok, err := s.Keys.SignSession(sess.ID, sess.UserID, sess.ExpiresAt)
	return tok, sess, err
}

// ChangePassword sets the caller's password. The current one is required
// when there is one; the user's other sessions end.
func (s *Service) ChangePassword(ctx context.Context, c auth.Caller, current, next string) error {
	if c.Kind != auth.Session {
		return errf(ErrInvalid, "a password belongs to a user; sign in to change it")
	}
	u, err := s.Q.GetUser(ctx, c.UserID)
	if err != nil {
		return notFound(err, "user")
	}
	if u.PasswordHash != "" && !cpauth.CheckPassword(u.PasswordHash, current) {
		return errf(ErrForbidden, "the current password is wrong")
	}
	if _, err := validateCredentials(u.Email, next); err != nil {
		return err
	}
	hash, err := cpauth.HashPassword(next)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(q *db.Queries) error {
		if err := q.SetUserPassword(ctx, db.SetUserPasswordParams{ID: u.ID, PasswordHash: hash}); err != nil {
			return err
		}
		return q.DeleteOtherSessions(ctx, db.DeleteOtherSessionsParams{UserID: u.ID, ID: c.SessionID})
	})
}

// UpdateProfile sets the caller's display name.
func (s *Service) UpdateProfile(ctx context.Context, c auth.Caller, name string) (db.User, error) {
	if c.Kind != auth.Session {
		return db.User{}, errf(ErrInvalid, "a profile belongs to a user; sign in to change it")
	}
	if err := validName("name", name, 100); err != nil {
		return db.User{}, err
	}
	u, err := s.Q.SetUserName(ctx, db.SetUserNameParams{ID: c.UserID, Name: strings.TrimSpace(name)})
	return u, notFound(err, "user")
}
