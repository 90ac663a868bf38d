package hostagent

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"git.omukk.dev/wrenn/sandbox/internal/cptest"
	"git.omukk.dev/wrenn/sandbox/internal/waitfor"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
)

// TestChangeReportsReachTheControlPlane: a registered agent's reports are
// taken by a real control plane, authenticated by the host's secret.
func TestChangeReportsReachTheControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and a control plane")
	}
	pg, err := cptest.StartPostgres()
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	ctx := context.Background()
	cp, err := pg.Start(ctx, cptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cp.Stop() }()
	admin := cp.Admin(t, "admin@example.com")
	token := cp.Must(t, 201, "POST", "/v1/hosts/tokens", admin.Token, nil).Map()["token"].(string)
	creds, ident, err := joinControlPlane(ctx, t.TempDir(), cp.URL, token, "h1", "127.0.0.1:9", nil)
	if err != nil {
		t.Fatal(err)
	}
	reports := func() int {
		var entries []struct{ Status int }
		if err := cp.Must(t, 200, "GET", "/v1/admin/audit?action=host.sandboxes_changed", admin.Token, nil).JSON(&entries); err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Status != 200 {
				t.Fatalf("a report was refused: %+v", entries)
			}
		}
		return len(entries)
	}

	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	c := newChangeReporter()
	go func() {
		defer close(done)
		c.run(rctx, slog.New(slog.NewTextHandler(io.Discard, nil)), creds, ident)
	}()
	defer func() { stop(); <-done }()
	c.note(id.Format(id.Sandbox, uuid.New()))
	waitfor.True(t, 30*time.Second, "the report to be taken", func() bool { return reports() == 1 })

	// Later changes are reported too.
	c.note(id.Format(id.Sandbox, uuid.New()))
	c.note(id.Format(id.Sandbox, uuid.New()))
	waitfor.True(t, 30*time.Second, "the second report to be taken", func() bool { return reports() >= 2 })
	if n := reports(); n > 3 {
		t.Errorf("%d reports taken for three notes", n)
	}
}
