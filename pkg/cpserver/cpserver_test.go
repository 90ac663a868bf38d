package cpserver_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/cptest"
	"git.omukk.dev/wrenn/sandbox/internal/waitfor"
	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/cpextension"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
)

var pg *cptest.Postgres

func TestMain(m *testing.M) {
	var err error
	if pg, err = cptest.StartPostgres(); err != nil {
		fmt.Fprintln(os.Stderr, "start PostgreSQL:", err)
		os.Exit(1)
	}
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}

// billing is what an extension from another module looks like: a public
// route, an authenticated one, middleware on everything, and a job using
// the database.
type billing struct {
	jobRuns    atomic.Int32
	jobStopped atomic.Bool
}

func (b *billing) Name() string { return "billing" }

func (b *billing) Register(sc *cpextension.ServerContext) error {
	if _, err := sc.DB.Exec(context.Background(), "CREATE TABLE IF NOT EXISTS billing_ticks (at timestamptz NOT NULL)"); err != nil {
		return err
	}
	sc.Router.Get("/billing/plans", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("free,pro")) })
	sc.API.Get("/billing/me", func(w http.ResponseWriter, r *http.Request) {
		c, ok := auth.CallerFrom(r.Context())
		if !ok {
			http.Error(w, "no caller", 500)
			return
		}
		_, _ = w.Write([]byte(id.Format(id.Team, c.TeamID)))
	})
	sc.Use(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Billing", "on")
			next.ServeHTTP(w, r)
		})
	})
	sc.Go("billing-ticker", func(ctx context.Context) error {
		defer b.jobStopped.Store(true)
		for {
			if _, err := sc.DB.Exec(ctx, "INSERT INTO billing_ticks VALUES (now())"); err == nil {
				b.jobRuns.Add(1)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	return nil
}

func TestExtension(t *testing.T) {
	ext := &billing{}
	cp, err := pg.Start(context.Background(), cptest.Options{Extensions: []cpextension.Extension{ext}})
	if err != nil {
		t.Fatal(err)
	}
	a := cp.Signup(t, "a@example.com")
	r := cp.Must(t, 200, "GET", "/billing/plans", "", nil)
	if string(r.Body) != "free,pro" || r.Header.Get("X-Billing") != "on" {
		t.Fatalf("public route: %s %v", r, r.Header)
	}
	if r, _ := cp.Do("GET", "/v1/billing/me", "", nil); r.Status != 401 {
		t.Fatalf("extension route under /v1 without auth: %s", r)
	}
	if r := cp.Must(t, 200, "GET", "/v1/billing/me", a.Token, nil); string(r.Body) != a.TeamID {
		t.Fatalf("caller in extension: %s, want %s", r.Body, a.TeamID)
	}
	// Wrenn's own routes pass through the extension's middleware too.
	if r := cp.Must(t, 200, "GET", "/v1/sandboxes", a.Token, nil); r.Header.Get("X-Billing") != "on" {
		t.Fatal("middleware not applied to built-in routes")
	}
	waitfor.True(t, 10*time.Second, "the extension's job to run three times", func() bool { return ext.jobRuns.Load() >= 3 })
	if err := cp.Stop(); err != nil {
		t.Fatal(err)
	}
	if !ext.jobStopped.Load() {
		t.Fatal("the job was still running after the server stopped")
	}
}

type broken struct{}

func (broken) Name() string                                 { return "broken" }
func (broken) Register(sc *cpextension.ServerContext) error { return errors.New("license missing") }

func TestExtensionErrorStopsStart(t *testing.T) {
	_, err := pg.Start(context.Background(), cptest.Options{Extensions: []cpextension.Extension{broken{}}})
	if err == nil || !strings.Contains(err.Error(), "extension broken: license missing") {
		t.Fatalf("start with a failing extension: %v", err)
	}
}

func TestRestartKeepsData(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	cp, err := pg.Start(context.Background(), cptest.Options{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	a := cp.Signup(t, "a@example.com")
	key := cp.APIKey(t, a)
	if err := cp.Stop(); err != nil {
		t.Fatal(err)
	}
	// Same database and secret: sessions and keys survive, migrations are
	// not applied twice.
	cp2, err := pg.Start(context.Background(), cptest.Options{Secret: secret, DatabaseURL: cp.Config.DatabaseURL})
	if err != nil {
		t.Fatal(err)
	}
	defer cp2.Stop()
	cp2.Must(t, 200, "GET", "/v1/auth/me", a.Token, nil)
	cp2.Must(t, 200, "GET", "/v1/sandboxes", key, nil)
	// A different secret cannot open what the first one sealed (the
	// host CA's key): the control plane refuses to start, saying so,
	// rather than run unable to reach its hosts.
	if cp3, err := pg.Start(context.Background(), cptest.Options{DatabaseURL: cp.Config.DatabaseURL}); err == nil || !strings.Contains(err.Error(), "secret") {
		if err == nil {
			cp3.Stop()
		}
		t.Fatalf("start with another secret: %v", err)
	}
}

func TestBadConfig(t *testing.T) {
	_, err := pg.Start(context.Background(), cptest.Options{Secret: []byte("short")})
	if err == nil || !strings.Contains(err.Error(), "at least 32 bytes") {
		t.Fatalf("short secret: %v", err)
	}
}
