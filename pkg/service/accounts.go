package service

import (
	"context"
	"errors"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"git.omukk.dev/wrenn/sandbox/internal/cpauth"
	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
)

// Roles a team member can have.
var roles = map[string]bool{"owner": true, "admin": true, "member": true}

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

func validateCredentials(email, password string) (string, error) {
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != strings.TrimSpace(email) || len(email) > 254 {
		return "", errf(ErrInvalid, "email %q is not a valid address", email)
	}
	if utf8.RuneCountInString(password) < 8 {
		return "", errf(ErrInvalid, "password must be at least 8 characters")
	}
	if len(password) > 72 {
		return "", errf(ErrInvalid, "password must be at most 72 bytes")
	}
	return addr.Address, nil
}

func validName(what, name string, max int) error {
	if strings.TrimSpace(name) == "" || utf8.RuneCountInString(name) > max {
		return errf(ErrInvalid, "%s must be 1 to %d characters", what, max)
	}
	return nil
}

// Signup creates a user with a personal team they own, and signs them in.
// The first user of a fresh installation is the platform admin.
func (s *Service) Signup(ctx context.Context, email, password, name string) (db.User, string, error) {
	if !s.Config.AllowSignup {
		return db.User{}, "", errf(ErrForbidden, "sign-up is disabled on this installation; ask an admin to create your account")
	}
	email, err := validateCredentials(email, password)
	if err != nil {
		return db.User{}, "", err
	}
	if name == "" {
		name = strings.Split(email, "@")[0]
	}
	if err := validName("name", name, 100); err != nil {
		return db.User{}, "", err
	}
	hash, err := cpauth.HashPassword(password)
	if err != nil {
		return db.User{}, "", err
	}
	var u db.User
	var team db.Team
	err = s.inTx(ctx, func(q *db.Queries) error {
		u, team, err = createUser(ctx, q, email, name, hash)
		return err
	})
	if err != nil {
		return db.User{}, "", err
	}
	tok, err := s.newSession(ctx, u.ID, team.ID)
	return u, tok, err
}

// createUser makes a user (hash empty: no password sign-in) with a
// personal team they own; the first user of an installation is its admin.
func createUser(ctx context.Context, q *db.Queries, email, name, hash string) (db.User, db.Team, error) {
	// Serialises concurrent first sign-ups so exactly one becomes admin.
	if err := q.LockSignup(ctx); err != nil {
		return db.User{}, db.Team{}, err
	}
	n, err := q.CountUsers(ctx)
	if err != nil {
		return db.User{}, db.Team{}, err
	}
	u, err := q.CreateUser(ctx, db.CreateUserParams{ID: id.New(), Email: email, Name: name, PasswordHash: hash, IsAdmin: n == 0})
	if isUniqueViolation(err) {
		return db.User{}, db.Team{}, errf(ErrConflict, "an account with email %s already exists", email)
	}
	if err != nil {
		return db.User{}, db.Team{}, err
	}
	team, err := q.CreateTeam(ctx, db.CreateTeamParams{ID: id.New(), Name: name + "'s team"})
	if err != nil {
		return db.User{}, db.Team{}, err
	}
	_, err = q.AddMember(ctx, db.AddMemberParams{TeamID: team.ID, UserID: u.ID, Role: "owner"})
	return u, team, err
}

func (s *Service) newSession(ctx context.Context, uid, team uuid.UUID) (string, error) {
	sess, err := s.newSessionRow(ctx, uid, team)
	if err != nil {
		return "", err
	}
	return s.Keys.SignSession(sess.ID, uid, sess.ExpiresAt)
}

// newSessionRow opens a session in team (none if zero) without signing a
// token for it.
func (s *Service) newSessionRow(ctx context.Context, uid, team uuid.UUID) (db.Session, error) {
	var tp *uuid.UUID
	if team != uuid.Nil {
		tp = &team
	}
	return s.Q.CreateSession(ctx, db.CreateSessionParams{ID: id.New(), UserID: uid, TeamID: tp, ExpiresAt: time.Now().Add(s.Config.SessionTTL)})
}

// Login checks a password and opens a session in the user's first team.
func (s *Service) Login(ctx context.Context, email, password string) (db.User, string, error) {
	u, err := s.Q.GetUserByEmail(ctx, strings.TrimSpace(email))
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return db.User{}, "", err
	}
	if !cpauth.CheckPassword(u.PasswordHash, password) {
		return db.User{}, "", errf(ErrUnauthorized, "wrong email or password")
	}
	if !u.Active {
		return db.User{}, "", errf(ErrForbidden, "this account is deactivated; ask an admin")
	}
	team, err := s.loginTeam(ctx, u.ID)
	if err != nil {
		return db.User{}, "", err
	}
	tok, err := s.newSession(ctx, u.ID, team)
	return u, tok, err
}

// loginTeam is the team a new session of uid starts in: their first.
func (s *Service) loginTeam(ctx context.Context, uid uuid.UUID) (uuid.UUID, error) {
	teams, err := s.Q.ListTeamsForUser(ctx, uid)
	if err != nil || len(teams) == 0 {
		return uuid.Nil, err
	}
	return teams[0].ID, nil
}

// Logout revokes the caller's session.
func (s *Service) Logout(ctx context.Context, c auth.Caller) error {
	if c.Kind != auth.Session {
		return errf(ErrInvalid, "logout ends a session; API keys are revoked with DELETE /v1/api-keys/{keyID}")
	}
	return s.Q.DeleteSession(ctx, c.SessionID)
}

// Authenticate turns a bearer credential (session JWT or API key) into a
// caller. Failures are ErrUnauthorized with a message that never repeats
// the credential.
func (s *Service) Authenticate(ctx context.Context, credential string) (auth.Caller, error) {
	if credential == "" {
		return auth.Caller{}, errf(ErrUnauthorized, "authentication required: send Authorization: Bearer <session token or API key>, or X-API-Key")
	}
	if cpauth.LooksLikeJWT(credential) {
		return s.authSession(ctx, credential)
	}
	return s.authAPIKey(ctx, credential)
}

func (s *Service) authSession(ctx context.Context, tok string) (auth.Caller, error) {
	sid, uid, err := s.Keys.ParseSession(tok)
	if err != nil {
		return auth.Caller{}, errf(ErrUnauthorized, "invalid or expired session; sign in again")
	}
	sess, err := s.Q.GetSession(ctx, sid)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && sess.UserID != uid {
		return auth.Caller{}, errf(ErrUnauthorized, "session ended; sign in again")
	}
	if err != nil {
		return auth.Caller{}, err
	}
	u, err := s.Q.GetUser(ctx, uid)
	if err != nil {
		return auth.Caller{}, notFound(err, "user")
	}
	if !u.Active {
		return auth.Caller{}, errf(ErrUnauthorized, "this account is deactivated")
	}
	c := auth.Caller{Kind: auth.Session, UserID: u.ID, Admin: u.IsAdmin, SessionID: sess.ID}
	if sess.TeamID != nil {
		role, err := s.Q.GetMemberRole(ctx, db.GetMemberRoleParams{TeamID: *sess.TeamID, UserID: u.ID})
		if err == nil {
			c.TeamID, c.Role = *sess.TeamID, role
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return auth.Caller{}, err
		}
	}
	return c, nil
}

func (s *Service) authAPIKey(ctx context.Context, key string) (auth.Caller, error) {
	k, err := s.Q.GetAPIKeyByHash(ctx, cpauth.HashSecret(key))
	if errors.Is(err, pgx.ErrNoRows) {
		return auth.Caller{}, errf(ErrUnauthorized, "invalid or revoked API key")
	}
	if err != nil {
		return auth.Caller{}, err
	}
	if err := s.Q.TouchAPIKey(ctx, k.ID); err != nil {
		s.Log.Warn("record API key use", "key", k.Prefix, "err", err)
	}
	c := auth.Caller{Kind: auth.APIKey, TeamID: k.TeamID, Role: "member", APIKeyID: k.ID, KeyPrefix: k.Prefix}
	if k.CreatedBy != nil {
		c.UserID = *k.CreatedBy
	}
	return c, nil
}

// Me describes the caller's user and teams.
func (s *Service) Me(ctx context.Context, c auth.Caller) (db.User, []db.ListTeamsForUserRow, error) {
	if c.Kind != auth.Session {
		return db.User{}, nil, errf(ErrInvalid, "an API key acts for a team, not a user; sign in to see your account")
	}
	u, err := s.Q.GetUser(ctx, c.UserID)
	if err != nil {
		return u, nil, notFound(err, "user")
	}
	teams, err := s.Q.ListTeamsForUser(ctx, c.UserID)
	return u, teams, err
}

// SwitchTeam makes team the session's active team.
func (s *Service) SwitchTeam(ctx context.Context, c auth.Caller, team uuid.UUID) error {
	if c.Kind != auth.Session {
		return errf(ErrInvalid, "an API key belongs to one team; switching needs a session")
	}
	if _, err := s.Q.GetMemberRole(ctx, db.GetMemberRoleParams{TeamID: team, UserID: c.UserID}); err != nil {
		return notFound(err, "team")
	}
	return s.Q.SetSessionTeam(ctx, db.SetSessionTeamParams{ID: c.SessionID, TeamID: &team})
}

func requireTeam(c auth.Caller) error {
	if !c.HasTeam() {
		return errf(ErrForbidden, "no active team: create one (POST /v1/teams) or switch to one")
	}
	return nil
}

func requireManager(c auth.Caller) error {
	if err := requireTeam(c); err != nil {
		return err
	}
	if !c.CanManageTeam() {
		return errf(ErrForbidden, "this needs the owner or admin role in the team (API keys act as members)")
	}
	return nil
}

// CreateAPIKey makes a key for the caller's team; the key is returned once.
func (s *Service) CreateAPIKey(ctx context.Context, c auth.Caller, name string) (db.ApiKey, string, error) {
	if err := requireManager(c); err != nil {
		return db.ApiKey{}, "", err
	}
	if name == "" {
		name = "default"
	}
	if err := validName("key name", name, 100); err != nil {
		return db.ApiKey{}, "", err
	}
	key, prefix, hash := cpauth.NewAPIKey()
	var by *uuid.UUID
	if c.UserID != uuid.Nil {
		by = &c.UserID
	}
	k, err := s.Q.CreateAPIKey(ctx, db.CreateAPIKeyParams{ID: id.New(), TeamID: c.TeamID, CreatedBy: by, Name: name, Prefix: prefix, Hash: hash})
	return k, key, err
}

// ListAPIKeys lists the team's keys (prefixes only).
func (s *Service) ListAPIKeys(ctx context.Context, c auth.Caller) ([]db.ApiKey, error) {
	if err := requireTeam(c); err != nil {
		return nil, err
	}
	return s.Q.ListAPIKeys(ctx, c.TeamID)
}

// RevokeAPIKey revokes one of the team's keys.
func (s *Service) RevokeAPIKey(ctx context.Context, c auth.Caller, key uuid.UUID) error {
	if err := requireManager(c); err != nil {
		return err
	}
	n, err := s.Q.RevokeAPIKey(ctx, db.RevokeAPIKeyParams{ID: key, TeamID: c.TeamID})
	if err == nil && n == 0 {
		return errf(ErrNotFound, "API key not found or already revoked")
	}
	return err
}
