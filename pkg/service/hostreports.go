package service

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/fault"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

// SandboxesChanged is host h's report that it changed these sandboxes on
// its own (a timeout paused or destroyed one, a guest died): each record
// is brought in line with the host at once instead of at the next
// reconciliation, which stays as the safety net. The host is asked for
// each sandbox's state rather than believed from the report, so a report
// that arrives late cannot undo a later change. Sandboxes of other hosts
// are ignored.
func (s *Service) SandboxesChanged(ctx context.Context, h db.Host, sandboxIDs []string) error {
	if len(sandboxIDs) > hostapi.MaxSandboxesChanged {
		return errf(ErrInvalid, "at most %d sandboxes per report", hostapi.MaxSandboxesChanged)
	}
	uids := make([]uuid.UUID, 0, len(sandboxIDs))
	for _, raw := range sandboxIDs {
		uid, err := id.Parse(id.Sandbox, raw)
		if err != nil {
			return errf(ErrInvalid, "%v", err)
		}
		uids = append(uids, uid)
	}
	for _, uid := range uids {
		row, err := s.Q.GetSandboxAny(ctx, uid)
		if errors.Is(err, pgx.ErrNoRows) || err == nil && (row.HostID == nil || *row.HostID != h.ID) {
			continue
		}
		if err != nil {
			return err
		}
		if _, err := s.syncSandbox(ctx, h, row); err != nil {
			s.Log.Warn("sandbox changed on its host; the reconciler will catch up", "sandbox", id.Format(id.Sandbox, uid), "err", err)
		}
	}
	return nil
}

// SyncSandbox brings one sandbox's record in line with its host now and
// returns the host's state for it ("stopped" when the host no longer has
// it). The sandbox proxy calls it for a sandbox whose record says running
// past its end: its host may have paused it a moment ago.
func (s *Service) SyncSandbox(ctx context.Context, sid uuid.UUID) (string, error) {
	row, err := s.Q.GetSandboxAny(ctx, sid)
	if err != nil {
		return "", notFound(err, "sandbox")
	}
	if row.HostID == nil {
		return row.State, nil
	}
	h, err := s.Q.GetHost(ctx, *row.HostID)
	if err != nil {
		return "", err
	}
	return s.syncSandbox(ctx, h, row)
}

func (s *Service) syncSandbox(ctx context.Context, h db.Host, row db.Sandbox) (string, error) {
	client, err := s.agent(h)
	if err != nil {
		return "", err
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	aid := id.Format(id.Sandbox, row.ID)
	res, err := client.GetSandbox(cctx, connect.NewRequest(&pb.GetSandboxRequest{SandboxId: aid}))
	var a *pb.Sandbox
	switch {
	case err == nil:
		a = res.Msg.GetSandbox()
	case !errors.Is(err, fault.NotFound):
		return "", agentError(h, "get sandbox", err)
	}
	st := "stopped"
	if a != nil {
		st = agentState(a.GetState())
	}
	if !s.settled(row) {
		return st, nil
	}
	s.reconcileSandbox(ctx, client, row, a)
	if st == "running" && row.State == "running" {
		// The host's end is the true one; keep the record's with it.
		if end := unixMs(a.GetExpiresAtUnixMs()); end != nil && (row.ExpiresAt == nil || !end.Equal(*row.ExpiresAt)) {
			if _, err := s.Q.SetSandboxExpiry(ctx, db.SetSandboxExpiryParams{ID: row.ID, ExpiresAt: end, TimeoutSeconds: row.TimeoutSeconds}); err != nil {
				return st, err
			}
		}
	}
	return st, nil
}
