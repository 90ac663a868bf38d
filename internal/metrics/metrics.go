// Package metrics is what Wrenn's two processes share for Prometheus and
// health checks: a registry of each process's own (never the library's
// global default one), request instrumentation labelled by route pattern,
// lifecycle-operation counters and histograms, sandbox-proxy traffic,
// /healthz and /readyz, and the metrics listener that serves them.
//
// /metrics is served only on a listener of its own (metrics_listen), never
// on the API or agent port: those face users and other networks, while
// the metrics address is meant for one Prometheus server and is bound to
// loopback or a private interface. /healthz and /readyz are public on
// every listener: they say only whether the process is up and ready.
package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every Wrenn metric.
const Namespace = "wrenn"

// NewRegistry is a process's registry, with the Go runtime's and the
// process's own collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// LatencyBuckets suit API calls (milliseconds) up to lifecycle operations
// that boot or snapshot a VM under emulation (minutes).
var LatencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// Ops counts sandbox lifecycle operations (create, resume, pause,
// destroy, …), their latency, and their failures by reason.
type Ops struct {
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	failures *prometheus.CounterVec
}

// NewOps registers <prefix>_sandbox_operations_total{operation,result},
// <prefix>_sandbox_operation_duration_seconds{operation} and
// <prefix>_sandbox_operation_failures_total{operation,reason}.
func NewOps(reg prometheus.Registerer, prefix string) *Ops {
	o := &Ops{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: prefix + "_sandbox_operations_total",
			Help: "Sandbox lifecycle operations by operation and result (ok or error)."}, []string{"operation", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: prefix + "_sandbox_operation_duration_seconds",
			Help: "Latency of sandbox lifecycle operations.", Buckets: LatencyBuckets}, []string{"operation"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: prefix + "_sandbox_operation_failures_total",
			Help: "Failed sandbox lifecycle operations by operation and reason."}, []string{"operation", "reason"}),
	}
	reg.MustRegister(o.total, o.duration, o.failures)
	return o
}

// Observe records one operation; reason is empty when it succeeded.
func (o *Ops) Observe(op string, took time.Duration, reason string) {
	if o == nil {
		return
	}
	o.duration.WithLabelValues(op).Observe(took.Seconds())
	if reason == "" {
		o.total.WithLabelValues(op, "ok").Inc()
		return
	}
	o.total.WithLabelValues(op, "error").Inc()
	o.failures.WithLabelValues(op, reason).Inc()
}

// Check is a readiness check: nil when ready, else why not, in words an
// unauthenticated caller may read.
type Check func(ctx context.Context) error

// Healthz answers 200 while the process serves at all.
func Healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeStatus(w, http.StatusOK, "ok", "")
	})
}

// Readyz answers 200 when ready passes within two seconds, else 503 with
// its reason.
func Readyz(ready Check, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			if log != nil {
				log.Warn("not ready", "reason", err)
			}
			writeStatus(w, http.StatusServiceUnavailable, "unready", err.Error())
			return
		}
		writeStatus(w, http.StatusOK, "ready", "")
	})
}

func writeStatus(w http.ResponseWriter, code int, status, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	body := map[string]string{"status": status}
	if reason != "" {
		body["reason"] = reason
	}
	_ = json.NewEncoder(w).Encode(body)
}

// Handler serves reg's metrics in the Prometheus text format (or
// OpenMetrics when asked for).
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true, ErrorHandling: promhttp.ContinueOnError})
}

// Server is the metrics listener: /metrics, /healthz and /readyz.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Serve prepares the metrics listener on ln, or on addr when ln is nil.
func Serve(ln net.Listener, addr string, reg *prometheus.Registry, ready Check, log *slog.Logger) (*Server, error) {
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("metrics: listen on %s (metrics_listen): %w", addr, err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", Handler(reg))
	mux.Handle("GET /healthz", Healthz())
	mux.Handle("GET /readyz", Readyz(ready, log))
	return &Server{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}}, nil
}

// Addr is the address the listener is bound to.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
