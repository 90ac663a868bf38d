// Package cpmetrics is the control plane's Prometheus metrics: sandboxes
// by state and runtime and the hosts' capacity and usage (read from
// PostgreSQL at each scrape, so every replica reports the same fleet),
// the PostgreSQL pool's statistics, and the sandbox lifecycle operations
// this replica ran. Request and proxy metrics come from internal/metrics.
package cpmetrics

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"git.omukk.dev/wrenn/sandbox/internal/metrics"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/fault"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
)

// Prefix starts the control plane's metric names.
const Prefix = metrics.Namespace

// Metrics are the control plane's metrics on their own registry.
type Metrics struct {
	Registry *prometheus.Registry
	Requests *metrics.Requests
	Proxy    *metrics.Proxy
	Ops      *metrics.Ops
}

// New registers the control plane's metrics over pool.
func New(pool *pgxpool.Pool, log *slog.Logger) *Metrics {
	reg := metrics.NewRegistry()
	reg.MustRegister(&fleet{q: db.New(pool), log: log}, &poolStats{pool: pool})
	return &Metrics{
		Registry: reg,
		Requests: metrics.NewRequests(reg, Prefix),
		Proxy:    metrics.NewProxy(reg, Prefix),
		Ops:      metrics.NewOps(reg, Prefix),
	}
}

// ObserveOperation is a service.Service OnOperation hook.
func (m *Metrics) ObserveOperation(op string, took time.Duration, err error) {
	m.Ops.Observe(op, took, Reason(err))
}

// Reason labels a failed operation by its error's fault kind
// ("no_capacity"), "" when it succeeded.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	return fault.KindOf(err).String()
}

var (
	sandboxesDesc = prometheus.NewDesc(Prefix+"_sandboxes", "Sandboxes not stopped, by state and by the runtime of their host.", []string{"state", "runtime"}, nil)
	hostsDesc     = prometheus.NewDesc(Prefix+"_hosts", "Registered hosts by status.", []string{"status"}, nil)
	hostLabels    = []string{"host", "name"}
	hostVCPUs     = prometheus.NewDesc(Prefix+"_host_vcpus", "A host's CPUs.", hostLabels, nil)
	hostVCPUsUsed = prometheus.NewDesc(Prefix+"_host_vcpus_committed", "vCPUs a host has promised to its sandboxes.", hostLabels, nil)
	hostMem       = prometheus.NewDesc(Prefix+"_host_memory_bytes", "A host's memory.", hostLabels, nil)
	hostMemUsed   = prometheus.NewDesc(Prefix+"_host_memory_committed_bytes", "Memory a host has promised to its sandboxes.", hostLabels, nil)
	hostDisk      = prometheus.NewDesc(Prefix+"_host_disk_free_bytes", "Disk a host can still promise to new sandboxes.", hostLabels, nil)
	hostSlots     = prometheus.NewDesc(Prefix+"_host_sandbox_slots", "Most sandboxes a host takes (0: bounded only by its network slots).", hostLabels, nil)
	hostSandboxes = prometheus.NewDesc(Prefix+"_host_sandboxes", "Sandboxes a host reported in its last heartbeat.", hostLabels, nil)
	hostHeartbeat = prometheus.NewDesc(Prefix+"_host_last_heartbeat_timestamp_seconds", "When a host's last heartbeat arrived.", hostLabels, nil)
)

// hostStatuses are every status a host can have, reported even at 0 so
// that a dashboard's series do not vanish; sandboxStates likewise, but
// stopped, which sandboxes stay in for good.
var (
	hostStatuses  = []string{"pending", "ready", "draining", "unreachable"}
	sandboxStates = []string{"creating", "running", "pausing", "paused", "resuming", "stopping", "error"}
)

// fleet reads sandboxes and hosts from PostgreSQL at each scrape.
type fleet struct {
	q   *db.Queries
	log *slog.Logger
}

func (f *fleet) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{sandboxesDesc, hostsDesc, hostVCPUs, hostVCPUsUsed, hostMem, hostMemUsed, hostDisk, hostSlots, hostSandboxes, hostHeartbeat} {
		ch <- d
	}
}

func (f *fleet) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hosts, err := f.q.ListHosts(ctx)
	if err != nil {
		f.log.Warn("metrics: list hosts", "err", err)
		ch <- prometheus.NewInvalidMetric(hostsDesc, err)
		return
	}
	// Every state of every runtime the hosts run is reported, at 0 where
	// no sandbox is in it, so that series do not vanish.
	live := map[[2]string]int64{}
	byStatus := map[string]int{}
	for _, h := range hosts {
		byStatus[h.Status]++
		if h.Runtime != "" {
			for _, st := range sandboxStates {
				live[[2]string{st, h.Runtime}] = 0
			}
		}
		l := []string{id.Format(id.Host, h.ID), h.Name}
		const mib = 1 << 20
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
		}
		gauge(hostVCPUs, float64(h.Cpus))
		gauge(hostVCPUsUsed, float64(h.CommittedVcpus))
		gauge(hostMem, float64(h.MemoryMib)*mib)
		gauge(hostMemUsed, float64(h.CommittedMemoryMib)*mib)
		gauge(hostDisk, float64(h.DiskFreeMib)*mib)
		gauge(hostSlots, float64(h.MaxSandboxes))
		gauge(hostSandboxes, float64(h.SandboxCount))
		if h.LastHeartbeatAt != nil {
			gauge(hostHeartbeat, float64(h.LastHeartbeatAt.UnixMilli())/1000)
		}
	}
	for _, s := range hostStatuses {
		ch <- prometheus.MustNewConstMetric(hostsDesc, prometheus.GaugeValue, float64(byStatus[s]), s)
	}
	rows, err := f.q.CountLiveSandboxes(ctx)
	if err != nil {
		f.log.Warn("metrics: count sandboxes", "err", err)
		ch <- prometheus.NewInvalidMetric(sandboxesDesc, err)
		return
	}
	for _, r := range rows {
		live[[2]string{r.State, r.Runtime}] = r.Sandboxes
	}
	for k, n := range live {
		ch <- prometheus.MustNewConstMetric(sandboxesDesc, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
}

var (
	poolAcquired     = prometheus.NewDesc(Prefix+"_db_pool_acquired_connections", "PostgreSQL connections in use.", nil, nil)
	poolIdle         = prometheus.NewDesc(Prefix+"_db_pool_idle_connections", "PostgreSQL connections idle in the pool.", nil, nil)
	poolConstructing = prometheus.NewDesc(Prefix+"_db_pool_constructing_connections", "PostgreSQL connections being opened.", nil, nil)
	poolTotal        = prometheus.NewDesc(Prefix+"_db_pool_connections", "PostgreSQL connections in the pool.", nil, nil)
	poolMax          = prometheus.NewDesc(Prefix+"_db_pool_max_connections", "Most connections the pool opens.", nil, nil)
	poolAcquires     = prometheus.NewDesc(Prefix+"_db_pool_acquires_total", "Connections taken from the pool.", nil, nil)
	poolEmpty        = prometheus.NewDesc(Prefix+"_db_pool_empty_acquires_total", "Acquires that had to wait for a connection.", nil, nil)
	poolCanceled     = prometheus.NewDesc(Prefix+"_db_pool_canceled_acquires_total", "Acquires canceled while waiting.", nil, nil)
	poolWait         = prometheus.NewDesc(Prefix+"_db_pool_acquire_wait_seconds_total", "Time spent acquiring connections.", nil, nil)
	poolOpened       = prometheus.NewDesc(Prefix+"_db_pool_opened_connections_total", "Connections the pool opened.", nil, nil)
)

// poolStats reports pgxpool's statistics.
type poolStats struct{ pool *pgxpool.Pool }

func (p *poolStats) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolAcquired, poolIdle, poolConstructing, poolTotal, poolMax, poolAcquires, poolEmpty, poolCanceled, poolWait, poolOpened} {
		ch <- d
	}
}

func (p *poolStats) Collect(ch chan<- prometheus.Metric) {
	s := p.pool.Stat()
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	c := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	g(poolAcquired, float64(s.AcquiredConns()))
	g(poolIdle, float64(s.IdleConns()))
	g(poolConstructing, float64(s.ConstructingConns()))
	g(poolTotal, float64(s.TotalConns()))
	g(poolMax, float64(s.MaxConns()))
	c(poolAcquires, float64(s.AcquireCount()))
	c(poolEmpty, float64(s.EmptyAcquireCount()))
	c(poolCanceled, float64(s.CanceledAcquireCount()))
	c(poolWait, s.AcquireDuration().Seconds())
	c(poolOpened, float64(s.NewConnsCount()))
}
