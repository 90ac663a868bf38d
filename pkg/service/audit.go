package service

import (
	"context"
	"time"

	"github.com/google/uuid"

	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
)

// AuditEntry is one state-changing call.
type AuditEntry struct {
	TeamID       uuid.UUID // zero: platform-level (hosts, sign-in)
	ActorType    string    // user, api_key, host, anonymous
	ActorID      string
	Action       string // e.g. sandbox.create
	ResourceType string
	ResourceID   string
	Status       int // HTTP status of the call
	Detail       string
	IP           string
}

// ActorOf describes a caller for the audit log.
func ActorOf(c auth.Caller) (string, string) {
	switch c.Kind {
	case auth.APIKey:
		return "api_key", id.Format(id.APIKey, c.APIKeyID)
	case auth.System:
		return "system", "control-plane"
	}
	return "user", id.Format(id.User, c.UserID)
}

// Audit records an entry. It never fails the call it records: a failure to
// write is logged.
func (s *Service) Audit(ctx context.Context, e AuditEntry) {
	result := "ok"
	if e.Status >= 400 {
		result = "error"
	}
	var team *uuid.UUID
	if e.TeamID != uuid.Nil {
		team = &e.TeamID
	}
	err := s.Q.InsertAudit(context.WithoutCancel(ctx), db.InsertAuditParams{
		ID: id.New(), TeamID: team, ActorType: e.ActorType, ActorID: e.ActorID, Action: e.Action,
		ResourceType: e.ResourceType, ResourceID: e.ResourceID, Result: result, Status: int32(e.Status), Detail: e.Detail, Ip: e.IP,
	})
	if err != nil {
		s.Log.Error("write audit log", "action", e.Action, "resource", e.ResourceID, "err", err)
	}
}

// AuditFilter narrows the audit log.
type AuditFilter struct {
	Action, ResourceType, ResourceID, ActorID string
	// Result is ok or error; empty: both.
	Result        string
	Before, After *time.Time
	Limit         int32
	// AllTeams lists every team's entries and platform entries (admins).
	AllTeams bool
}

// ListAudit lists the caller's team's audit entries, newest first.
func (s *Service) ListAudit(ctx context.Context, c auth.Caller, f AuditFilter) ([]db.AuditLog, error) {
	p := db.ListAuditParams{Limit: f.Limit, Before: f.Before, After: f.After}
	if p.Limit <= 0 || p.Limit > 1000 {
		p.Limit = 100
	}
	if f.AllTeams {
		if err := requireAdmin(c); err != nil {
			return nil, err
		}
	} else {
		if err := requireTeam(c); err != nil {
			return nil, err
		}
		p.TeamID = &c.TeamID
	}
	opt := func(v string) *string {
		if v == "" {
			return nil
		}
		return &v
	}
	p.Action, p.ResourceType, p.ResourceID, p.ActorID, p.Result = opt(f.Action), opt(f.ResourceType), opt(f.ResourceID), opt(f.ActorID), opt(f.Result)
	return s.Q.ListAudit(ctx, p)
}
