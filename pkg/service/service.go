// Package service is the control plane's business logic over PostgreSQL
// and the host agents: accounts, teams and keys, sandboxes and snapshots,
// hosts with their scheduling and reconciliation, and the audit log. HTTP
// handlers (wrenn's own API, the E2B-compatible one, extensions) call it;
// it never sees a request.
package service

import (
	"context"
	"errors"
	"git.omukk.dev/wrenn/sandbox/internal/hostca"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"git.omukk.dev/wrenn/sandbox/internal/cpauth"
	"git.omukk.dev/wrenn/sandbox/pkg/config"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/fault"
)

// Error kinds every error the service returns carries, under the names
// its callers know: they are the fault vocabulary, which the HTTP APIs
// map to status codes in one place.
const (
	ErrInvalid      = fault.Invalid
	ErrUnauthorized = fault.Unauthenticated
	ErrForbidden    = fault.Forbidden
	ErrNotFound     = fault.NotFound
	ErrConflict     = fault.Conflict
	ErrNoCapacity   = fault.NoCapacity
	ErrUnavailable  = fault.Unavailable
	// ErrQuota is a team quota that a call would exceed.
	ErrQuota = fault.Quota
)

// Error is a service error: a kind and a message meant for the caller.
type Error = fault.Error

func errf(kind fault.Kind, format string, args ...any) error {
	return fault.Errorf(kind, format, args...)
}

// Service holds the control plane's state: the database and the agents.
type Service struct {
	Pool   *pgxpool.Pool
	Q      *db.Queries
	Keys   *cpauth.Keys
	Config config.Config
	Log    *slog.Logger
	// CA signs hosts' certificates and the control plane's own, for
	// mutual TLS with agents (LoadHostCA).
	CA *hostca.CA
	// OnOperation, when set, hears how each sandbox lifecycle operation
	// (OpCreate, …) ended and how long it took: metrics.
	OnOperation func(op string, took time.Duration, err error)

	agents agentPool
	// busy holds sandboxes with an operation in flight in this process, so
	// the reconciler does not judge them halfway.
	busy sync.Map
	// builds are the template builds this process runs.
	builds builders
}

// New returns a service over an open pool.
func New(pool *pgxpool.Pool, keys *cpauth.Keys, cfg config.Config, log *slog.Logger) *Service {
	return &Service{Pool: pool, Q: db.New(pool), Keys: keys, Config: cfg, Log: log}
}

// Close releases the agent connections.
func (s *Service) Close() {
	s.builds.close()
	s.agents.closeAll()
}

// notFound turns pgx's no-rows into ErrNotFound with a message.
func notFound(err error, what string) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return errf(ErrNotFound, "%s not found", what)
	}
	return err
}

// inTx runs fn in a transaction.
func (s *Service) inTx(ctx context.Context, fn func(q *db.Queries) error) error {
	return pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error { return fn(s.Q.WithTx(tx)) })
}

// markBusy records an in-flight operation on a sandbox until the returned
// function is called.
func (s *Service) markBusy(id uuid.UUID) func() {
	s.busy.Store(id, struct{}{})
	return func() { s.busy.Delete(id) }
}

func (s *Service) isBusy(id uuid.UUID) bool {
	_, ok := s.busy.Load(id)
	return ok
}
