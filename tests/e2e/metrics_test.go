package e2e

import (
	"context"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/internal/metrics/metricstest"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

// TestMetrics runs a sandbox through its life on a control plane and a
// gVisor agent with metrics on; its team's metered usage is its running
// time, paused time left out. Then it scrapes both /metrics: each passes
// promlint, counts the operations, the proxied bytes and the failures,
// reports the host's capacity; /healthz and /readyz answer on the
// metrics listener without credentials and on the agent's API port to the
// control plane's certificate only; and every metric the Grafana
// dashboard in docs/ uses is one the two processes serve.
func TestMetrics(t *testing.T) {
	metricsAddr := freeAddr(t)
	st := startStackArgs(t, []string{"--metrics-listen", metricsAddr}, 2)
	h := st.hosts[0]
	agentMetrics := "http://" + metricsAddr + "/metrics"

	asCP, err := st.cp.AgentTransport(context.Background(), h.hostID)
	if err != nil {
		t.Fatal(err)
	}
	cpClient := &http.Client{Transport: asCP}
	for base, c := range map[string]*http.Client{"https://" + h.addr: cpClient, "http://" + metricsAddr: http.DefaultClient} {
		for path, want := range map[string]string{"/healthz": `"ok"`, "/readyz": `"ready"`} {
			res, err := c.Get(base + path)
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
	if res, err := cpClient.Get("https://" + h.addr + "/metrics"); err != nil || res.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /metrics on the agent's API port: %v %v", res, err)
	}
	if res, err := http.Get("http://" + h.addr + "/healthz"); err == nil && res.StatusCode == http.StatusOK {
		t.Fatal("the agent's API port answered plain HTTP")
	}

	key := st.key(t, "alice@example.com")
	created := time.Now()
	sb := sandboxOf(t, st.cp.Must(t, 201, "POST", "/v1/sandboxes", key, map[string]any{"template": "minimal", "vcpus": 2, "memory_mib": 512, "timeout_seconds": 600}))
	running := time.Now()
	// Proxied traffic both ways through both proxies: a request without
	// envd's token, which envd refuses with a JSON body.
	req, _ := http.NewRequest("POST", st.cp.ProxyURL+"/envs", strings.NewReader(strings.Repeat("x", 1000)))
	req.Header.Set("E2b-Sandbox-Id", sb.ID)
	req.Header.Set("E2b-Sandbox-Port", "49983")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("envd through the proxy without its token: %d", res.StatusCode)
	}

	during := metricstest.Scrape(t, agentMetrics)
	if n := during.Must(t, "wrenn_agent_sandboxes", "state=running", "runtime=gvisor"); n != 1 {
		t.Errorf("running sandboxes on the agent: %v", n)
	}
	if n := metricstest.Scrape(t, st.cp.MetricsURL+"/metrics").Must(t, "wrenn_sandboxes", "state=running", "runtime=gvisor"); n != 1 {
		t.Errorf("running sandboxes in the control plane: %v", n)
	}
	if during.Must(t, "wrenn_agent_vcpus_committed") < 1 || during.Must(t, "wrenn_agent_memory_committed_bytes") <= 0 || during.Must(t, "wrenn_agent_sandbox_slots_used") != 1 {
		t.Error("the running sandbox is not in the agent's usage")
	}
	if during.Must(t, "wrenn_agent_vcpus") < 1 || during.Must(t, "wrenn_agent_memory_bytes") <= 0 || during.Must(t, "wrenn_agent_disk_free_bytes") <= 0 || during.Must(t, "wrenn_agent_sandbox_slots") < 1 {
		t.Error("the agent's capacity is empty")
	}

	pausing := time.Now()
	st.cp.Must(t, 200, "POST", "/v1/sandboxes/"+sb.ID+"/pause", key, nil)
	paused := time.Now()
	// Paused time is not metered: make some.
	time.Sleep(3 * time.Second)
	resuming := time.Now()
	st.cp.Must(t, 200, "POST", "/v1/sandboxes/"+sb.ID+"/resume", key, nil)
	st.cp.Must(t, 204, "DELETE", "/v1/sandboxes/"+sb.ID, key, nil)
	destroyed := time.Now()
	checkUsage(t, st, key, 2, 512, pausing.Sub(running), destroyed.Sub(created)-resuming.Sub(paused))
	// Failures: the agent refuses to destroy what it does not have, the
	// control plane to create what does not fit.
	if _, err := h.client.DestroySandbox(context.Background(), connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: "no-such-sandbox"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("destroy an unknown sandbox on the agent: %v", err)
	}
	if r, _ := st.cp.Do("POST", "/v1/sandboxes", key, map[string]any{"template": "minimal", "vcpus": 1000}); r.Status/100 != 4 {
		t.Fatalf("create with 1000 vCPUs: %s", r)
	}

	am := metricstest.Scrape(t, agentMetrics)
	cm := metricstest.Scrape(t, st.cp.MetricsURL+"/metrics")
	for _, op := range []string{"create", "pause", "resume", "destroy"} {
		if n := am.Must(t, "wrenn_agent_sandbox_operations_total", "operation="+op, "result=ok"); n < 1 {
			t.Errorf("agent: %s ok = %v", op, n)
		}
		am.Must(t, "wrenn_agent_sandbox_operation_duration_seconds", "operation="+op)
		if n := cm.Must(t, "wrenn_sandbox_operations_total", "operation="+op, "result=ok"); n != 1 {
			t.Errorf("control plane: %s ok = %v", op, n)
		}
	}
	am.Must(t, "wrenn_agent_sandbox_operation_failures_total", "operation=destroy", "reason=not_found")
	cm.Must(t, "wrenn_sandbox_operation_failures_total", "operation=create", "reason=invalid")
	if n := am.Must(t, "wrenn_agent_sandboxes", "state=running", "runtime=gvisor"); n != 0 {
		t.Errorf("running sandboxes on the agent after destroy: %v", n)
	}
	am.Must(t, "wrenn_agent_http_requests_total", "route=/hostagent.v1.HostAgentService/CreateSandbox", "code=200")
	am.Must(t, "wrenn_agent_http_requests_total", "route=proxy")
	am.Must(t, "wrenn_agent_http_request_duration_seconds", "route=/hostagent.v1.HostAgentService/HostInfo")
	for _, route := range am.LabelValues("wrenn_agent_http_requests_total", "route") {
		if strings.Contains(route, sb.ID) {
			t.Errorf("a route label holds an ID: %q", route)
		}
	}
	for _, m := range []metricstest.Families{am, cm} {
		prefix := "wrenn_"
		if m["wrenn_agent_proxy_bytes_total"] != nil {
			prefix = "wrenn_agent_"
		}
		if m.Must(t, prefix+"proxy_bytes_total", "direction=in") <= 0 || m.Must(t, prefix+"proxy_bytes_total", "direction=out") <= 0 {
			t.Errorf("%sproxy_bytes_total counted nothing", prefix)
		}
		if n := m.Must(t, prefix+"proxy_open_streams"); n != 0 {
			t.Errorf("%sproxy_open_streams after the requests ended: %v", prefix, n)
		}
	}
	am.CheckDashboard(t, "../../docs/grafana-dashboard.json", "wrenn_agent_")
	cm.CheckDashboard(t, "../../docs/grafana-dashboard.json", "", "wrenn_agent_")
}

// checkUsage: the team's metered use is that one sandbox's running time,
// between what it surely ran and the wall time less what it was surely
// paused, times its vCPUs and memory.
func checkUsage(t *testing.T, st *cpStack, key string, vcpus, memMiB float64, atLeast, atMost time.Duration) {
	t.Helper()
	var u struct {
		Days  []struct{ Date string }
		Total struct {
			Sandboxes        int64
			RunningSeconds   float64 `json:"running_seconds"`
			VCPUSeconds      float64 `json:"vcpu_seconds"`
			MemoryMiBSeconds float64 `json:"memory_mib_seconds"`
		}
	}
	// Yesterday too, in case the test ran across midnight (UTC).
	from := time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly)
	if err := st.cp.Must(t, 200, "GET", "/v1/usage?from="+from, key, nil).JSON(&u); err != nil {
		t.Fatal(err)
	}
	got := u.Total
	if got.Sandboxes != 1 || got.RunningSeconds < atLeast.Seconds() || got.RunningSeconds > atMost.Seconds() ||
		math.Abs(got.VCPUSeconds-vcpus*got.RunningSeconds) > 0.01 || math.Abs(got.MemoryMiBSeconds-memMiB*got.RunningSeconds) > 1 {
		t.Errorf("usage %+v; want running seconds in [%.3f, %.3f], %v vCPUs, %v MiB", got, atLeast.Seconds(), atMost.Seconds(), vcpus, memMiB)
	}
}
