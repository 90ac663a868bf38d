package cpapi

import (
	"git.omukk.dev/wrenn/sandbox/internal/egress"
	"net/http"
	"strings"

	"github.com/google/uuid"

	"git.omukk.dev/wrenn/sandbox/pkg/id"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

type createSandboxBody struct {
	Template       string            `json:"template,omitempty"`
	SnapshotID     string            `json:"snapshot_id,omitempty"`
	VCPUs          int32             `json:"vcpus,omitempty"`
	MemoryMiB      int32             `json:"memory_mib,omitempty"`
	DiskMiB        int32             `json:"disk_mib,omitempty"`
	TimeoutSeconds int32             `json:"timeout_seconds,omitempty"`
	OnTimeout      string            `json:"on_timeout,omitempty"`
	AllowInternet  *bool             `json:"allow_internet,omitempty"`
	AllowPublic    *bool             `json:"allow_public_traffic,omitempty"`
	AutoResume     bool              `json:"auto_resume,omitempty"`
	Metadata       map[string]string `json:"metadata,omitempty"`
	EnvVars        map[string]string `json:"env_vars,omitempty"`
	Network        *networkPolicy    `json:"network,omitempty"`
}

func (a *API) createSandbox(w http.ResponseWriter, r *http.Request) {
	var b createSandboxBody
	if !a.decodeOptional(w, r, &b) {
		return
	}
	in := service.CreateSandboxInput{
		Template: b.Template, VCPUs: b.VCPUs, MemoryMiB: b.MemoryMiB, DiskMiB: b.DiskMiB, TimeoutSeconds: b.TimeoutSeconds,
		OnTimeout: b.OnTimeout, AllowInternet: b.AllowInternet, AllowPublicTraffic: b.AllowPublic, AutoResume: b.AutoResume,
		Metadata: b.Metadata, EnvVars: b.EnvVars, Network: b.Network.policy(), NetworkFields: &egress.V1Fields,
	}
	if b.SnapshotID != "" {
		if b.Template != "" {
			writeError(w, http.StatusBadRequest, "invalid_argument", "give a template or a snapshot_id, not both")
			return
		}
		snap, err := id.Parse(id.Snapshot, b.SnapshotID)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_id", err.Error())
			return
		}
		in.SnapshotID = &snap
	}
	setAudit(r.Context(), "sandbox.create", "sandbox", "")
	sb, err := a.svc.CreateSandbox(r.Context(), caller(r), in)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	setAudit(r.Context(), "sandbox.create", "sandbox", id.Format(id.Sandbox, sb.ID))
	writeJSON(w, http.StatusCreated, viewSandbox(sb))
}

func (a *API) listSandboxes(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, offset, ok := paging(w, r)
	if !ok {
		return
	}
	f := service.SandboxFilter{State: q.Get("state"), Template: q.Get("template"), IncludeStopped: q.Get("include_stopped") == "true", Limit: limit, Offset: offset}
	for _, kv := range q["metadata"] {
		k, v, found := strings.Cut(kv, "=")
		if !found || k == "" {
			writeError(w, http.StatusBadRequest, "invalid_argument", "metadata filters are key=value")
			return
		}
		if f.Metadata == nil {
			f.Metadata = map[string]string{}
		}
		f.Metadata[k] = v
	}
	switch f.State {
	case "", "creating", "running", "pausing", "paused", "resuming", "stopping", "stopped", "error":
	default:
		writeError(w, http.StatusBadRequest, "invalid_argument", "unknown state "+f.State)
		return
	}
	sbs, err := a.svc.ListSandboxes(r.Context(), caller(r), f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mapSlice(sbs, viewSandbox))
}

// sandboxParam parses {sandboxID} and names it in the audit entry.
func sandboxParam(w http.ResponseWriter, r *http.Request, action string) (uuid.UUID, bool) {
	sid, ok := pathID(w, r, "sandboxID", id.Sandbox)
	if ok && action != "" {
		setAudit(r.Context(), action, "sandbox", id.Format(id.Sandbox, sid))
	}
	return sid, ok
}

func (a *API) getSandbox(w http.ResponseWriter, r *http.Request) {
	sid, ok := sandboxParam(w, r, "")
	if !ok {
		return
	}
	sb, err := a.svc.GetSandbox(r.Context(), caller(r), sid)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewSandbox(sb))
}

func (a *API) destroySandbox(w http.ResponseWriter, r *http.Request) {
	sid, ok := sandboxParam(w, r, "sandbox.destroy")
	if !ok {
		return
	}
	if err := a.svc.DestroySandbox(r.Context(), caller(r), sid); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type timeoutBody struct {
	TimeoutSeconds int32 `json:"timeout_seconds"`
}

func (a *API) setTimeout(w http.ResponseWriter, r *http.Request) {
	sid, ok := sandboxParam(w, r, "sandbox.set_timeout")
	if !ok {
		return
	}
	var b timeoutBody
	if !a.decode(w, r, &b) {
		return
	}
	sb, err := a.svc.SetTimeout(r.Context(), caller(r), sid, b.TimeoutSeconds)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewSandbox(sb))
}

func (a *API) pauseSandbox(w http.ResponseWriter, r *http.Request) {
	sid, ok := sandboxParam(w, r, "sandbox.pause")
	if !ok {
		return
	}
	sb, err := a.svc.PauseSandbox(r.Context(), caller(r), sid)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewSandbox(sb))
}

func (a *API) resumeSandbox(w http.ResponseWriter, r *http.Request) {
	sid, ok := sandboxParam(w, r, "sandbox.resume")
	if !ok {
		return
	}
	var b timeoutBody
	if !a.decodeOptional(w, r, &b) {
		return
	}
	sb, err := a.svc.ResumeSandbox(r.Context(), caller(r), sid, b.TimeoutSeconds)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewSandbox(sb))
}

type execBody struct {
	Cmd            string            `json:"cmd"`
	Args           []string          `json:"args,omitempty"`
	Envs           map[string]string `json:"envs,omitempty"`
	Cwd            string            `json:"cwd,omitempty"`
	User           string            `json:"user,omitempty"`
	TimeoutSeconds uint32            `json:"timeout_seconds,omitempty"`
	Stdin          string            `json:"stdin,omitempty" wiretext:"binary"`
}

type execView struct {
	PID      uint32 `json:"pid"`
	ExitCode int32  `json:"exit_code"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	Error    string `json:"error,omitempty"`
	// StdoutTruncated and StderrTruncated say a stream was longer than
	// the installation's bound (WRENN_EXEC_MAX_OUTPUT_BYTES) and only its
	// start is here; the exec WebSocket streams output of any size.
	StdoutTruncated bool `json:"stdout_truncated"`
	StderrTruncated bool `json:"stderr_truncated"`
}

func (a *API) exec(w http.ResponseWriter, r *http.Request) {
	var b execBody
	if !a.decode(w, r, &b) {
		return
	}
	g, ok := a.guest(w, r, "sandbox.exec")
	if !ok {
		return
	}
	res, err := g.Exec(r.Context(), service.ExecInput{
		Cmd: b.Cmd, Args: b.Args, Envs: b.Envs, Cwd: b.Cwd, User: b.User, TimeoutSeconds: b.TimeoutSeconds, Stdin: []byte(b.Stdin),
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, execView{PID: res.PID, ExitCode: res.ExitCode, Stdout: string(res.Stdout), Stderr: string(res.Stderr), Error: res.Error,
		StdoutTruncated: res.StdoutTruncated, StderrTruncated: res.StderrTruncated})
}

// guest resolves {sandboxID} to a running sandbox, for calls into it.
func (a *API) guest(w http.ResponseWriter, r *http.Request, action string) (*service.Guest, bool) {
	sid, ok := sandboxParam(w, r, action)
	if !ok {
		return nil, false
	}
	g, err := a.svc.Guest(r.Context(), caller(r), sid)
	if err != nil {
		a.fail(w, r, err)
		return nil, false
	}
	return g, true
}

type processView struct {
	PID  uint32   `json:"pid"`
	Tag  string   `json:"tag,omitempty"`
	Cmd  string   `json:"cmd"`
	Args []string `json:"args"`
	Cwd  string   `json:"cwd,omitempty"`
}

func (a *API) listProcesses(w http.ResponseWriter, r *http.Request) {
	g, ok := a.guest(w, r, "")
	if !ok {
		return
	}
	procs, err := g.Processes(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mapSlice(procs, func(p service.Process) processView {
		return processView{PID: p.PID, Tag: p.Tag, Cmd: p.Cmd, Args: append([]string{}, p.Args...), Cwd: p.Cwd}
	}))
}

type metricView struct {
	TimestampUnixMs int64   `json:"timestamp_unix_ms"`
	CPUUsedPct      float32 `json:"cpu_used_pct"`
	CPUCount        uint32  `json:"cpu_count"`
	MemUsedBytes    uint64  `json:"mem_used_bytes"`
	MemTotalBytes   uint64  `json:"mem_total_bytes"`
	DiskUsedBytes   uint64  `json:"disk_used_bytes"`
	DiskTotalBytes  uint64  `json:"disk_total_bytes"`
	HostRSSBytes    uint64  `json:"host_rss_bytes"`
	MemCacheBytes   uint64  `json:"mem_cache_bytes"`
}

func viewMetric(m service.Metric) metricView {
	v := metricView{CPUUsedPct: m.CPUUsedPct, CPUCount: m.CPUCount, MemUsedBytes: m.MemUsed, MemTotalBytes: m.MemTotal,
		DiskUsedBytes: m.DiskUsed, DiskTotalBytes: m.DiskTotal, HostRSSBytes: m.HostRSS, MemCacheBytes: m.MemCache}
	if !m.At.IsZero() {
		v.TimestampUnixMs = m.At.UnixMilli()
	}
	return v
}

func (a *API) metrics(w http.ResponseWriter, r *http.Request) {
	g, ok := a.guest(w, r, "")
	if !ok {
		return
	}
	recent, err := g.Metrics(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var latest service.Metric
	if len(recent) > 0 {
		latest = recent[len(recent)-1]
	}
	writeJSON(w, http.StatusOK, map[string]any{"latest": viewMetric(latest), "recent": mapSlice(recent, viewMetric)})
}

type createSnapshotBody struct {
	SandboxID string `json:"sandbox_id"`
	Name      string `json:"name"`
}

func (a *API) createSnapshot(w http.ResponseWriter, r *http.Request) {
	var b createSnapshotBody
	if !a.decode(w, r, &b) {
		return
	}
	sid, err := id.Parse(id.Sandbox, b.SandboxID)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_id", err.Error())
		return
	}
	setAudit(r.Context(), "snapshot.create", "sandbox", b.SandboxID)
	snap, err := a.svc.CreateSnapshot(r.Context(), caller(r), sid, b.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	setAudit(r.Context(), "snapshot.create", "snapshot", id.Format(id.Snapshot, snap.ID))
	writeJSON(w, http.StatusCreated, viewSnapshot(snap))
}

func (a *API) listSnapshots(w http.ResponseWriter, r *http.Request) {
	snaps, err := a.svc.ListSnapshots(r.Context(), caller(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mapSlice(snaps, viewSnapshot))
}

func (a *API) getSnapshot(w http.ResponseWriter, r *http.Request) {
	snap, ok := pathID(w, r, "snapshotID", id.Snapshot)
	if !ok {
		return
	}
	s, err := a.svc.GetSnapshot(r.Context(), caller(r), snap)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewSnapshot(s))
}

func (a *API) deleteSnapshot(w http.ResponseWriter, r *http.Request) {
	snap, ok := pathID(w, r, "snapshotID", id.Snapshot)
	if !ok {
		return
	}
	setAudit(r.Context(), "snapshot.delete", "snapshot", id.Format(id.Snapshot, snap))
	if err := a.svc.DeleteSnapshot(r.Context(), caller(r), snap); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
