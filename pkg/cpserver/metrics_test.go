package cpserver_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"git.omukk.dev/wrenn/sandbox/internal/cptest"
	"git.omukk.dev/wrenn/sandbox/internal/metrics/metricstest"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
)

// TestMetrics: the control plane's /metrics (on its own listener only)
// passes promlint and reports requests by route pattern, the fleet from
// PostgreSQL, the pool, failed operations and proxy traffic; /healthz and
// /readyz answer without credentials on both listeners.
func TestMetrics(t *testing.T) {
	ctx := context.Background()
	cp, err := pg.Start(ctx, cptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	admin := cp.Admin(t, "admin@example.com")

	for _, base := range []string{cp.URL, cp.MetricsURL} {
		for path, want := range map[string]string{"/healthz": `"ok"`, "/readyz": `"ready"`} {
			res, err := http.Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || !strings.Contains(string(b), want) {
				t.Fatalf("GET %s%s: %d %s", base, path, res.StatusCode, b)
			}
		}
	}
	// Never on the API's listener (where the dashboard takes the path).
	if r, _ := cp.Do("GET", "/metrics", "", nil); strings.Contains(string(r.Body), "# HELP") {
		t.Fatalf("GET /metrics on the API serves metrics: %s", r)
	}

	// A host registers and heartbeats (over HTTP, as an agent does).
	reg := cp.RegisterHost(t, admin.Token, "metrics-host", "127.0.0.1:1")
	cp.Must(t, 200, "POST", "/v1/hosts/"+reg.HostID+"/heartbeat", reg.Secret, hostapi.Heartbeat{Address: "127.0.0.1:1", Capacity: hostapi.Capacity{Runtime: "gvisor",
		CPUs: 8, MemoryMiB: 16384, DiskFreeMiB: 1024, MaxSandboxes: 20, Sandboxes: 1, CommittedVCPUs: 2, CommittedMemoryMiB: 512}})
	// A sandbox row on it, as a create leaves it.
	hid, _ := id.Parse(id.Host, reg.HostID)
	conn, err := pgx.Connect(ctx, cp.Config.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tid, _ := id.Parse(id.Team, admin.TeamID)
	if _, err := conn.Exec(ctx, `INSERT INTO sandboxes (id, team_id, host_id, template, state, vcpus, memory_mib, disk_mib, timeout_seconds, on_timeout, allow_internet)
		VALUES (gen_random_uuid(), $1, $2, 'base', 'running', 2, 512, 1024, 300, 'destroy', true)`, tid, hid); err != nil {
		t.Fatal(err)
	}

	// Requests with IDs in their paths, and a create that fails.
	for range 3 {
		cp.Must(t, 404, "GET", "/v1/sandboxes/"+id.Format(id.Sandbox, hid), admin.Token, nil)
	}
	if r, _ := cp.Do("POST", "/v1/sandboxes", admin.Token, map[string]any{"template": "base", "vcpus": 1000}); r.Status/100 != 4 {
		t.Fatalf("create with 1000 vCPUs: %s", r)
	}
	// Proxy traffic for a sandbox that is not there.
	req, _ := http.NewRequest("GET", cp.ProxyURL+"/", nil)
	req.Header.Set("E2b-Sandbox-Id", id.Format(id.Sandbox, hid))
	req.Header.Set("E2b-Sandbox-Port", "8000")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()

	m := metricstest.Scrape(t, cp.MetricsURL+"/metrics")
	if n := m.Must(t, "wrenn_http_requests_total", "route=/v1/sandboxes/{sandboxID}", "method=GET", "code=404"); n != 3 {
		t.Errorf("GET /v1/sandboxes/{sandboxID} 404s: %v, want 3", n)
	}
	m.Must(t, "wrenn_http_request_duration_seconds", "route=/v1/sandboxes/{sandboxID}", "method=GET")
	m.Must(t, "wrenn_http_requests_total", "route=/healthz", "code=200")
	for _, route := range m.LabelValues("wrenn_http_requests_total", "route") {
		if strings.Contains(route, "sb-") || strings.Contains(route, "host-") {
			t.Errorf("a route label holds an ID: %q", route)
		}
	}
	if n := m.Must(t, "wrenn_sandbox_operations_total", "operation=create", "result=error"); n != 1 {
		t.Errorf("failed creates: %v", n)
	}
	m.Must(t, "wrenn_sandbox_operation_failures_total", "operation=create", "reason=invalid")
	m.Must(t, "wrenn_sandbox_operation_duration_seconds", "operation=create")
	if n := m.Must(t, "wrenn_sandboxes", "state=running", "runtime=gvisor"); n != 1 {
		t.Errorf("running gVisor sandboxes: %v", n)
	}
	if n := m.Must(t, "wrenn_sandboxes", "state=paused", "runtime=gvisor"); n != 0 {
		t.Errorf("paused gVisor sandboxes: %v", n)
	}
	if n := m.Must(t, "wrenn_hosts", "status=ready"); n != 1 {
		t.Errorf("ready hosts: %v", n)
	}
	for name, want := range map[string]float64{"wrenn_host_vcpus": 8, "wrenn_host_vcpus_committed": 2, "wrenn_host_memory_bytes": 16384 << 20,
		"wrenn_host_memory_committed_bytes": 512 << 20, "wrenn_host_disk_free_bytes": 1024 << 20, "wrenn_host_sandbox_slots": 20, "wrenn_host_sandboxes": 1} {
		if got := m.Must(t, name, "host="+reg.HostID, "name=metrics-host"); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if m.Must(t, "wrenn_db_pool_max_connections") < 1 || m.Must(t, "wrenn_db_pool_acquires_total") < 1 {
		t.Error("pool statistics are empty")
	}
	if m.Must(t, "wrenn_proxy_bytes_total", "direction=out") <= 0 {
		t.Error("the proxy's error response was not counted")
	}
	if n := m.Must(t, "wrenn_proxy_open_streams"); n != 0 {
		t.Errorf("open proxy streams after the request ended: %v", n)
	}
	m.Must(t, "go_goroutines")
	m.Must(t, "process_open_fds")
	m.CheckDashboard(t, "../../docs/grafana-dashboard.json", "", "wrenn_agent_")
}
