package service

import (
	"context"
	"time"

	"github.com/google/uuid"

	"git.omukk.dev/wrenn/sandbox/pkg/auth"
)

// Operation names a sandbox lifecycle operation for OnOperation.
const (
	OpCreate  = "create"
	OpResume  = "resume"
	OpPause   = "pause"
	OpDestroy = "destroy"
)

func (s *Service) observe(op string, start time.Time, err error) {
	if s.OnOperation != nil {
		s.OnOperation(op, time.Since(start), err)
	}
}

// CreateSandbox places a sandbox on a host and starts it. The row exists
// from the start (state creating) so that a crash mid-create is visible
// to the reconciler; it ends running, or error with the reason.
func (s *Service) CreateSandbox(ctx context.Context, c auth.Caller, in CreateSandboxInput) (Sandbox, error) {
	start := time.Now()
	sb, err := s.createSandbox(ctx, c, in)
	s.observe(OpCreate, start, err)
	return sb, err
}

// DestroySandbox stops a sandbox and frees everything it held on its host.
func (s *Service) DestroySandbox(ctx context.Context, c auth.Caller, sid uuid.UUID) error {
	start := time.Now()
	err := s.destroySandbox(ctx, c, sid)
	s.observe(OpDestroy, start, err)
	return err
}

// PauseSandbox snapshots a running sandbox's memory and disk on its host
// and frees its CPU and RAM.
func (s *Service) PauseSandbox(ctx context.Context, c auth.Caller, sid uuid.UUID) (Sandbox, error) {
	start := time.Now()
	sb, err := s.pauseSandbox(ctx, c, sid)
	s.observe(OpPause, start, err)
	return sb, err
}

// ResumeSandbox brings a paused sandbox back; on a running one it does
// nothing. timeout, if set, restarts its clock.
func (s *Service) ResumeSandbox(ctx context.Context, c auth.Caller, sid uuid.UUID, timeoutSeconds int32) (Sandbox, error) {
	start := time.Now()
	sb, err := s.resumeSandbox(ctx, c, sid, timeoutSeconds)
	s.observe(OpResume, start, err)
	return sb, err
}
