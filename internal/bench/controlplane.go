package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	"git.omukk.dev/wrenn/sandbox/internal/cptest"
	"git.omukk.dev/wrenn/sandbox/internal/guestimage"
	"git.omukk.dev/wrenn/sandbox/internal/hostagent"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

// CPOptions configures the control plane benchmark.
type CPOptions struct {
	Envd, Init string
	Runtime    string // the agent's for the create overhead; default gvisor where installed, else qemu
	Sandboxes  int    // rows in the team for the list benchmark
	Requests   int    // serial requests per measurement
	Creates    int    // creates each way for the overhead
	Log        io.Writer
}

// ControlPlane measures a real control plane on a private PostgreSQL:
// GET /v1/sandboxes with many sandboxes in the team, API-key
// authentication against an unauthenticated route, and what the control
// plane adds to a sandbox create over the agent's own create time (both
// measured here, interleaved).
func ControlPlane(ctx context.Context, o CPOptions) ([]Row, error) {
	if o.Sandboxes == 0 {
		o.Sandboxes = 1000
	}
	if o.Requests == 0 {
		o.Requests = 200
	}
	if o.Creates == 0 {
		o.Creates = 10
	}
	pg, err := cptest.StartPostgres()
	if err != nil {
		return nil, err
	}
	defer pg.Stop()
	cp, err := pg.Start(ctx, cptest.Options{})
	if err != nil {
		return nil, err
	}
	defer cp.Stop()
	s, err := cp.CreateAdmin(ctx, "bench@example.com")
	if err != nil {
		return nil, fmt.Errorf("create the admin: %w", err)
	}
	var k struct{ Key string }
	if r, err := cp.Do("POST", "/v1/api-keys", s.Token, map[string]string{"name": "bench"}); err != nil || r.JSON(&k) != nil {
		return nil, fmt.Errorf("API key: %v %v", r, err)
	}
	var me struct {
		ActiveTeamID string `json:"active_team_id"`
	}
	if r, err := cp.Do("GET", "/v1/auth/me", s.Token, nil); err != nil || r.JSON(&me) != nil {
		return nil, fmt.Errorf("me: %v %v", r, err)
	}
	team, err := id.Parse(id.Team, me.ActiveTeamID)
	if err != nil {
		return nil, err
	}
	if err := insertSandboxes(ctx, cp.Config.DatabaseURL, team.String(), o.Sandboxes); err != nil {
		return nil, err
	}

	var rows []Row
	get := func(path, cred string, wantLen int) func() error {
		return func() error {
			r, err := cp.Do("GET", path, cred, nil)
			if err != nil {
				return err
			}
			if r.Status != http.StatusOK {
				return fmt.Errorf("GET %s: %s", path, r)
			}
			if wantLen > 0 {
				var list []json.RawMessage
				if err := r.JSON(&list); err != nil || len(list) != wantLen {
					return fmt.Errorf("GET %s: %d entries, want %d", path, len(list), wantLen)
				}
			}
			return nil
		}
	}
	list, err := timeN(o.Requests, get("/v1/sandboxes", k.Key, o.Sandboxes))
	if err != nil {
		return nil, err
	}
	listRate, err := throughput(8, 3*time.Second, get("/v1/sandboxes", k.Key, 0))
	if err != nil {
		return nil, err
	}
	rows = append(rows, Row{Metric: fmt.Sprintf("GET /v1/sandboxes, %d in the team (API key)", o.Sandboxes),
		Wrenn: fmt.Sprintf("p50 %s, p99 %s; %.0f req/s with 8 clients", Ms(Median(list)), Ms(Percentile(list, 99)), listRate)})

	health, err := timeN(o.Requests*2, get("/health", "", 0))
	if err != nil {
		return nil, err
	}
	keyed, err := timeN(o.Requests*2, get("/v1/templates", k.Key, 0))
	if err != nil {
		return nil, err
	}
	keyRate, err := throughput(8, 3*time.Second, get("/v1/templates", k.Key, 0))
	if err != nil {
		return nil, err
	}
	rows = append(rows, Row{Metric: "API-key authenticated request (GET /v1/templates)",
		Wrenn:    fmt.Sprintf("p50 %s, p99 %s; %.0f req/s with 8 clients", Ms(Median(keyed)), Ms(Percentile(keyed, 99)), keyRate),
		Baseline: fmt.Sprintf("GET /health, no auth (one DB ping): p50 %s", Ms(Median(health))),
		Ratio:    "+" + Ms(Median(keyed)-Median(health))})

	createRows, err := createOverhead(ctx, o, cp, s.Token, k.Key)
	if err != nil {
		return nil, fmt.Errorf("create overhead: %w", err)
	}
	return append(rows, createRows...), nil
}

// insertSandboxes adds n stopped-looking-running rows straight into the
// database: listing reads the database only.
func insertSandboxes(ctx context.Context, dbURL, team string, n int) error {
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, `INSERT INTO sandboxes (id, team_id, template, state, vcpus, memory_mib, disk_mib, timeout_seconds, on_timeout, allow_internet, metadata)
		SELECT gen_random_uuid(), $1::uuid, 'minimal', 'running', 1, 256, 1024, 300, 'destroy', true, jsonb_build_object('n', g::text)
		FROM generate_series(1, $2::int) g`, team, n)
	return err
}

// throughput runs f from workers goroutines for d and returns calls/s.
func throughput(workers int, d time.Duration, f func() error) (float64, error) {
	var n atomic.Int64
	var firstErr error
	var once sync.Once
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if err := f(); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return float64(n.Load()) / d.Seconds(), firstErr
}

// createOverhead registers an in-process agent with the control plane and
// times creates through the control plane against creates on the agent
// directly, interleaved so that both see the same machine.
func createOverhead(ctx context.Context, o CPOptions, cp *cptest.CP, session, key string) ([]Row, error) {
	rt := o.Runtime
	if rt == "" {
		rt = "qemu"
		if _, err := exec.LookPath("runsc"); err == nil {
			rt = "gvisor"
		}
	}
	work, err := os.MkdirTemp("", "wrenn-bench-cp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	images := filepath.Join(work, "images")
	if _, err := guestimage.Build(ctx, guestimage.Options{Name: "minimal", Dir: images, Envd: o.Envd, Init: o.Init, Progress: o.Log}); err != nil {
		return nil, err
	}
	var tok struct{ Token string }
	if r, err := cp.Do("POST", "/v1/hosts/tokens", session, nil); err != nil || r.JSON(&tok) != nil {
		return nil, fmt.Errorf("host token: %v %v", r, err)
	}
	state := filepath.Join(work, "agent")
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	ready := make(chan string, 1)
	go func() {
		done <- hostagent.Run(actx, hostagent.Options{Listen: "127.0.0.1:0", StateDir: state, ImagesDir: images, Runtime: rt, ControlPlane: cp.URL, DestroyOnStop: true,
			RegistrationToken: tok.Token, ReadyTimeout: 3 * time.Minute, Ready: ready, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}()
	defer func() {
		stop()
		<-done
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		done <- err
		return nil, err
	}
	var creds struct {
		HostID string `json:"host_id"`
	}
	b, err := os.ReadFile(filepath.Join(state, "control-plane.json"))
	if err != nil || json.Unmarshal(b, &creds) != nil {
		return nil, fmt.Errorf("agent credentials: %v", err)
	}
	// Direct calls go as the control plane's do: mutual TLS.
	agent, err := cp.AgentClient(ctx, creds.HostID, addr)
	if err != nil {
		return nil, err
	}
	// The host is placeable once its first heartbeat is in.
	for deadline := time.Now().Add(30 * time.Second); ; {
		var hosts []struct{ Status string }
		if r, err := cp.Do("GET", "/v1/hosts", session, nil); err == nil && r.JSON(&hosts) == nil && len(hosts) == 1 && hosts[0].Status == "ready" {
			break
		}
		if time.Now().After(deadline) {
			return nil, errors.New("the agent did not become ready")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var direct, viaCP []time.Duration
	for i := range o.Creates + 1 { // the first pair warms up
		t := time.Now()
		res, err := agent.CreateSandbox(ctx, connect.NewRequest(&pb.CreateSandboxRequest{SandboxId: fmt.Sprintf("bench-direct-%d", i), Template: "minimal", AllowInternet: true}))
		d := time.Since(t)
		if err != nil {
			return nil, err
		}
		if _, err := agent.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: res.Msg.GetSandbox().GetId()})); err != nil {
			return nil, err
		}
		t = time.Now()
		r, err := cp.Do("POST", "/v1/sandboxes", key, map[string]string{"template": "minimal"})
		c := time.Since(t)
		if err != nil || r.Status != http.StatusCreated {
			return nil, fmt.Errorf("create through the control plane: %v %v", r, err)
		}
		if r, err := cp.Do("DELETE", "/v1/sandboxes/"+r.Map()["id"].(string), key, nil); err != nil || r.Status != http.StatusNoContent {
			return nil, fmt.Errorf("destroy: %v %v", r, err)
		}
		if i > 0 {
			direct, viaCP = append(direct, d), append(viaCP, c)
		}
	}
	return []Row{{Metric: fmt.Sprintf("create through the control plane (%s), median of %d", rt, o.Creates),
		Wrenn:    fmt.Sprintf("%s (p95 %s)", Ms(Median(viaCP)), Ms(Percentile(viaCP, 95))),
		Baseline: fmt.Sprintf("the agent's own create: %s (p95 %s)", Ms(Median(direct)), Ms(Percentile(direct, 95))),
		Ratio:    "+" + Ms(Median(viaCP)-Median(direct)), Target: "< +20 ms"}}, nil
}
