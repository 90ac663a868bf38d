package service

import (
	"context"
	"time"

	"github.com/google/uuid"

	"git.omukk.dev/wrenn/sandbox/pkg/auth"
)

// ExtendTimeout makes a running sandbox live at least seconds from now;
// an end already later stands. E2B's connect only ever extends a
// sandbox's life: a client connecting with a short timeout must not cut
// short another's longer one.
func (s *Service) ExtendTimeout(ctx context.Context, c auth.Caller, sid uuid.UUID, seconds int32) (Sandbox, error) {
	sb, err := s.GetSandbox(ctx, c, sid)
	if err != nil {
		return Sandbox{}, err
	}
	if sb.State == "running" && sb.ExpiresAt != nil && !sb.ExpiresAt.Before(time.Now().Add(time.Duration(seconds)*time.Second)) {
		return sb, nil
	}
	return s.SetTimeout(ctx, c, sid, seconds)
}
