package sdk

import (
	"context"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Sandbox states as Wrenn reports them (E2B reports only running and
// paused).
const (
	StateCreating = "creating"
	StateRunning  = "running"
	StatePausing  = "pausing"
	StatePaused   = "paused"
	StateResuming = "resuming"
	StateStopping = "stopping"
	StateStopped  = "stopped"
	StateError    = "error"
)

// What a sandbox does when its timeout passes.
const (
	OnTimeoutKill  = "kill"
	OnTimeoutPause = "pause"
)

// SandboxInfo describes a sandbox as the API last reported it.
type SandboxInfo struct {
	ID          string            `json:"id"`
	Template    string            `json:"template"`
	SnapshotID  string            `json:"snapshot_id,omitempty"`
	State       string            `json:"state"`
	VCPUs       int               `json:"vcpus"`
	MemoryMiB   int               `json:"memory_mib"`
	DiskMiB     int               `json:"disk_mib"`
	OnTimeout   string            `json:"on_timeout"`
	Metadata    map[string]string `json:"metadata"`
	EnvdVersion string            `json:"envd_version"`
	HostID      string            `json:"host_id,omitempty"`
	Error       string            `json:"error,omitempty"`
	CreatedAt   time.Time         `json:"created_at"`
	// ExpiresAt is when the timeout acts (zero while paused or stopped).
	ExpiresAt time.Time `json:"expires_at"`
}

// Sandbox is a running sandbox: its commands, files and terminals. Its
// SandboxInfo is a copy taken when it was created or connected to; Info
// asks again.
type Sandbox struct {
	SandboxInfo
	// Commands runs and follows processes.
	Commands *Commands
	// Files reads and writes the sandbox's filesystem.
	Files *Files
	// PTY opens interactive terminals.
	PTY *PTYs

	client *Client
	envd   *envdConn
}

// CreateOptions describe a new sandbox. Template and Snapshot are
// exclusive; neither means the default template.
type CreateOptions struct {
	Template string
	// Snapshot starts the sandbox from a snapshot (its ID, or, against an
	// E2B endpoint, its ID or name).
	Snapshot string
	// VCPUs, MemoryMiB and DiskMiB override the template's (Wrenn only).
	VCPUs, MemoryMiB, DiskMiB int
	// Timeout is how long the sandbox lives without SetTimeout (0: the
	// server's default). Whole seconds, rounded up.
	Timeout time.Duration
	// OnTimeout is OnTimeoutKill (default) or OnTimeoutPause.
	OnTimeout string
	Metadata  map[string]string
	// Env is set for every process in the sandbox.
	Env map[string]string
	// AllowInternet, when set, turns the sandbox's outbound internet on or off.
	AllowInternet *bool
	// AutoResume resumes the paused sandbox when traffic arrives for it.
	AutoResume bool
}

func seconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}

// wrennSandbox is the /v1 API's sandbox.
type wrennSandbox struct {
	ID              string            `json:"id"`
	Template        string            `json:"template"`
	SnapshotID      *string           `json:"snapshot_id"`
	State           string            `json:"state"`
	VCPUs           int               `json:"vcpus"`
	MemoryMiB       int               `json:"memory_mib"`
	DiskMiB         int               `json:"disk_mib"`
	OnTimeout       string            `json:"on_timeout"`
	Metadata        map[string]string `json:"metadata"`
	EnvdVersion     string            `json:"envd_version"`
	HostID          *string           `json:"host_id"`
	Error           string            `json:"error"`
	CreatedAt       time.Time         `json:"created_at"`
	ExpiresAt       *time.Time        `json:"expires_at"`
	EnvdAccessToken string            `json:"envd_access_token"`
}

func (w wrennSandbox) info() SandboxInfo {
	i := SandboxInfo{ID: w.ID, Template: w.Template, State: w.State, VCPUs: w.VCPUs, MemoryMiB: w.MemoryMiB, DiskMiB: w.DiskMiB,
		OnTimeout: w.OnTimeout, Metadata: w.Metadata, EnvdVersion: w.EnvdVersion, Error: w.Error, CreatedAt: w.CreatedAt}
	if i.OnTimeout == "destroy" {
		i.OnTimeout = OnTimeoutKill
	}
	if w.SnapshotID != nil {
		i.SnapshotID = *w.SnapshotID
	}
	if w.HostID != nil {
		i.HostID = *w.HostID
	}
	if w.ExpiresAt != nil {
		i.ExpiresAt = *w.ExpiresAt
	}
	return i
}

// e2bSandbox is E2B's Sandbox and SandboxDetail.
type e2bSandbox struct {
	TemplateID      string            `json:"templateID"`
	SandboxID       string            `json:"sandboxID"`
	EnvdVersion     string            `json:"envdVersion"`
	EnvdAccessToken string            `json:"envdAccessToken"`
	Domain          *string           `json:"domain"`
	StartedAt       time.Time         `json:"startedAt"`
	EndAt           time.Time         `json:"endAt"`
	CPUCount        int               `json:"cpuCount"`
	MemoryMB        int               `json:"memoryMB"`
	DiskSizeMB      int               `json:"diskSizeMB"`
	State           string            `json:"state"`
	Metadata        map[string]string `json:"metadata"`
	Lifecycle       *struct {
		OnTimeout string `json:"onTimeout"`
	} `json:"lifecycle"`
}

func (e e2bSandbox) info() SandboxInfo {
	i := SandboxInfo{ID: e.SandboxID, Template: e.TemplateID, State: e.State, VCPUs: e.CPUCount, MemoryMiB: e.MemoryMB, DiskMiB: e.DiskSizeMB,
		Metadata: e.Metadata, EnvdVersion: e.EnvdVersion, CreatedAt: e.StartedAt, ExpiresAt: e.EndAt}
	if i.State == "" {
		i.State = StateRunning
	}
	if e.Lifecycle != nil {
		i.OnTimeout = e.Lifecycle.OnTimeout
	}
	return i
}

// Create starts a sandbox and returns it once it runs.
func (c *Client) Create(ctx context.Context, o CreateOptions) (*Sandbox, error) {
	const op = "create sandbox"
	if o.Template != "" && o.Snapshot != "" {
		return nil, &APIError{Op: op, Message: "give a Template or a Snapshot, not both", kind: ErrInvalid}
	}
	switch o.OnTimeout {
	case "", OnTimeoutKill, OnTimeoutPause:
	default:
		return nil, &APIError{Op: op, Message: fmt.Sprintf("OnTimeout %q: use %q or %q", o.OnTimeout, OnTimeoutKill, OnTimeoutPause), kind: ErrInvalid}
	}
	if c.proto == ProtocolE2B {
		return c.createE2B(ctx, o)
	}
	body := map[string]any{}
	set := func(k string, v any, ok bool) {
		if ok {
			body[k] = v
		}
	}
	set("template", o.Template, o.Template != "")
	set("snapshot_id", o.Snapshot, o.Snapshot != "")
	set("vcpus", o.VCPUs, o.VCPUs != 0)
	set("memory_mib", o.MemoryMiB, o.MemoryMiB != 0)
	set("disk_mib", o.DiskMiB, o.DiskMiB != 0)
	set("timeout_seconds", seconds(o.Timeout), o.Timeout != 0)
	set("on_timeout", map[string]string{OnTimeoutKill: "destroy", OnTimeoutPause: "pause"}[o.OnTimeout], o.OnTimeout != "")
	set("metadata", o.Metadata, len(o.Metadata) > 0)
	set("env_vars", o.Env, len(o.Env) > 0)
	set("allow_internet", o.AllowInternet, o.AllowInternet != nil)
	set("auto_resume", true, o.AutoResume)
	var w wrennSandbox
	if _, err := c.call(ctx, op, http.MethodPost, "/v1/sandboxes", nil, body, &w); err != nil {
		return nil, err
	}
	return c.sandbox(w.info(), w.EnvdAccessToken, "")
}

func (c *Client) createE2B(ctx context.Context, o CreateOptions) (*Sandbox, error) {
	const op = "create sandbox"
	switch {
	case o.VCPUs != 0:
		return nil, unsupported(op, "VCPUs: E2B's API takes resources from the template, not the create call")
	case o.MemoryMiB != 0:
		return nil, unsupported(op, "MemoryMiB: E2B's API takes resources from the template, not the create call")
	case o.DiskMiB != 0:
		return nil, unsupported(op, "DiskMiB: E2B's API takes resources from the template, not the create call")
	}
	tmpl := o.Template
	if o.Snapshot != "" {
		tmpl = o.Snapshot // E2B starts snapshots as templates
	}
	if tmpl == "" {
		tmpl = "base"
	}
	timeout := 300
	if o.Timeout != 0 {
		timeout = seconds(o.Timeout)
	}
	body := map[string]any{"templateID": tmpl, "timeout": timeout, "secure": true}
	if len(o.Metadata) > 0 {
		body["metadata"] = o.Metadata
	}
	if len(o.Env) > 0 {
		body["envVars"] = o.Env
	}
	if o.AllowInternet != nil {
		body["allow_internet_access"] = *o.AllowInternet
	}
	if o.OnTimeout != "" {
		body["autoPause"] = o.OnTimeout == OnTimeoutPause
	}
	if o.AutoResume {
		body["autoResume"] = map[string]bool{"enabled": true}
	}
	var e e2bSandbox
	if _, err := c.call(ctx, op, http.MethodPost, "/sandboxes", nil, body, &e); err != nil {
		return nil, err
	}
	info := e.info()
	info.Metadata = o.Metadata
	info.CreatedAt = time.Now()
	info.ExpiresAt = info.CreatedAt.Add(time.Duration(timeout) * time.Second)
	return c.sandbox(info, e.EnvdAccessToken, deref(e.Domain))
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// ConnectOptions tune Connect.
type ConnectOptions struct {
	// Timeout, when set, becomes the sandbox's new timeout (a resumed
	// sandbox gets it too). Against E2B's API the default is 300 s, as in
	// E2B's SDKs.
	Timeout time.Duration
}

// Connect returns a running sandbox by ID, resuming it if it is paused.
func (c *Client) Connect(ctx context.Context, id string, o ConnectOptions) (*Sandbox, error) {
	op := "connect to sandbox " + id
	if c.proto == ProtocolE2B {
		timeout := 300
		if o.Timeout != 0 {
			timeout = seconds(o.Timeout)
		}
		var e e2bSandbox
		if _, err := c.call(ctx, op, http.MethodPost, c.sandboxPath(id, "/connect"), nil, map[string]int{"timeout": timeout}, &e); err != nil {
			return nil, err
		}
		info, err := c.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		return c.sandbox(info, e.EnvdAccessToken, deref(e.Domain))
	}
	var w wrennSandbox
	if _, err := c.call(ctx, op, http.MethodGet, c.sandboxPath(id, ""), nil, nil, &w); err != nil {
		return nil, err
	}
	switch w.State {
	case StatePaused, StatePausing:
		body := map[string]int{}
		if o.Timeout != 0 {
			body["timeout_seconds"] = seconds(o.Timeout)
		}
		if _, err := c.call(ctx, op, http.MethodPost, c.sandboxPath(id, "/resume"), nil, body, &w); err != nil {
			return nil, err
		}
	case StateRunning:
		if o.Timeout != 0 {
			if _, err := c.call(ctx, op, http.MethodPost, c.sandboxPath(id, "/timeout"), nil, map[string]int{"timeout_seconds": seconds(o.Timeout)}, &w); err != nil {
				return nil, err
			}
		}
	default:
		return nil, &APIError{Op: op, Message: "the sandbox is " + w.State, kind: ErrConflict}
	}
	return c.sandbox(w.info(), w.EnvdAccessToken, "")
}

func (c *Client) sandbox(info SandboxInfo, token, domain string) (*Sandbox, error) {
	e, err := c.newEnvd(info.ID, token, domain, "")
	if err != nil {
		return nil, err
	}
	return newSandbox(c, info, e), nil
}

func newSandbox(c *Client, info SandboxInfo, e *envdConn) *Sandbox {
	sb := &Sandbox{SandboxInfo: info, client: c, envd: e}
	sb.Commands = &Commands{sb: sb}
	sb.Files = &Files{sb: sb}
	sb.PTY = &PTYs{sb: sb}
	return sb
}

// AsUser returns a view of the sandbox whose commands, files and
// terminals act as the sandbox user name instead of the default one.
func (s *Sandbox) AsUser(name string) *Sandbox {
	e := *s.envd
	e.user = name
	e.setClients()
	return newSandbox(s.client, s.SandboxInfo, &e)
}

// Info asks the API for the sandbox's current state.
func (s *Sandbox) Info(ctx context.Context) (SandboxInfo, error) { return s.client.Get(ctx, s.ID) }

// Kill destroys the sandbox.
func (s *Sandbox) Kill(ctx context.Context) error { return s.client.Kill(ctx, s.ID) }

// SetTimeout sets how long from now the sandbox lives.
func (s *Sandbox) SetTimeout(ctx context.Context, d time.Duration) error {
	return s.client.SetTimeout(ctx, s.ID, d)
}

// Pause saves the sandbox (memory included) and stops it; Connect or
// Resume brings it back.
func (s *Sandbox) Pause(ctx context.Context) error { return s.client.Pause(ctx, s.ID) }

// Metrics returns the sandbox's recent resource samples, oldest first.
func (s *Sandbox) Metrics(ctx context.Context) ([]Metrics, error) { return s.client.Metrics(ctx, s.ID) }

// CreateSnapshot freezes the sandbox into a snapshot new sandboxes can
// start from.
func (s *Sandbox) CreateSnapshot(ctx context.Context, name string) (Snapshot, error) {
	return s.client.CreateSnapshot(ctx, s.ID, name)
}

// sandboxPath is a sandbox's path in the client's API, with rest after it.
func (c *Client) sandboxPath(id, rest string) string {
	if c.proto == ProtocolE2B {
		return "/sandboxes/" + url.PathEscape(id) + rest
	}
	return "/v1/sandboxes/" + url.PathEscape(id) + rest
}

// Get returns a sandbox's details.
func (c *Client) Get(ctx context.Context, id string) (SandboxInfo, error) {
	op := "get sandbox " + id
	if c.proto == ProtocolE2B {
		var e e2bSandbox
		_, err := c.call(ctx, op, http.MethodGet, c.sandboxPath(id, ""), nil, nil, &e)
		return e.info(), err
	}
	var w wrennSandbox
	_, err := c.call(ctx, op, http.MethodGet, c.sandboxPath(id, ""), nil, nil, &w)
	return w.info(), err
}

// Kill destroys a sandbox.
func (c *Client) Kill(ctx context.Context, id string) error {
	_, err := c.call(ctx, "kill sandbox "+id, http.MethodDelete, c.sandboxPath(id, ""), nil, nil, nil)
	return err
}

// SetTimeout sets how long from now a sandbox lives.
func (c *Client) SetTimeout(ctx context.Context, id string, d time.Duration) error {
	op := "set the timeout of sandbox " + id
	if d <= 0 {
		return &APIError{Op: op, Message: "the timeout must be positive", kind: ErrInvalid}
	}
	if c.proto == ProtocolE2B {
		_, err := c.call(ctx, op, http.MethodPost, c.sandboxPath(id, "/timeout"), nil, map[string]int{"timeout": seconds(d)}, nil)
		return err
	}
	_, err := c.call(ctx, op, http.MethodPost, c.sandboxPath(id, "/timeout"), nil, map[string]int{"timeout_seconds": seconds(d)}, nil)
	return err
}

// Pause saves a sandbox (memory included) and stops it.
func (c *Client) Pause(ctx context.Context, id string) error {
	op := "pause sandbox " + id
	if c.proto == ProtocolE2B {
		_, err := c.call(ctx, op, http.MethodPost, c.sandboxPath(id, "/pause"), nil, map[string]bool{"memory": true}, nil)
		return err
	}
	_, err := c.call(ctx, op, http.MethodPost, c.sandboxPath(id, "/pause"), nil, nil, nil)
	return err
}

// Resume starts a paused sandbox again with its memory; timeout, when
// set, is its new timeout.
func (c *Client) Resume(ctx context.Context, id string, timeout time.Duration) (SandboxInfo, error) {
	op := "resume sandbox " + id
	if c.proto == ProtocolE2B {
		body := map[string]int{}
		if timeout != 0 {
			body["timeout"] = seconds(timeout)
		}
		if _, err := c.call(ctx, op, http.MethodPost, c.sandboxPath(id, "/resume"), nil, body, nil); err != nil {
			return SandboxInfo{}, err
		}
		return c.Get(ctx, id)
	}
	body := map[string]int{}
	if timeout != 0 {
		body["timeout_seconds"] = seconds(timeout)
	}
	var w wrennSandbox
	_, err := c.call(ctx, op, http.MethodPost, c.sandboxPath(id, "/resume"), nil, body, &w)
	return w.info(), err
}

// ListOptions filter List.
type ListOptions struct {
	// State is one state (Wrenn) or "running" / "paused" (E2B); empty
	// lists every sandbox that is not stopped.
	State    string
	Template string
	// Metadata keeps sandboxes whose metadata has all these pairs.
	Metadata map[string]string
	// PageSize is how many sandboxes one request fetches (default 100).
	PageSize int
}

// List iterates over the team's sandboxes, newest first, fetching pages
// as the loop goes; a failed page ends the loop with its error.
func (c *Client) List(ctx context.Context, o ListOptions) iter.Seq2[SandboxInfo, error] {
	return func(yield func(SandboxInfo, error) bool) {
		size := o.PageSize
		if size <= 0 || size > 100 {
			size = 100
		}
		q := url.Values{"limit": {strconv.Itoa(size)}}
		if o.Template != "" {
			q.Set("template", o.Template)
		}
		if o.State != "" {
			q.Set("state", o.State)
		}
		if c.proto == ProtocolE2B {
			if len(o.Metadata) > 0 {
				m := url.Values{}
				for k, v := range o.Metadata {
					m.Set(url.QueryEscape(k), url.QueryEscape(v))
				}
				q.Set("metadata", m.Encode())
			}
			for {
				var page []e2bSandbox
				h, err := c.call(ctx, "list sandboxes", http.MethodGet, "/v2/sandboxes", q, nil, &page)
				if err != nil {
					yield(SandboxInfo{}, err)
					return
				}
				for _, e := range page {
					if !yield(e.info(), nil) {
						return
					}
				}
				next := h.Get("X-Next-Token")
				if next == "" || len(page) == 0 {
					return
				}
				q.Set("nextToken", next)
			}
		}
		for k, v := range o.Metadata {
			q.Add("metadata", k+"="+v)
		}
		for offset := 0; ; offset += size {
			q.Set("offset", strconv.Itoa(offset))
			var page []wrennSandbox
			if _, err := c.call(ctx, "list sandboxes", http.MethodGet, "/v1/sandboxes", q, nil, &page); err != nil {
				yield(SandboxInfo{}, err)
				return
			}
			for _, w := range page {
				if !yield(w.info(), nil) {
					return
				}
			}
			if len(page) < size {
				return
			}
		}
	}
}

// Metrics is one resource sample of a sandbox.
type Metrics struct {
	Timestamp  time.Time `json:"timestamp"`
	CPUCount   int       `json:"cpu_count"`
	CPUUsedPct float64   `json:"cpu_used_pct"`
	MemUsed    uint64    `json:"mem_used_bytes"`
	MemTotal   uint64    `json:"mem_total_bytes"`
	DiskUsed   uint64    `json:"disk_used_bytes"`
	DiskTotal  uint64    `json:"disk_total_bytes"`
}

// Metrics returns a running sandbox's recent resource samples, oldest
// first (the last is the latest).
func (c *Client) Metrics(ctx context.Context, id string) ([]Metrics, error) {
	op := "metrics of sandbox " + id
	if c.proto == ProtocolE2B {
		var ms []struct {
			Timestamp  time.Time `json:"timestamp"`
			CPUUsedPct float64   `json:"cpuUsedPct"`
			CPUCount   int       `json:"cpuCount"`
			MemUsed    uint64    `json:"memUsed"`
			MemTotal   uint64    `json:"memTotal"`
			DiskUsed   uint64    `json:"diskUsed"`
			DiskTotal  uint64    `json:"diskTotal"`
		}
		if _, err := c.call(ctx, op, http.MethodGet, c.sandboxPath(id, "/metrics"), nil, nil, &ms); err != nil {
			return nil, err
		}
		out := make([]Metrics, len(ms))
		for i, m := range ms {
			out[i] = Metrics{m.Timestamp, m.CPUCount, m.CPUUsedPct, m.MemUsed, m.MemTotal, m.DiskUsed, m.DiskTotal}
		}
		return out, nil
	}
	type sample struct {
		TimestampUnixMs int64   `json:"timestamp_unix_ms"`
		CPUUsedPct      float64 `json:"cpu_used_pct"`
		CPUCount        int     `json:"cpu_count"`
		MemUsedBytes    uint64  `json:"mem_used_bytes"`
		MemTotalBytes   uint64  `json:"mem_total_bytes"`
		DiskUsedBytes   uint64  `json:"disk_used_bytes"`
		DiskTotalBytes  uint64  `json:"disk_total_bytes"`
	}
	var r struct {
		Latest sample   `json:"latest"`
		Recent []sample `json:"recent"`
	}
	if _, err := c.call(ctx, op, http.MethodGet, c.sandboxPath(id, "/metrics"), nil, nil, &r); err != nil {
		return nil, err
	}
	all := r.Recent
	if n := len(all); n == 0 || all[n-1].TimestampUnixMs != r.Latest.TimestampUnixMs {
		all = append(all, r.Latest)
	}
	out := make([]Metrics, len(all))
	for i, m := range all {
		out[i] = Metrics{time.UnixMilli(m.TimestampUnixMs).UTC(), m.CPUCount, m.CPUUsedPct, m.MemUsedBytes, m.MemTotalBytes, m.DiskUsedBytes, m.DiskTotalBytes}
	}
	return out, nil
}

// Snapshot is a sandbox frozen with its memory; sandboxes start from it
// with CreateOptions.Snapshot.
type Snapshot struct {
	ID              string    `json:"id"`
	Name            string    `json:"name"`
	SourceSandboxID string    `json:"source_sandbox_id,omitempty"`
	Template        string    `json:"template,omitempty"`
	SizeBytes       int64     `json:"size_bytes,omitempty"`
	Status          string    `json:"status,omitempty"`
	CreatedAt       time.Time `json:"created_at,omitzero"`
}

type wrennSnapshot struct {
	ID              string    `json:"id"`
	Name            string    `json:"name"`
	SourceSandboxID *string   `json:"source_sandbox_id"`
	Template        string    `json:"template"`
	SizeBytes       int64     `json:"size_bytes"`
	Status          string    `json:"status"`
	CreatedAt       time.Time `json:"created_at"`
}

func (w wrennSnapshot) snapshot() Snapshot {
	return Snapshot{ID: w.ID, Name: w.Name, SourceSandboxID: deref(w.SourceSandboxID), Template: w.Template, SizeBytes: w.SizeBytes, Status: w.Status, CreatedAt: w.CreatedAt}
}

type e2bSnapshot struct {
	SnapshotID string   `json:"snapshotID"`
	Names      []string `json:"names"`
}

func (e e2bSnapshot) snapshot() Snapshot {
	return Snapshot{ID: e.SnapshotID, Name: strings.Join(e.Names, ",")}
}

// CreateSnapshot freezes a sandbox into a snapshot named name (a running
// sandbox is paused for the copy and resumed).
func (c *Client) CreateSnapshot(ctx context.Context, sandboxID, name string) (Snapshot, error) {
	op := "snapshot sandbox " + sandboxID
	if c.proto == ProtocolE2B {
		var e e2bSnapshot
		_, err := c.call(ctx, op, http.MethodPost, "/sandboxes/"+url.PathEscape(sandboxID)+"/snapshots", nil, map[string]string{"name": name}, &e)
		s := e.snapshot()
		s.SourceSandboxID = sandboxID
		return s, err
	}
	var w wrennSnapshot
	_, err := c.call(ctx, op, http.MethodPost, "/v1/snapshots", nil, map[string]string{"sandbox_id": sandboxID, "name": name}, &w)
	return w.snapshot(), err
}

// ListSnapshots returns the team's snapshots.
func (c *Client) ListSnapshots(ctx context.Context) ([]Snapshot, error) {
	if c.proto == ProtocolE2B {
		var es []e2bSnapshot
		_, err := c.call(ctx, "list snapshots", http.MethodGet, "/snapshots", nil, nil, &es)
		out := make([]Snapshot, len(es))
		for i, e := range es {
			out[i] = e.snapshot()
		}
		return out, err
	}
	var ws []wrennSnapshot
	_, err := c.call(ctx, "list snapshots", http.MethodGet, "/v1/snapshots", nil, nil, &ws)
	out := make([]Snapshot, len(ws))
	for i, w := range ws {
		out[i] = w.snapshot()
	}
	return out, err
}

// DeleteSnapshot deletes a snapshot no sandbox uses.
func (c *Client) DeleteSnapshot(ctx context.Context, id string) error {
	op := "delete snapshot " + id
	path := "/v1/snapshots/"
	if c.proto == ProtocolE2B {
		path = "/templates/"
	}
	_, err := c.call(ctx, op, http.MethodDelete, path+url.PathEscape(id), nil, nil, nil)
	return err
}
