package service

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/fault"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
	"git.omukk.dev/wrenn/sandbox/proto/hostagent/v1/hostagentv1connect"
)

// RunReconciler reconciles every interval until ctx ends. Missed
// heartbeats are checked on their own, faster clock, so a host that hangs
// a reconciliation pass is still marked unreachable in time.
func (s *Service) RunReconciler(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		every(ctx, max(s.Config.HeartbeatTimeout/3, 100*time.Millisecond), func() {
			if err := s.markUnreachable(ctx); err != nil && ctx.Err() == nil {
				s.Log.Error("check heartbeats", "err", err)
			}
		})
	})
	every(ctx, s.Config.ReconcileInterval, func() {
		if err := s.Reconcile(ctx); err != nil && ctx.Err() == nil {
			s.Log.Error("reconcile", "err", err)
		}
	})
	return nil
}

// every runs f now and then every interval until ctx ends.
func every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		f()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) markUnreachable(ctx context.Context) error {
	stale, err := s.Q.MarkStaleHostsUnreachable(ctx, time.Now().Add(-s.Config.HeartbeatTimeout))
	for _, h := range stale {
		s.Log.Warn("host unreachable: no heartbeat", "host", id.Format(id.Host, h), "timeout", s.Config.HeartbeatTimeout)
	}
	return err
}

// Reconcile makes one pass: hosts without a recent heartbeat become
// unreachable (their sandboxes stay as they were, shown so), and each
// reachable host's sandboxes are compared with the database, all hosts at
// once so that one slow host does not hold up the others.
func (s *Service) Reconcile(ctx context.Context) error {
	if err := s.markUnreachable(ctx); err != nil {
		return err
	}
	hosts, err := s.Q.ListHosts(ctx)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, h := range hosts {
		if h.Status != "ready" && h.Status != "draining" {
			continue
		}
		wg.Go(func() {
			if err := s.reconcileHost(ctx, h); err != nil && ctx.Err() == nil {
				s.Log.Warn("reconcile host", "host", id.Format(id.Host, h.ID), "err", err)
			}
		})
	}
	wg.Wait()
	return nil
}

func (s *Service) reconcileHost(ctx context.Context, h db.Host) error {
	client, err := s.agent(h)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	res, err := client.ListSandboxes(cctx, connect.NewRequest(&pb.ListSandboxesRequest{}))
	if err != nil {
		return err
	}
	onAgent := map[string]*pb.Sandbox{}
	for _, sb := range res.Msg.GetSandboxes() {
		onAgent[sb.GetId()] = sb
	}
	rows, err := s.Q.ListActiveSandboxesOnHost(ctx, &h.ID)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, row := range rows {
		aid := id.Format(id.Sandbox, row.ID)
		known[aid] = true
		if !s.settled(row) {
			continue
		}
		s.reconcileSandbox(ctx, client, row, onAgent[aid])
	}
	var unknown []string
	for aid := range onAgent {
		if known[aid] {
			continue
		}
		uid, err := id.Parse(id.Sandbox, aid)
		if err == nil {
			row, err := s.Q.GetSandboxAny(ctx, uid)
			if err == nil && (row.State == "stopped" || row.State == "error") {
				// Destroyed while its host was unreachable: finish the job.
				if _, err := client.DestroySandbox(cctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: aid})); err == nil {
					s.Log.Info("destroyed sandbox the database had stopped", "sandbox", aid, "host", id.Format(id.Host, h.ID))
					continue
				}
			}
		}
		unknown = append(unknown, aid)
	}
	slices.Sort(unknown)
	if len(unknown) > 0 {
		s.Log.Warn("host runs sandboxes the control plane does not know", "host", id.Format(id.Host, h.ID), "sandboxes", unknown)
	}
	if unknown == nil {
		unknown = []string{}
	}
	if !slices.Equal(unknown, h.UnknownSandboxes) {
		return s.Q.SetHostUnknownSandboxes(ctx, db.SetHostUnknownSandboxesParams{ID: h.ID, UnknownSandboxes: unknown})
	}
	return nil
}

// settled reports whether row may be brought in line with its host: no
// operation of this control plane is under way on it, and a transitional
// state has outlived the grace its operation gets.
func (s *Service) settled(row db.Sandbox) bool {
	if s.isBusy(row.ID) {
		return false
	}
	transitional := !slices.Contains([]string{"running", "paused"}, row.State)
	return !transitional || time.Since(row.StateChangedAt) >= s.Config.TransitionGrace
}

// reconcileSandbox brings row in line with a, its host's view of it (nil:
// the host does not have it).
func (s *Service) reconcileSandbox(ctx context.Context, client hostagentv1connect.HostAgentServiceClient, row db.Sandbox, a *pb.Sandbox) {
	aid := id.Format(id.Sandbox, row.ID)
	if a == nil {
		msg := "the host no longer has this sandbox (lost in a crash or restart)"
		switch {
		case row.State == "creating":
			msg = "lost while it was being created"
		case row.State == "stopping":
			msg = ""
		case row.ExpiresAt != nil && time.Now().After(*row.ExpiresAt):
			msg = "" // its timeout destroyed it
		}
		s.setState(ctx, row, "stopped", msg)
		return
	}
	if row.State == "stopping" {
		// A destroy that did not finish: finish it.
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		if _, err := client.DestroySandbox(cctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: aid})); err == nil || errors.Is(err, fault.NotFound) {
			s.setState(ctx, row, "stopped", "")
		}
		return
	}
	st := agentState(a.GetState())
	if st == row.State || slices.Contains([]string{"creating", "pausing", "resuming", "stopping"}, st) {
		return
	}
	var err error
	switch st {
	case "running":
		_, err = s.Q.SetSandboxRunning(ctx, db.SetSandboxRunningParams{ID: row.ID, EnvdVersion: a.GetEnvdVersion(), ExpiresAt: unixMs(a.GetExpiresAtUnixMs()), FromStates: []string{row.State}})
	case "paused":
		_, err = s.Q.SetSandboxPaused(ctx, db.SetSandboxPausedParams{ID: row.ID, FromStates: []string{row.State}})
	default:
		s.setState(ctx, row, st, a.GetError())
		return
	}
	switch {
	case err == nil:
		s.Log.Info("reconciled sandbox state", "sandbox", aid, "from", row.State, "to", st)
	case !errors.Is(err, pgx.ErrNoRows):
		s.Log.Error("reconcile sandbox", "sandbox", aid, "err", err)
	}
}

func (s *Service) setState(ctx context.Context, row db.Sandbox, state, msg string) {
	if _, err := s.Q.SetSandboxState(ctx, db.SetSandboxStateParams{ID: row.ID, State: state, Error: msg}); err != nil {
		s.Log.Error("reconcile sandbox", "sandbox", id.Format(id.Sandbox, row.ID), "err", err)
		return
	}
	s.Log.Info("reconciled sandbox state", "sandbox", id.Format(id.Sandbox, row.ID), "from", row.State, "to", state, "reason", msg)
}
