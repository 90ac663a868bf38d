package hostagent

import (
	"context"
	"errors"
	"git.omukk.dev/wrenn/sandbox/internal/egress"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/internal/metrics"
	"git.omukk.dev/wrenn/sandbox/internal/metrics/metricstest"
	"git.omukk.dev/wrenn/sandbox/internal/network"
	"git.omukk.dev/wrenn/sandbox/internal/runtime"
	"git.omukk.dev/wrenn/sandbox/internal/sandbox"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
	"git.omukk.dev/wrenn/sandbox/proto/hostagent/v1/hostagentv1connect"
)

// noGuests is a driver of a host that cannot start guests: these tests
// look at an agent's metrics with no sandbox (tests/e2e TestMetrics runs
// real ones).
type noGuests struct{}

func (noGuests) Name() string                  { return "none" }
func (noGuests) Accelerator() (string, string) { return "none", "test" }
func (noGuests) Start(context.Context, runtime.Spec) (runtime.Instance, error) {
	return nil, errors.New("this host starts no guests")
}

type noSlots struct{}

func (noSlots) Acquire(bool, bool) (*network.Slot, error)          { return nil, errors.New("no slots") }
func (noSlots) Release(*network.Slot) error                        { return nil }
func (noSlots) SetSandboxEgress(*network.Slot, egress.Rules) error { return nil }

// TestAgentMetrics: the agent's /metrics lints clean, reports its
// capacity, labels requests by procedure (unknown paths as unmatched),
// and counts a failed lifecycle RPC by its Connect code.
func TestAgentMetrics(t *testing.T) {
	m, err := sandbox.NewManager(sandbox.Config{StateDir: t.TempDir(), ImagesDir: t.TempDir(), Driver: noGuests{}, Net: noSlots{},
		HostCPUs: 4, HostMemMiB: 8192, MaxSandboxes: 3, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	am := newAgentMetrics(m, 0)
	svc := &Service{M: m, HostID: "h1", Log: slog.New(slog.DiscardHandler)}
	mux := http.NewServeMux()
	path, h := Handler(svc, connect.WithInterceptors(am.interceptor()))
	mux.Handle(path, requireBearer("0123456789abcdef0123", svc.Log, h))
	agent := httptest.NewServer(am.handler(mux))
	defer agent.Close()
	metricsSrv := httptest.NewServer(metrics.Handler(am.reg))
	defer metricsSrv.Close()

	client := hostagentv1connect.NewHostAgentServiceClient(http.DefaultClient, agent.URL, connect.WithInterceptors(bearer("0123456789abcdef0123")))
	if _, err := client.DestroySandbox(context.Background(), connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: "nope"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("destroy an unknown sandbox: %v", err)
	}
	if _, err := client.HostInfo(context.Background(), connect.NewRequest(&pb.HostInfoRequest{})); err != nil {
		t.Fatal(err)
	}
	if res, err := http.Get(agent.URL + "/hostagent.v1.HostAgentService/NoSuchThing-sb-1"); err == nil {
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}

	f := metricstest.Scrape(t, metricsSrv.URL)
	for name, want := range map[string]float64{"wrenn_agent_vcpus": 4, "wrenn_agent_memory_bytes": 8192 << 20, "wrenn_agent_sandbox_slots": 3,
		"wrenn_agent_sandbox_slots_used": 0, "wrenn_agent_vcpus_committed": 0, "wrenn_agent_proxy_open_streams": 0} {
		if got := f.Must(t, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if n := f.Must(t, "wrenn_agent_sandboxes", "state=running", "runtime=none"); n != 0 {
		t.Errorf("running sandboxes: %v", n)
	}
	f.Must(t, "wrenn_agent_sandbox_operation_failures_total", "operation=destroy", "reason=not_found")
	f.Must(t, "wrenn_agent_sandbox_operations_total", "operation=destroy", "result=error")
	f.Must(t, "wrenn_agent_http_requests_total", "route=/hostagent.v1.HostAgentService/HostInfo", "code=200")
	f.Must(t, "wrenn_agent_http_requests_total", "route=unmatched", "code=401") // behind the bearer check
	f.Must(t, "wrenn_agent_http_request_duration_seconds", "route=/hostagent.v1.HostAgentService/DestroySandbox")
	f.CheckDashboard(t, "../../docs/grafana-dashboard.json", "wrenn_agent_")
}

func bearer(secret string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+secret)
			return next(ctx, req)
		}
	}
}
