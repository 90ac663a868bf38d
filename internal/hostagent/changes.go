package hostagent

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/cpclient"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
)

// changeReporter tells the control plane at once about sandboxes the
// manager changed on its own (sandbox.Config.Changed), so that a sandbox
// a timeout paused shows paused, and resumes on traffic, without waiting
// for the control plane's next reconciliation. IDs noted while a report
// is in flight, or while the control plane cannot be reached, are
// coalesced into the next one.
type changeReporter struct {
	mu      sync.Mutex
	pending map[string]struct{}
	wake    chan struct{}
}

func newChangeReporter() *changeReporter {
	return &changeReporter{pending: map[string]struct{}{}, wake: make(chan struct{}, 1)}
}

// note queues a sandbox's ID; it never blocks.
func (c *changeReporter) note(id string) {
	c.mu.Lock()
	c.pending[id] = struct{}{}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// take removes and returns up to one report's worth of IDs; if more are
// left, the reporter is woken again for them.
func (c *changeReporter) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := slices.Sorted(maps.Keys(c.pending))
	if len(ids) > hostapi.MaxSandboxesChanged {
		ids = ids[:hostapi.MaxSandboxesChanged]
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	for _, id := range ids {
		delete(c.pending, id)
	}
	return ids
}

// changeRetry is how long a failed report waits before it is sent again.
const changeRetry = 2 * time.Second

// run sends the reports until ctx ends.
func (c *changeReporter) run(ctx context.Context, log *slog.Logger, creds credentials, id *identity) {
	cp := cpclient.New(creds.ControlPlane, id.client(15*time.Second))
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		}
		ids := c.take()
		if len(ids) == 0 {
			continue
		}
		err := cp.SandboxesChanged(ctx, creds.HostID, creds.Secret, ids)
		var ce *cpclient.Error
		switch {
		case err == nil:
			if failing {
				log.Info("sandbox state reports reach the control plane again")
				failing = false
			}
		case ctx.Err() != nil:
			return
		case errors.As(err, &ce) && ce.Status == http.StatusBadRequest:
			// Sending it again would not help.
			log.Error("the control plane refused a report of sandbox state changes", "sandboxes", ids, "err", err)
		default:
			if !failing {
				log.Warn("report sandbox state changes to the control plane; retrying (its reconciler catches up meanwhile)", "sandboxes", ids, "err", err)
			}
			failing = true
			for _, id := range ids {
				c.note(id)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(changeRetry):
			}
		}
	}
}
