package e2bcompat

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"git.omukk.dev/wrenn/sandbox/pkg/id"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

// metric is E2B's SandboxMetric.
type metric struct {
	Timestamp     time.Time `json:"timestamp"`
	TimestampUnix int64     `json:"timestampUnix"`
	CPUUsedPct    float32   `json:"cpuUsedPct"`
	CPUCount      uint32    `json:"cpuCount"`
	MemUsed       uint64    `json:"memUsed"`
	MemTotal      uint64    `json:"memTotal"`
	MemCache      uint64    `json:"memCache"`
	DiskUsed      uint64    `json:"diskUsed"`
	DiskTotal     uint64    `json:"diskTotal"`
}

func metricOf(m service.Metric) metric {
	return metric{Timestamp: m.At, TimestampUnix: m.At.Unix(), CPUUsedPct: m.CPUUsedPct, CPUCount: m.CPUCount,
		MemUsed: m.MemUsed, MemTotal: m.MemTotal, MemCache: m.MemCache, DiskUsed: m.DiskUsed, DiskTotal: m.DiskTotal}
}

// samples are a sandbox's recent resource samples, oldest first.
func (h *handler) samples(r *http.Request, sid uuid.UUID) ([]service.Metric, error) {
	g, err := h.svc.Guest(r.Context(), caller(r), sid)
	if err != nil {
		return nil, err
	}
	return g.Metrics(r.Context())
}

// metrics is GET /sandboxes/{id}/metrics: the samples of a running
// sandbox its host keeps (the last few minutes), oldest first, those from
// start to end (Unix seconds, both inclusive) when given.
func (h *handler) metrics(w http.ResponseWriter, r *http.Request) {
	sid, ok := sandboxParam(w, r, "")
	if !ok {
		return
	}
	q := r.URL.Query()
	start, err1 := unixParam(q.Get("start"), "start")
	end, err2 := unixParam(q.Get("end"), "end")
	if err := errors.Join(err1, err2); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if start != nil && end != nil && *start > *end {
		writeError(w, http.StatusBadRequest, "start is after end")
		return
	}
	samples, err := h.samples(r, sid)
	if err != nil {
		h.fail(w, notRunningIsNotFound(err))
		return
	}
	out := make([]metric, 0, len(samples))
	for _, m := range samples {
		v := metricOf(m)
		if start != nil && v.TimestampUnix < *start || end != nil && v.TimestampUnix > *end {
			continue
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, out)
}

func unixParam(v, name string) (*int64, error) {
	if v == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("%s must be a Unix time in seconds", name)
	}
	return &n, nil
}

// maxMetricsSandboxes bounds one GET /sandboxes/metrics.
const maxMetricsSandboxes = 100

// manyMetrics is GET /sandboxes/metrics?sandbox_ids=a,b: E2B's
// SandboxesWithMetrics, each running sandbox of the caller's team among
// those named with its latest sample. A sandbox that is not running, or
// not the caller's, is left out.
func (h *handler) manyMetrics(w http.ResponseWriter, r *http.Request) {
	var ids []string
	for _, v := range r.URL.Query()["sandbox_ids"] {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				ids = append(ids, s)
			}
		}
	}
	if len(ids) == 0 || len(ids) > maxMetricsSandboxes {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("sandbox_ids must name 1 to %d sandboxes, comma-separated", maxMetricsSandboxes))
		return
	}
	out := map[string]metric{}
	for _, raw := range ids {
		sid, err := id.Parse(id.Sandbox, raw)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("sandbox_ids: %q is not a sandbox ID", raw))
			return
		}
		samples, err := h.samples(r, sid)
		switch {
		case errors.Is(err, service.ErrNotFound), errors.Is(err, service.ErrConflict):
			continue
		case err != nil:
			h.fail(w, err)
			return
		}
		if len(samples) > 0 {
			out[raw] = metricOf(samples[len(samples)-1])
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"sandboxes": out})
}
