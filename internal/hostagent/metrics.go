package hostagent

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"git.omukk.dev/wrenn/sandbox/internal/metrics"
	"git.omukk.dev/wrenn/sandbox/internal/network"
	"git.omukk.dev/wrenn/sandbox/internal/sandbox"
	"git.omukk.dev/wrenn/sandbox/pkg/fault"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
	"git.omukk.dev/wrenn/sandbox/proto/hostagent/v1/hostagentv1connect"
)

// metricsPrefix starts the agent's metric names.
const metricsPrefix = metrics.Namespace + "_agent"

// agentMetrics are the agent's Prometheus metrics, on its own registry.
type agentMetrics struct {
	reg      *prometheus.Registry
	requests *metrics.Requests
	ops      *metrics.Ops
	proxy    *metrics.Proxy
}

// newAgentMetrics registers the agent's metrics over m, whose network
// slots number netSlots (0: a whole partition's).
func newAgentMetrics(m *sandbox.Manager, netSlots int) *agentMetrics {
	if netSlots <= 0 {
		netSlots = network.PartitionSlots
	}
	reg := metrics.NewRegistry()
	reg.MustRegister(&hostCollector{m: m, netSlots: netSlots})
	return &agentMetrics{reg: reg, requests: metrics.NewRequests(reg, metricsPrefix),
		ops: metrics.NewOps(reg, metricsPrefix), proxy: metrics.NewProxy(reg, metricsPrefix)}
}

// lifecycleOps names the RPCs counted as sandbox lifecycle operations.
var lifecycleOps = map[string]string{
	hostagentv1connect.HostAgentServiceCreateSandboxProcedure:  "create",
	hostagentv1connect.HostAgentServiceResumeSandboxProcedure:  "resume",
	hostagentv1connect.HostAgentServicePauseSandboxProcedure:   "pause",
	hostagentv1connect.HostAgentServiceDestroySandboxProcedure: "destroy",
}

// interceptor counts lifecycle RPCs with their latency, and their
// failures by fault kind (the control plane's vocabulary too).
func (am *agentMetrics) interceptor() connect.Interceptor {
	return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			op, ok := lifecycleOps[req.Spec().Procedure]
			if !ok {
				return next(ctx, req)
			}
			start := time.Now()
			res, err := next(ctx, req)
			reason := ""
			if err != nil {
				reason = fault.KindOf(err).String()
			}
			am.ops.Observe(op, time.Since(start), reason)
			return res, err
		}
	})
}

// instrument counts every request to the agent by route: the RPC
// procedure, "proxy" for sandbox traffic, the probes by path, else
// "unmatched".
func (am *agentMetrics) instrument(next http.Handler) http.Handler {
	return am.requests.Wrap(next, func(r *http.Request) string {
		switch {
		case r.Header.Get(hostapi.HeaderProxySandbox) != "":
			return "proxy"
		case procedures[r.URL.Path], r.URL.Path == "/healthz", r.URL.Path == "/readyz":
			return r.URL.Path
		}
		return metrics.Unmatched
	})
}

// handler instruments the agent's handler, counting sandbox traffic as
// proxy traffic.
func (am *agentMetrics) handler(next http.Handler) http.Handler {
	proxied := am.proxy.Wrap(next)
	return am.instrument(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(hostapi.HeaderProxySandbox) != "" {
			proxied.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	}))
}

// procedures is every procedure of the agent's service.
var procedures = func() map[string]bool {
	out := map[string]bool{}
	methods := pb.File_hostagent_v1_hostagent_proto.Services().Get(0).Methods()
	for i := range methods.Len() {
		out["/"+hostagentv1connect.HostAgentServiceName+"/"+string(methods.Get(i).Name())] = true
	}
	return out
}()

var (
	agentSandboxes = prometheus.NewDesc(metricsPrefix+"_sandboxes", "Sandboxes on this host by state and runtime.", []string{"state", "runtime"}, nil)
	agentVCPUs     = prometheus.NewDesc(metricsPrefix+"_vcpus", "This host's CPUs.", nil, nil)
	agentVCPUsUsed = prometheus.NewDesc(metricsPrefix+"_vcpus_committed", "vCPUs promised to running sandboxes.", nil, nil)
	agentMem       = prometheus.NewDesc(metricsPrefix+"_memory_bytes", "This host's memory.", nil, nil)
	agentMemUsed   = prometheus.NewDesc(metricsPrefix+"_memory_committed_bytes", "Memory promised to running sandboxes.", nil, nil)
	agentDisk      = prometheus.NewDesc(metricsPrefix+"_disk_free_bytes", "Disk this host can still promise to new sandboxes.", nil, nil)
	agentSlots     = prometheus.NewDesc(metricsPrefix+"_sandbox_slots", "Most sandboxes this host takes: its network slots, or max_sandboxes if fewer.", nil, nil)
	agentSlotsUsed = prometheus.NewDesc(metricsPrefix+"_sandbox_slots_used", "Sandboxes holding a slot on this host.", nil, nil)
)

// sandboxStates are reported even at 0 so that series do not vanish.
var sandboxStates = []sandbox.State{sandbox.Creating, sandbox.Running, sandbox.Pausing, sandbox.Paused, sandbox.Resuming, sandbox.Stopping, sandbox.Error}

// hostCollector reads the manager at each scrape.
type hostCollector struct {
	m        *sandbox.Manager
	netSlots int
}

func (c *hostCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{agentSandboxes, agentVCPUs, agentVCPUsUsed, agentMem, agentMemUsed, agentDisk, agentSlots, agentSlotsUsed} {
		ch <- d
	}
}

func (c *hostCollector) Collect(ch chan<- prometheus.Metric) {
	capa := capacityOf(c.m)
	// One driver runs every sandbox here; its name is the runtime label,
	// as in the control plane's wrenn_sandboxes (the accelerator, in
	// Info.Runtime, is not).
	counts := map[sandbox.State]int{}
	for _, s := range sandboxStates {
		counts[s] = 0
	}
	used := 0
	for _, i := range c.m.List() {
		counts[i.State]++
		if i.State != sandbox.Stopped {
			used++
		}
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(agentSandboxes, prometheus.GaugeValue, float64(n), string(state), capa.Runtime)
	}
	slots := c.netSlots
	if capa.MaxSandboxes > 0 && int(capa.MaxSandboxes) < slots {
		slots = int(capa.MaxSandboxes)
	}
	const mib = 1 << 20
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	g(agentVCPUs, float64(capa.CPUs))
	g(agentVCPUsUsed, float64(capa.CommittedVCPUs))
	g(agentMem, float64(capa.MemoryMiB)*mib)
	g(agentMemUsed, float64(capa.CommittedMemoryMiB)*mib)
	g(agentDisk, float64(capa.DiskFreeMiB)*mib)
	g(agentSlots, float64(slots))
	g(agentSlotsUsed, float64(used))
}

// readiness is what /readyz reports: the runtime and the manager are up
// (the agent serves only once they are), and, with a control plane, the
// host is registered and its last heartbeat got through.
type readiness struct {
	controlPlane bool
	heartbeatOK  atomic.Bool
}

func (r *readiness) check(context.Context) error {
	if r.controlPlane && !r.heartbeatOK.Load() {
		return errors.New("the control plane has not accepted this host's last heartbeat")
	}
	return nil
}
