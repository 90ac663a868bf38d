package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"git.omukk.dev/wrenn/sandbox/internal/egress"
	"maps"
	"regexp"
	"slices"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"git.omukk.dev/wrenn/sandbox/internal/cpauth"
	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/fault"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
	"git.omukk.dev/wrenn/sandbox/pkg/limits"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

// Limits on what a sandbox may ask for (package limits is their home).
const (
	MaxVCPUs          = limits.MaxVCPUs
	MinMemoryMiB      = limits.MinMemoryMiB
	MaxMemoryMiB      = limits.MaxMemoryMiB
	MaxDiskMiB        = limits.MaxDiskMiB
	MaxTimeoutSeconds = int32(limits.MaxTimeout / time.Second)
	maxMetadata       = 64
	maxEnvVars        = 256
)

// DefaultTemplate is the image a sandbox gets when it names none.
const DefaultTemplate = "minimal"

// agentCallTimeout bounds one lifecycle call to an agent; a VM boot under
// TCG takes seconds, a clone well under one.
const agentCallTimeout = 5 * time.Minute

var templateName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// CreateSandboxInput is a request for a new sandbox; zero values take
// defaults.
type CreateSandboxInput struct {
	Template   string
	SnapshotID *uuid.UUID
	// snapshotTeam owns SnapshotID when another team does: the build of
	// a platform template (set by fromTemplate and template builds only,
	// never from a request).
	snapshotTeam *uuid.UUID
	// onHost places the sandbox on that host, whose image Template may
	// be newer than its last heartbeat (a template build from an OCI
	// image; never from a request).
	onHost         *uuid.UUID
	VCPUs          int32
	MemoryMiB      int32
	DiskMiB        int32
	TimeoutSeconds int32
	// OnTimeout is "destroy" (default) or "pause".
	OnTimeout     string
	AllowInternet *bool
	// AllowPublicTraffic (default true) lets anyone reach the sandbox's
	// ports other than envd's through the proxy; otherwise a request
	// needs the sandbox's traffic token.
	AllowPublicTraffic *bool
	// AutoResume resumes a paused sandbox when the proxy gets a request
	// for it.
	AutoResume bool
	Metadata   map[string]string
	EnvVars    map[string]string
	// Network is the sandbox's own egress policy (nil: none);
	// NetworkFields names its lists in errors (default: E2B's names).
	Network       *egress.Policy
	NetworkFields *egress.Fields
}

// Sandbox is a sandbox as the API shows it.
type Sandbox struct {
	db.Sandbox
	// HostStatus is the status of the host it runs on ("unreachable"
	// means its state is unknown until the host is back).
	HostStatus string
	// EnvdAccessToken and TrafficAccessToken are set where the API hands
	// them to the team.
	EnvdAccessToken    string
	TrafficAccessToken string
}

// validate fills in defaults and checks the request; maxDiskMiB is the
// installation's bound on one sandbox's disk (config.MaxDiskMiB).
func (in *CreateSandboxInput) validate(maxDiskMiB int) error {
	if in.VCPUs == 0 {
		in.VCPUs = limits.DefaultVCPUs
	}
	if in.MemoryMiB == 0 {
		in.MemoryMiB = limits.DefaultMemoryMiB
	}
	if in.TimeoutSeconds == 0 {
		in.TimeoutSeconds = int32(limits.DefaultTimeout / time.Second)
	}
	if in.OnTimeout == "" {
		in.OnTimeout = "destroy"
	}
	switch {
	case in.VCPUs < 1 || in.VCPUs > MaxVCPUs:
		return errf(ErrInvalid, "vcpus must be 1 to %d", MaxVCPUs)
	case in.MemoryMiB < MinMemoryMiB || in.MemoryMiB > MaxMemoryMiB:
		return errf(ErrInvalid, "memory_mib must be %d to %d", MinMemoryMiB, MaxMemoryMiB)
	case in.DiskMiB < 0 || int(in.DiskMiB) > maxDiskMiB:
		return errf(ErrInvalid, "disk_mib must be 0 (template default) to %d on this installation", maxDiskMiB)
	case in.TimeoutSeconds < 1 || in.TimeoutSeconds > MaxTimeoutSeconds:
		return errf(ErrInvalid, "timeout_seconds must be 1 to %d", MaxTimeoutSeconds)
	case in.OnTimeout != "destroy" && in.OnTimeout != "pause":
		return errf(ErrInvalid, "on_timeout must be destroy or pause")
	case len(in.Metadata) > maxMetadata:
		return errf(ErrInvalid, "at most %d metadata entries", maxMetadata)
	case len(in.EnvVars) > maxEnvVars:
		return errf(ErrInvalid, "at most %d env vars", maxEnvVars)
	}
	fields := egress.E2BFields
	if in.NetworkFields != nil {
		fields = *in.NetworkFields
	}
	if err := checkNetwork(in.Network, fields); err != nil {
		return err
	}
	for k, v := range in.Metadata {
		if k == "" || len(k) > 128 || len(v) > 1024 {
			return errf(ErrInvalid, "metadata keys must be 1-128 bytes and values at most 1024")
		}
	}
	for k := range in.EnvVars {
		if k == "" || len(k) > 256 {
			return errf(ErrInvalid, "env var names must be 1-256 bytes")
		}
	}
	if in.SnapshotID == nil {
		if in.Template == "" {
			in.Template = DefaultTemplate
		}
		if !templateName.MatchString(in.Template) {
			return errf(ErrInvalid, "template %q: names are lowercase letters, digits, '.', '_' or '-'", in.Template)
		}
	}
	return nil
}

// agentError names the operation and host in an agent's error, keeping
// its kind where that is the caller's business (envd refusing the
// sandbox user a path is Forbidden, a full sandbox disk NoSpace). What
// fails inside the host (its internal errors, or its refusing the control
// plane's own credentials) is Upstream: the host failed, not the caller.
func agentError(h db.Host, op string, err error) error {
	host := id.Format(id.Host, h.ID)
	switch k := fault.KindOf(err); k {
	case fault.Invalid, fault.Forbidden, fault.NotFound, fault.Exists, fault.Conflict, fault.NoCapacity, fault.Unsupported, fault.NoSpace:
		return &fault.Error{Kind: k, Msg: fmt.Sprintf("%s: %s", op, err), Err: err}
	case fault.Unavailable:
		return &fault.Error{Kind: k, Msg: fmt.Sprintf("%s: host %s did not answer: %s", op, host, err), Err: err}
	case fault.Timeout:
		return &fault.Error{Kind: k, Msg: fmt.Sprintf("%s on host %s timed out: %s", op, host, err), Err: err}
	}
	return fault.Errorf(fault.Upstream, "%s on host %s: %s", op, host, err)
}

// detach keeps an agent call going if the client goes away, so that the
// database records how it ended.
func detach(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), agentCallTimeout)
}

// createSandbox places a sandbox on a host and starts it. The row exists
// from the start (state creating) so that a crash mid-create is visible
// to the reconciler; it ends running, or error with the reason.
func (s *Service) createSandbox(ctx context.Context, c auth.Caller, in CreateSandboxInput) (Sandbox, error) {
	if err := requireTeam(c); err != nil {
		return Sandbox{}, err
	}
	if err := s.fromTemplate(ctx, c, &in); err != nil {
		return Sandbox{}, err
	}
	if err := in.validate(s.Config.MaxDiskMiB); err != nil {
		return Sandbox{}, err
	}
	if in.SnapshotID == nil && in.onHost == nil && hostOnlyImage(in.Template) {
		return Sandbox{}, errf(ErrInvalid, "template %q: images made from OCI images start template builds only; build a template with fromImage and start sandboxes from it", in.Template)
	}
	// A quota refusal comes before any host is looked for; the check
	// that counts is the one made with the row's insert, below.
	d := demand{sandbox: true, create: true, vcpus: in.VCPUs, memoryMiB: int64(in.MemoryMiB), diskMiB: diskDemand(in.DiskMiB)}
	if err := s.inTx(ctx, func(q *db.Queries) error { return s.admit(ctx, q, c.TeamID, d) }); err != nil {
		return Sandbox{}, err
	}
	var hosts []db.Host
	var snapName string
	if in.SnapshotID != nil {
		owner := c.TeamID
		if in.snapshotTeam != nil {
			owner = *in.snapshotTeam
		}
		snap, err := s.Q.GetSnapshot(ctx, db.GetSnapshotParams{ID: *in.SnapshotID, TeamID: owner})
		if err != nil {
			return Sandbox{}, notFound(err, "snapshot")
		}
		if snap.Status != "ready" {
			return Sandbox{}, errf(ErrConflict, "snapshot %s is %s, not ready", id.Format(id.Snapshot, snap.ID), snap.Status)
		}
		if snap.HostID == nil {
			return Sandbox{}, errf(ErrUnavailable, "snapshot %s has no host any more (its host was deleted)", id.Format(id.Snapshot, snap.ID))
		}
		h, err := s.Q.GetHost(ctx, *snap.HostID)
		if err != nil {
			return Sandbox{}, notFound(err, "snapshot host")
		}
		if h.Status != "ready" {
			return Sandbox{}, errf(ErrNoCapacity, "no capacity: snapshot %s lives on host %s, which is %s", id.Format(id.Snapshot, snap.ID), id.Format(id.Host, h.ID), h.Status)
		}
		hosts = []db.Host{h}
		in.Template, in.VCPUs, in.MemoryMiB = snap.Template, snap.Vcpus, snap.MemoryMib
		if in.DiskMiB == 0 {
			in.DiskMiB = snap.DiskMib
		}
		snapName = id.Format(id.Snapshot, snap.ID)
	} else {
		tmpl := in.Template
		if in.onHost != nil {
			tmpl = "" // the host has it: it just said so
		}
		var err error
		if hosts, err = s.candidates(ctx, tmpl, in.MemoryMiB, in.DiskMiB); err != nil {
			return Sandbox{}, err
		}
		if in.onHost != nil {
			hosts = slices.DeleteFunc(hosts, func(h db.Host) bool { return h.ID != *in.onHost })
			if len(hosts) == 0 {
				return Sandbox{}, errf(ErrNoCapacity, "no capacity: host %s, which has image %s, cannot take a sandbox now", id.Format(id.Host, *in.onHost), in.Template)
			}
		}
	}
	yes := true
	if in.AllowInternet == nil {
		in.AllowInternet = &yes
	}
	if in.AllowPublicTraffic == nil {
		in.AllowPublicTraffic = &yes
	}
	meta, _ := json.Marshal(nonNil(in.Metadata))
	token, traffic := cpauth.NewToken(""), cpauth.NewToken("")
	sid := id.New()
	done := s.markBusy(sid)
	defer done()
	var row db.Sandbox
	err := s.inTx(ctx, func(q *db.Queries) error {
		// The row is what the quota counts: admitted and written together.
		// A snapshot fixes the machine's size, known only now.
		d.vcpus, d.memoryMiB, d.diskMiB = in.VCPUs, int64(in.MemoryMiB), diskDemand(in.DiskMiB)
		err := s.admit(ctx, q, c.TeamID, d)
		if err != nil {
			return err
		}
		row, err = q.CreateSandbox(ctx, db.CreateSandboxParams{
			ID: sid, TeamID: c.TeamID, HostID: &hosts[0].ID, Template: in.Template, SnapshotID: in.SnapshotID,
			Vcpus: in.VCPUs, MemoryMib: in.MemoryMiB, DiskMib: in.DiskMiB, TimeoutSeconds: in.TimeoutSeconds,
			OnTimeout: in.OnTimeout, AllowInternet: *in.AllowInternet, AllowPublicTraffic: *in.AllowPublicTraffic, AutoResume: in.AutoResume,
			Metadata: meta, EnvdTokenEnc: s.Keys.Seal(token), TrafficTokenEnc: s.Keys.Seal(traffic),
		})
		return err
	})
	if err != nil {
		return Sandbox{}, err
	}
	if len(in.EnvVars) > 0 {
		// Names only: values may be secrets.
		names := slices.Sorted(maps.Keys(in.EnvVars))
		if err := s.Q.SetSandboxEnvVarNames(ctx, db.SetSandboxEnvVarNamesParams{ID: sid, EnvVarNames: names}); err != nil {
			return Sandbox{}, err
		}
	}
	if in.Network != nil && !in.Network.Empty() {
		if row, err = s.storeNetwork(ctx, sid, *in.Network); err != nil {
			return Sandbox{}, err
		}
	}
	actx, cancel := detach(ctx)
	defer cancel()
	onTimeout := pb.TimeoutAction_TIMEOUT_ACTION_DESTROY
	if in.OnTimeout == "pause" {
		onTimeout = pb.TimeoutAction_TIMEOUT_ACTION_PAUSE
	}
	req := &pb.CreateSandboxRequest{
		SandboxId: id.Format(id.Sandbox, sid), Template: in.Template, Vcpus: uint32(in.VCPUs), MemoryMib: uint32(in.MemoryMiB),
		DiskMib: uint32(in.DiskMiB), TimeoutSeconds: uint32(in.TimeoutSeconds), EnvVars: in.EnvVars,
		AllowInternet: *in.AllowInternet, Metadata: in.Metadata, EnvdAccessToken: token, OnTimeout: onTimeout, Snapshot: snapName,
		Network: networkPB(in.Network),
	}
	var lastErr error
	for i, h := range hosts {
		if i > 0 {
			if err := s.Q.SetSandboxHost(actx, db.SetSandboxHostParams{ID: sid, HostID: &h.ID}); err != nil {
				return Sandbox{}, err
			}
		}
		client, err := s.agent(h)
		if err != nil {
			lastErr = err
			continue
		}
		res, err := client.CreateSandbox(actx, connect.NewRequest(req))
		if err != nil {
			lastErr = agentError(h, "create sandbox", err)
			if k := fault.KindOf(err); k == fault.NoCapacity || k == fault.Unavailable {
				continue // try the next host
			}
			break
		}
		got := res.Msg.GetSandbox()
		row, err = s.Q.SetSandboxRunning(actx, db.SetSandboxRunningParams{
			ID: sid, EnvdVersion: got.GetEnvdVersion(), ExpiresAt: unixMs(got.GetExpiresAtUnixMs()), FromStates: []string{"creating"},
		})
		if errors.Is(err, pgx.ErrNoRows) {
			// Destroyed while it was starting: do not leave it running.
			_, _ = client.DestroySandbox(actx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: req.SandboxId}))
			return Sandbox{}, errf(ErrConflict, "sandbox was destroyed while it was starting")
		}
		if err != nil {
			return Sandbox{}, err
		}
		if in.DiskMiB == 0 && got.GetDiskMib() > 0 {
			// The template's default, now known: the quota counts it.
			if err := s.Q.SetSandboxDisk(actx, db.SetSandboxDiskParams{ID: sid, DiskMib: int32(got.GetDiskMib())}); err != nil {
				return Sandbox{}, err
			}
			row.DiskMib = int32(got.GetDiskMib())
		}
		return Sandbox{Sandbox: row, HostStatus: h.Status, EnvdAccessToken: token, TrafficAccessToken: traffic}, nil
	}
	if _, err := s.Q.SetSandboxState(actx, db.SetSandboxStateParams{ID: sid, State: "error", Error: lastErr.Error()}); err != nil {
		s.Log.Error("record failed create", "sandbox", req.SandboxId, "err", err)
	}
	return Sandbox{}, lastErr
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func unixMs(ms int64) *time.Time {
	if ms == 0 {
		return nil
	}
	t := time.UnixMilli(ms)
	return &t
}

// getSandbox loads a sandbox of the caller's team; another team's is
// "not found".
func (s *Service) getSandbox(ctx context.Context, c auth.Caller, sid uuid.UUID) (db.Sandbox, error) {
	if err := requireTeam(c); err != nil {
		return db.Sandbox{}, err
	}
	sb, err := s.Q.GetSandbox(ctx, db.GetSandboxParams{ID: sid, TeamID: c.TeamID})
	return sb, notFound(err, "sandbox")
}

// GetSandbox returns one of the team's sandboxes with its envd token.
func (s *Service) GetSandbox(ctx context.Context, c auth.Caller, sid uuid.UUID) (Sandbox, error) {
	sb, err := s.getSandbox(ctx, c, sid)
	if err != nil {
		return Sandbox{}, err
	}
	out := Sandbox{Sandbox: sb}
	if sb.HostID != nil {
		if h, err := s.Q.GetHost(ctx, *sb.HostID); err == nil {
			out.HostStatus = h.Status
		}
	}
	if sb.State != "stopped" {
		out = s.WithTokens(out)
	}
	return out, nil
}

// SandboxFilter narrows a list.
type SandboxFilter struct {
	State string
	// States, if set, keeps sandboxes in any of them.
	States         []string
	Template       string
	Metadata       map[string]string
	StartedAfter   *time.Time
	IncludeStopped bool
	OldestFirst    bool
	Limit, Offset  int32
}

// ListSandboxes lists the team's sandboxes, newest first.
func (s *Service) ListSandboxes(ctx context.Context, c auth.Caller, f SandboxFilter) ([]Sandbox, error) {
	if err := requireTeam(c); err != nil {
		return nil, err
	}
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 1000
	}
	p := db.ListSandboxesParams{TeamID: c.TeamID, Limit: f.Limit, Offset: max(f.Offset, 0), States: f.States, StartedAfter: f.StartedAfter, OldestFirst: f.OldestFirst,
		IncludeStopped: f.IncludeStopped || f.State == "stopped" || f.State == "error"}
	if f.State != "" {
		p.State = &f.State
	}
	if f.Template != "" {
		p.Template = &f.Template
	}
	if len(f.Metadata) > 0 {
		p.Metadata, _ = json.Marshal(f.Metadata)
	}
	rows, err := s.Q.ListSandboxes(ctx, p)
	if err != nil {
		return nil, err
	}
	return s.withHostStatus(ctx, rows)
}

// AdminListSandboxes lists every team's sandboxes.
func (s *Service) AdminListSandboxes(ctx context.Context, c auth.Caller, includeStopped bool, limit, offset int32) ([]Sandbox, error) {
	if err := requireAdmin(c); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	rows, err := s.Q.ListAllSandboxes(ctx, db.ListAllSandboxesParams{Limit: limit, Offset: max(offset, 0), IncludeStopped: includeStopped})
	if err != nil {
		return nil, err
	}
	return s.withHostStatus(ctx, rows)
}

func (s *Service) withHostStatus(ctx context.Context, rows []db.Sandbox) ([]Sandbox, error) {
	hosts, err := s.Q.ListHosts(ctx)
	if err != nil {
		return nil, err
	}
	status := map[uuid.UUID]string{}
	for _, h := range hosts {
		status[h.ID] = h.Status
	}
	out := make([]Sandbox, len(rows))
	for i, r := range rows {
		out[i] = Sandbox{Sandbox: r}
		if r.HostID != nil {
			out[i].HostStatus = status[*r.HostID]
		}
	}
	return out, nil
}

// destroySandbox stops a sandbox and frees everything it held on its host.
func (s *Service) destroySandbox(ctx context.Context, c auth.Caller, sid uuid.UUID) error {
	sb, err := s.getSandbox(ctx, c, sid)
	if err != nil {
		return err
	}
	done := s.markBusy(sid)
	defer done()
	prev := sb.State
	sb, err = s.Q.TransitionSandbox(ctx, db.TransitionSandboxParams{ID: sid, ToState: "stopping", FromStates: []string{"creating", "running", "paused", "error", "pausing", "resuming"}})
	if errors.Is(err, pgx.ErrNoRows) {
		return errf(ErrConflict, "sandbox is already %s", prev)
	}
	if err != nil {
		return err
	}
	actx, cancel := detach(ctx)
	defer cancel()
	h, client, err := s.hostAgent(actx, sb.HostID)
	if err == nil {
		_, err = client.DestroySandbox(actx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id.Format(id.Sandbox, sid)}))
		if err != nil && !errors.Is(err, fault.NotFound) {
			// Leave it in its previous state so that the caller can retry.
			_, _ = s.Q.SetSandboxState(actx, db.SetSandboxStateParams{ID: sid, State: prev, Error: ""})
			return agentError(h, "destroy sandbox", err)
		}
	} else if !errors.Is(err, ErrUnavailable) {
		return err
	}
	// An unreachable host's sandbox is recorded as stopped; the reconciler
	// destroys it there if the host comes back.
	_, err = s.Q.SetSandboxState(actx, db.SetSandboxStateParams{ID: sid, State: "stopped", Error: ""})
	return err
}

// SetTimeout makes a running sandbox expire seconds from now.
func (s *Service) SetTimeout(ctx context.Context, c auth.Caller, sid uuid.UUID, seconds int32) (Sandbox, error) {
	if seconds < 1 || seconds > MaxTimeoutSeconds {
		return Sandbox{}, errf(ErrInvalid, "timeout_seconds must be 1 to %d", MaxTimeoutSeconds)
	}
	t, err := s.running(ctx, c, sid)
	if err != nil {
		return Sandbox{}, err
	}
	res, err := t.Agent.SetSandboxTimeout(ctx, connect.NewRequest(&pb.SetSandboxTimeoutRequest{SandboxId: t.AgentID, TimeoutSeconds: uint32(seconds)}))
	if err != nil {
		return Sandbox{}, t.fail("set timeout", err)
	}
	row, err := s.Q.SetSandboxExpiry(ctx, db.SetSandboxExpiryParams{ID: sid, ExpiresAt: unixMs(res.Msg.GetSandbox().GetExpiresAtUnixMs()), TimeoutSeconds: seconds})
	return Sandbox{Sandbox: row, HostStatus: t.Host.Status}, err
}

// pauseSandbox snapshots a running sandbox's memory and disk on its host
// and frees its CPU and RAM.
func (s *Service) pauseSandbox(ctx context.Context, c auth.Caller, sid uuid.UUID) (Sandbox, error) {
	t, err := s.running(ctx, c, sid)
	if err != nil {
		return Sandbox{}, err
	}
	done := s.markBusy(sid)
	defer done()
	if _, err := s.Q.TransitionSandbox(ctx, db.TransitionSandboxParams{ID: sid, ToState: "pausing", FromStates: []string{"running"}}); err != nil {
		return Sandbox{}, notFound(err, "running sandbox")
	}
	actx, cancel := detach(ctx)
	defer cancel()
	if _, err := t.Agent.PauseSandbox(actx, connect.NewRequest(&pb.PauseSandboxRequest{SandboxId: t.AgentID})); err != nil {
		s.syncFromAgent(actx, t)
		return Sandbox{}, t.fail("pause sandbox", err)
	}
	row, err := s.Q.SetSandboxPaused(actx, db.SetSandboxPausedParams{ID: sid, FromStates: []string{"pausing"}})
	return Sandbox{Sandbox: row, HostStatus: t.Host.Status}, notFound(err, "pausing sandbox")
}

// resumeSandbox brings a paused sandbox back; on a running one it does
// nothing. timeout, if set, restarts its clock.
func (s *Service) resumeSandbox(ctx context.Context, c auth.Caller, sid uuid.UUID, timeoutSeconds int32) (Sandbox, error) {
	if timeoutSeconds < 0 || timeoutSeconds > MaxTimeoutSeconds {
		return Sandbox{}, errf(ErrInvalid, "timeout_seconds must be 0 (keep) to %d", MaxTimeoutSeconds)
	}
	sb, err := s.getSandbox(ctx, c, sid)
	if err != nil {
		return Sandbox{}, err
	}
	if sb.State == "running" {
		return s.GetSandbox(ctx, c, sid)
	}
	if sb.State != "paused" {
		return Sandbox{}, errf(ErrConflict, "sandbox is %s; only a paused sandbox can be resumed", sb.State)
	}
	h, client, err := s.hostAgent(ctx, sb.HostID)
	if err != nil {
		return Sandbox{}, err
	}
	done := s.markBusy(sid)
	defer done()
	err = s.inTx(ctx, func(q *db.Queries) error {
		// Running again, it holds its CPUs and memory again.
		if err := s.admit(ctx, q, sb.TeamID, demand{vcpus: sb.Vcpus, memoryMiB: int64(sb.MemoryMib)}); err != nil {
			return err
		}
		if _, err := q.TransitionSandbox(ctx, db.TransitionSandboxParams{ID: sid, ToState: "resuming", FromStates: []string{"paused"}}); err != nil {
			return errf(ErrConflict, "sandbox changed state; try again")
		}
		return nil
	})
	if err != nil {
		return Sandbox{}, err
	}
	actx, cancel := detach(ctx)
	defer cancel()
	t := target{Sandbox: sb, Host: h, Agent: client, AgentID: id.Format(id.Sandbox, sid)}
	res, err := client.ResumeSandbox(actx, connect.NewRequest(&pb.ResumeSandboxRequest{SandboxId: t.AgentID, TimeoutSeconds: uint32(timeoutSeconds)}))
	if err != nil {
		s.syncFromAgent(actx, t)
		return Sandbox{}, agentError(h, "resume sandbox", err)
	}
	got := res.Msg.GetSandbox()
	row, err := s.Q.SetSandboxRunning(actx, db.SetSandboxRunningParams{ID: sid, EnvdVersion: got.GetEnvdVersion(), ExpiresAt: unixMs(got.GetExpiresAtUnixMs()), FromStates: []string{"resuming"}})
	if err != nil {
		return Sandbox{}, notFound(err, "resuming sandbox")
	}
	if timeoutSeconds > 0 {
		row, err = s.Q.SetSandboxExpiry(actx, db.SetSandboxExpiryParams{ID: sid, ExpiresAt: row.ExpiresAt, TimeoutSeconds: timeoutSeconds})
	}
	return s.WithTokens(Sandbox{Sandbox: row, HostStatus: h.Status}), err
}

// WithTokens adds the sandbox's tokens, for its own team.
func (s *Service) WithTokens(sb Sandbox) Sandbox {
	if sb.EnvdTokenEnc != nil {
		sb.EnvdAccessToken, _ = s.Keys.Open(sb.EnvdTokenEnc)
	}
	if sb.TrafficTokenEnc != nil {
		sb.TrafficAccessToken, _ = s.Keys.Open(sb.TrafficTokenEnc)
	}
	return sb
}

// syncFromAgent records the state the agent reports after a failed
// operation, so the database does not claim a half-done transition.
func (s *Service) syncFromAgent(ctx context.Context, t target) {
	res, err := t.Agent.GetSandbox(ctx, connect.NewRequest(&pb.GetSandboxRequest{SandboxId: t.AgentID}))
	state, msg := "error", ""
	switch {
	case err == nil:
		state = agentState(res.Msg.GetSandbox().GetState())
		msg = res.Msg.GetSandbox().GetError()
	case errors.Is(err, fault.NotFound):
		state, msg = "stopped", "the host no longer has this sandbox"
	default:
		msg = "state unknown after a failed operation: " + err.Error()
	}
	if _, err := s.Q.SetSandboxState(ctx, db.SetSandboxStateParams{ID: t.Sandbox.ID, State: state, Error: msg}); err != nil {
		s.Log.Error("record sandbox state", "sandbox", t.AgentID, "err", err)
	}
}

func agentState(st pb.SandboxState) string {
	switch st {
	case pb.SandboxState_SANDBOX_STATE_CREATING:
		return "creating"
	case pb.SandboxState_SANDBOX_STATE_RUNNING:
		return "running"
	case pb.SandboxState_SANDBOX_STATE_PAUSING:
		return "pausing"
	case pb.SandboxState_SANDBOX_STATE_PAUSED:
		return "paused"
	case pb.SandboxState_SANDBOX_STATE_RESUMING:
		return "resuming"
	case pb.SandboxState_SANDBOX_STATE_STOPPING:
		return "stopping"
	case pb.SandboxState_SANDBOX_STATE_STOPPED:
		return "stopped"
	}
	return "error"
}
