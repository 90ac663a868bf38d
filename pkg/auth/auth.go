// Package auth describes who is calling the control plane: the caller an
// authenticated request carries in its context, for handlers of wrenn-cp
// and of its extensions.
package auth

import (
	"context"

	"github.com/google/uuid"
)

// Kind is how the caller authenticated.
type Kind string

const (
	// Session is a signed-in user (JWT from login).
	Session Kind = "session"
	// APIKey is a team API key; it acts for its team with the member role.
	APIKey Kind = "api_key"
	// System is the control plane acting on its own (the sandbox proxy
	// resuming a sandbox for a request).
	System Kind = "system"
)

// Caller is an authenticated principal acting within one team.
type Caller struct {
	Kind Kind
	// UserID is the signed-in user, or the user who created the API key
	// (zero if that user was deleted).
	UserID uuid.UUID
	// TeamID is the team the call acts in: the session's active team or
	// the key's team. Zero when a user has no team yet.
	TeamID uuid.UUID
	// Role is the caller's role in TeamID: owner, admin or member.
	Role string
	// Admin marks a platform administrator.
	Admin bool
	// SessionID or APIKeyID identify the credential used.
	SessionID uuid.UUID
	APIKeyID  uuid.UUID
	// KeyPrefix is the API key's displayable prefix, for logs and audit.
	KeyPrefix string
}

// HasTeam reports whether the caller acts within a team.
func (c Caller) HasTeam() bool { return c.TeamID != uuid.Nil }

// CanManageTeam reports whether the caller may change the team itself
// (members, name, keys).
func (c Caller) CanManageTeam() bool { return c.Role == "owner" || c.Role == "admin" }

type ctxKey struct{}

// WithCaller returns ctx carrying c.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, ctxKey{}, c)
}

// CallerFrom returns the caller of an authenticated request.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(ctxKey{}).(Caller)
	return c, ok
}
