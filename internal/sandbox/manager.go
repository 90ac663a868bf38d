package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/cgroup"
	"git.omukk.dev/wrenn/sandbox/internal/egress"
	"git.omukk.dev/wrenn/sandbox/internal/envdapi"
	"git.omukk.dev/wrenn/sandbox/internal/envdclient"
	"git.omukk.dev/wrenn/sandbox/internal/guestimage"
	"git.omukk.dev/wrenn/sandbox/internal/network"
	"git.omukk.dev/wrenn/sandbox/internal/runtime"
	"git.omukk.dev/wrenn/sandbox/pkg/limits"
)

// Config of a manager.
type Config struct {
	StateDir  string // sandboxes live in StateDir/sandboxes/<id>
	ImagesDir string
	Driver    runtime.Driver
	// Net hands out the sandboxes' network slots (a *network.Manager).
	Net          Slots
	Log          *slog.Logger
	HostCPUs     int
	HostMemMiB   int
	MaxSandboxes int
	DNS          []netip.Addr
	// ReadyTimeout bounds boot to envd answering (TCG boots are slow).
	ReadyTimeout time.Duration
	SampleEvery  time.Duration
	// DestroyOnClose makes Close destroy every sandbox; by default it
	// keeps them for the next run, paused.
	DestroyOnClose bool
	// Changed, if set, is told the ID of a sandbox whose state this
	// manager changed on its own (a timeout paused or destroyed it, its
	// guest died), so that whoever keeps the record learns at once. It is
	// called with the sandbox's lock held: it must not block.
	Changed func(id string)

	// clock runs the timeouts (tests set one they advance by hand).
	clock clock
}

// Slots allocates network slots.
type Slots interface {
	// Acquire builds a slot whose guest may reach the internet or not;
	// with guestNamespace the guest gets a network namespace of its own
	// (runtime.Capabilities.GuestNamespace).
	Acquire(internet, guestNamespace bool) (*network.Slot, error)
	Release(*network.Slot) error
	// SetSandboxEgress applies a sandbox's own egress policy to its slot.
	SetSandboxEgress(*network.Slot, egress.Rules) error
}

// Manager owns every sandbox on this host.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	caps  runtime.Capabilities
	clock clock

	mu     sync.Mutex
	boxes  map[string]*Sandbox
	closed bool
	wg     sync.WaitGroup // guest watchers and timer-driven destroys

	imagesMu sync.Mutex
	images   map[string]*guestimage.Manifest
}

// NewManager resolves what the driver can do, removes what an earlier
// agent run left behind (guests, sandbox directories, cgroups) and
// returns an empty manager. The network manager it is given has already
// reclaimed stale slots.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 3 * time.Minute
	}
	if cfg.SampleEvery == 0 {
		cfg.SampleEvery = 5 * time.Second
	}
	if cfg.clock == nil {
		cfg.clock = realClock{}
	}
	caps, err := runtime.CapabilitiesOf(cfg.Driver)
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, log: cfg.Log, caps: caps, clock: cfg.clock, boxes: map[string]*Sandbox{}, images: map[string]*guestimage.Manifest{}}
	if err := os.MkdirAll(m.sandboxesDir(), 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	if err := m.reclaim(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Manager) sandboxesDir() string { return filepath.Join(m.cfg.StateDir, "sandboxes") }

// record is what is persisted per sandbox, so that a later agent run can
// find and stop its guest.
type record struct {
	ID   string `json:"id"`
	PID  int    `json:"pid"`
	Slot int    `json:"slot"`
	// What it takes to bring the sandbox back after an agent crash.
	Request   Request   `json:"request"`
	CreatedAt time.Time `json:"created_at"`
	Paused    bool      `json:"paused"`
}

// writeRecord saves what a later agent run needs to know about s (0600:
// it holds the sandbox's envd token), atomically.
func (m *Manager) writeRecord(s *Sandbox, pid, slot int, paused bool) error {
	b, _ := json.Marshal(record{ID: s.info.ID, PID: pid, Slot: slot, Request: s.info.Request, CreatedAt: s.info.CreatedAt, Paused: paused})
	path := filepath.Join(s.dir, "sandbox.json")
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// rewriteRecord saves s's record again after its request changed; s.mu
// is held and s is running or paused.
func (m *Manager) rewriteRecord(s *Sandbox) error {
	if s.inst != nil && s.slot != nil {
		return m.writeRecord(s, s.inst.PID(), s.slot.Index, false)
	}
	return m.writeRecord(s, 0, -1, true)
}

// reclaim deals with what an earlier run left (it was killed, or the host
// rebooted): guests the driver can save are paused into their directories
// and adopted as paused sandboxes, resumable as before; everything else
// is stopped and its files and cgroups removed.
func (m *Manager) reclaim() error {
	entries, err := os.ReadDir(m.sandboxesDir())
	if err != nil {
		return err
	}
	var adopt []record
	kept := map[string]bool{}
	for _, e := range entries {
		dir := filepath.Join(m.sandboxesDir(), e.Name())
		var rec record
		b, err := os.ReadFile(filepath.Join(dir, "sandbox.json"))
		if err != nil || json.Unmarshal(b, &rec) != nil || rec.Request.ID != e.Name() || m.caps.Salvager == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		ok, err := m.caps.Salvager.Salvage(ctx, runtime.Spec{SandboxID: rec.ID, TemplateID: rec.Request.Template, Dir: dir}, rec.PID)
		cancel()
		if err != nil {
			m.log.Error("could not save a sandbox left by an earlier agent run", "sandbox", rec.ID, "err", err)
		}
		if ok {
			adopt = append(adopt, rec)
			kept[dir] = true
		}
	}
	var groups []string
	for _, e := range entries {
		groups = append(groups, cgroup.SandboxName(e.Name()))
		dir := filepath.Join(m.sandboxesDir(), e.Name())
		if kept[dir] {
			continue
		}
		var rec record
		if b, err := os.ReadFile(filepath.Join(dir, "sandbox.json")); err == nil && json.Unmarshal(b, &rec) == nil && rec.PID > 0 {
			if runtime.ProcessOwnedBy(rec.PID, dir) {
				m.log.Warn("stopping a guest left by an earlier agent run", "sandbox", rec.ID, "pid", rec.PID)
				_ = syscall.Kill(rec.PID, syscall.SIGKILL)
				waitGone(rec.PID, 5*time.Second)
			}
		}
	}
	if m.caps.Reclaimer != nil {
		if err := m.caps.Reclaimer.Reclaim(m.cfg.StateDir); err != nil {
			// Directories may still hold mounts: removing them could reach
			// through into what the mounts show.
			return fmt.Errorf("reclaim %s runtime state: %w", m.cfg.Driver.Name(), err)
		}
	}
	var errs []error
	for _, e := range entries {
		if dir := filepath.Join(m.sandboxesDir(), e.Name()); !kept[dir] {
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, err)
			}
		}
	}
	accel, _ := m.cfg.Driver.Accelerator()
	for _, rec := range adopt {
		s := &Sandbox{dir: filepath.Join(m.sandboxesDir(), rec.ID), info: Info{Request: rec.Request, State: Paused, CreatedAt: rec.CreatedAt, Runtime: m.cfg.Driver.Name() + "/" + accel}}
		s.info.EnvVars = maps.Clone(rec.Request.EnvVars)
		s.info.Metadata = maps.Clone(rec.Request.Metadata)
		if err := m.writeRecord(s, 0, -1, true); err != nil {
			errs = append(errs, err)
		}
		m.boxes[rec.ID] = s
		m.log.Warn("kept a sandbox left by an earlier agent run: it is paused and can be resumed", "sandbox", rec.ID)
	}
	// Snapshot templates survive restarts; half-written ones do not.
	parts, _ := filepath.Glob(filepath.Join(m.cfg.StateDir, "snapshots", ".*.part-*"))
	for _, p := range parts {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, cgroup.RemoveIdle(groups...))
	return errors.Join(errs...)
}

func waitGone(pid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Image loads (and on first use verifies) a template's manifest.
func (m *Manager) Image(name string) (*guestimage.Manifest, string, error) {
	if !ValidID(name) {
		return nil, "", fmt.Errorf("%w: template name %q", ErrInvalid, name)
	}
	dir := filepath.Join(m.cfg.ImagesDir, name)
	m.imagesMu.Lock()
	defer m.imagesMu.Unlock()
	if mf, ok := m.images[name]; ok {
		return mf, dir, nil
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, "", fmt.Errorf("%w: template %q is not on this host (images are in %s)", ErrNotFound, name, m.cfg.ImagesDir)
	}
	mf, err := guestimage.Verify(dir)
	if err != nil {
		return nil, "", err
	}
	m.images[name] = mf
	return mf, dir, nil
}

// Config returns the manager's configuration.
func (m *Manager) Config() Config { return m.cfg }

// Templates lists the images present.
func (m *Manager) Templates() []string {
	entries, _ := os.ReadDir(m.cfg.ImagesDir)
	var out []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			if _, err := os.Stat(filepath.Join(m.cfg.ImagesDir, e.Name(), guestimage.FileManifest)); err == nil {
				out = append(out, e.Name())
			}
		}
	}
	return out
}

func (m *Manager) normalize(r *Request) error {
	if !ValidID(r.ID) {
		return fmt.Errorf("%w: sandbox id %q must be 1-63 lowercase letters, digits or dashes", ErrInvalid, r.ID)
	}
	if r.VCPUs == 0 {
		r.VCPUs = limits.DefaultVCPUs
	}
	if r.MemoryMiB == 0 {
		r.MemoryMiB = limits.DefaultMemoryMiB
	}
	if r.Timeout == 0 {
		r.Timeout = limits.DefaultTimeout
	}
	if r.OnTimeout == "" {
		r.OnTimeout = OnTimeoutDestroy
	}
	maxVCPUs, maxMiB := limits.MaxVCPUs, limits.MaxMemoryMiB
	if m.cfg.HostCPUs > 0 {
		maxVCPUs = min(maxVCPUs, m.cfg.HostCPUs)
	}
	if m.cfg.HostMemMiB > 0 {
		maxMiB = min(maxMiB, m.cfg.HostMemMiB)
	}
	if r.VCPUs < 1 || r.VCPUs > maxVCPUs {
		return fmt.Errorf("%w: %d vCPUs; this host allows 1 to %d", ErrInvalid, r.VCPUs, maxVCPUs)
	}
	if r.MemoryMiB < limits.MinMemoryMiB || r.MemoryMiB > maxMiB {
		return fmt.Errorf("%w: %d MiB of memory; this host allows %d to %d", ErrInvalid, r.MemoryMiB, limits.MinMemoryMiB, maxMiB)
	}
	if err := validTimeout(r.Timeout); err != nil {
		return err
	}
	if r.OnTimeout == OnTimeoutPause && m.caps.Resumer == nil {
		return fmt.Errorf("%w: the %s runtime cannot pause sandboxes yet; use destroy on timeout", ErrUnsupported, m.cfg.Driver.Name())
	}
	if _, err := egress.Compile(r.Network); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if r.OnTimeout != OnTimeoutDestroy && r.OnTimeout != OnTimeoutPause {
		return fmt.Errorf("%w: on-timeout action %q", ErrInvalid, r.OnTimeout)
	}
	return nil
}

func validTimeout(d time.Duration) error {
	if d < limits.MinTimeout || d > limits.MaxTimeout {
		return fmt.Errorf("%w: timeout %s; allowed is %s to %d days", ErrInvalid, d, limits.MinTimeout, limits.MaxTimeout/(24*time.Hour))
	}
	return nil
}

// Create boots a sandbox and returns when its envd answers. A failure on
// any step releases everything the steps before it took.
func (m *Manager) Create(ctx context.Context, r Request) (Info, error) {
	var snap *SnapshotInfo
	if r.Snapshot != "" {
		var err error
		if snap, err = m.snapshot(r.Snapshot); err != nil {
			return Info{}, err
		}
		if m.caps.Snapshotter == nil {
			return Info{}, fmt.Errorf("%w: the %s runtime cannot start from snapshots", ErrUnsupported, m.cfg.Driver.Name())
		}
		// The saved machine fixes these.
		r.Template, r.VCPUs, r.MemoryMiB = snap.Template, snap.VCPUs, snap.MemoryMiB
		if r.DiskMiB == 0 {
			r.DiskMiB = snap.DiskMiB
		}
		if r.DiskMiB < snap.DiskMiB {
			return Info{}, fmt.Errorf("%w: disk of %d MiB; snapshot %s needs at least %d", ErrInvalid, r.DiskMiB, snap.Name, snap.DiskMiB)
		}
	}
	if err := m.normalize(&r); err != nil {
		return Info{}, err
	}
	mf, imgDir, err := m.Image(r.Template)
	if err != nil {
		return Info{}, err
	}
	rootfsMiB := int((mf.Files[guestimage.FileRootfs].Size + 1<<20 - 1) >> 20)
	defaultDisk := r.DiskMiB == 0
	if defaultDisk {
		r.DiskMiB = rootfsMiB + limits.DiskHeadroomMiB
	}
	if r.DiskMiB < rootfsMiB || r.DiskMiB > limits.MaxDiskMiB {
		return Info{}, fmt.Errorf("%w: disk of %d MiB; template %s needs at least %d", ErrInvalid, r.DiskMiB, r.Template, rootfsMiB)
	}
	accel, _ := m.cfg.Driver.Accelerator()
	s := &Sandbox{info: Info{Request: r, State: Creating, CreatedAt: time.Now(), Runtime: m.cfg.Driver.Name() + "/" + accel}}
	s.info.EnvVars = maps.Clone(r.EnvVars)
	s.info.Metadata = maps.Clone(r.Metadata)
	s.mu.Lock()
	defer s.mu.Unlock()

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return Info{}, fmt.Errorf("%w: the agent is shutting down", ErrNoCapacity)
	}
	if _, dup := m.boxes[r.ID]; dup {
		m.mu.Unlock()
		return Info{}, fmt.Errorf("%w: %s", ErrAlreadyExists, r.ID)
	}
	if m.cfg.MaxSandboxes > 0 && len(m.boxes) >= m.cfg.MaxSandboxes {
		m.mu.Unlock()
		return Info{}, fmt.Errorf("%w: this host runs its maximum of %d sandboxes", ErrNoCapacity, m.cfg.MaxSandboxes)
	}
	if err := m.fitDiskLocked(&s.info.Request, rootfsMiB, defaultDisk); err != nil {
		m.mu.Unlock()
		return Info{}, err
	}
	m.boxes[r.ID] = s
	m.mu.Unlock()

	var err2 error
	if snap != nil {
		s.frozenToken = snap.AccessToken
		s.dir = filepath.Join(m.sandboxesDir(), r.ID)
		if err2 = os.MkdirAll(s.dir, 0o700); err2 == nil {
			err2 = m.restore(ctx, s, mf, imgDir, r.Timeout, m.snapshotDir(snap.Name))
		}
	} else {
		err2 = m.boot(ctx, s, mf, imgDir)
	}
	if err := err2; err != nil {
		m.teardown(s)
		m.mu.Lock()
		delete(m.boxes, r.ID)
		m.mu.Unlock()
		m.log.Warn("create failed", "sandbox", r.ID, "err", err)
		return Info{}, fmt.Errorf("create sandbox %s: %w", r.ID, err)
	}
	m.log.Info("sandbox running", "sandbox", r.ID, "template", r.Template, "slot", s.slot.Index, "pid", s.inst.PID(), "boot", time.Since(s.info.CreatedAt).Round(time.Millisecond))
	return s.Info(), nil
}

func (m *Manager) boot(ctx context.Context, s *Sandbox, mf *guestimage.Manifest, imgDir string) error {
	r := s.info.Request
	if err := m.acquireSlot(s); err != nil {
		return err
	}
	s.dir = filepath.Join(m.sandboxesDir(), r.ID)
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	inst, err := m.cfg.Driver.Start(ctx, m.spec(s, mf, imgDir))
	if err != nil {
		return err
	}
	return m.bringUp(ctx, s, inst, r.Timeout)
}

// acquireSlot gives s a network slot with its egress policy in place
// before the guest can send anything; the caller's failure path releases
// it (s.slot is set).
func (m *Manager) acquireSlot(s *Sandbox) error {
	slot, err := m.cfg.Net.Acquire(s.info.AllowInternet, m.caps.GuestNamespace)
	if err != nil {
		return err
	}
	s.slot = slot
	if s.info.Network.Empty() {
		return nil
	}
	rules, err := egress.Compile(s.info.Network)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return m.cfg.Net.SetSandboxEgress(slot, rules)
}

// SetNetwork replaces a sandbox's egress policy: at once in its slot if it
// runs, at its next bring-up otherwise; the record keeps it across agent
// restarts.
func (m *Manager) SetNetwork(id string, p egress.Policy) (Info, error) {
	rules, err := egress.Compile(p)
	if err != nil {
		return Info{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	s, err := m.get(id)
	if err != nil {
		return Info{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st := s.Info().State; st {
	case Running, Paused:
	default:
		return Info{}, fmt.Errorf("%w: sandbox %s is %s", ErrNotRunning, id, st)
	}
	if s.slot != nil {
		if err := m.cfg.Net.SetSandboxEgress(s.slot, rules); err != nil {
			return Info{}, err
		}
	}
	s.infoMu.Lock()
	s.info.Network = p
	s.infoMu.Unlock()
	if err := m.rewriteRecord(s); err != nil {
		return Info{}, err
	}
	return s.Info(), nil
}

// spec is what the driver needs to start or resume s's guest in its slot.
func (m *Manager) spec(s *Sandbox, mf *guestimage.Manifest, imgDir string) runtime.Spec {
	r := s.info.Request
	return runtime.Spec{
		SandboxID: r.ID, TemplateID: r.Template, ImageDir: imgDir, Manifest: mf,
		VCPUs: r.VCPUs, MemoryMiB: r.MemoryMiB, DiskMiB: r.DiskMiB,
		Slot: s.slot.Index, Namespace: s.slot.Namespace, GuestNamespace: s.slot.GuestNamespace, Dir: s.dir, DNS: m.cfg.DNS,
	}
}

// bringUp takes a started guest to running: its record on disk, envd
// answering and initialised, the timeout, the metrics sampler and the
// watcher that notices the guest dying.
func (m *Manager) bringUp(ctx context.Context, s *Sandbox, inst runtime.Instance, timeout time.Duration) error {
	r, slot := s.info.Request, s.slot
	s.inst = inst
	if err := m.writeRecord(s, inst.PID(), slot.Index, false); err != nil {
		return err
	}
	s.envd = envdclient.New(slot.GuestURL(envdapi.Port), r.AccessToken)
	readyCtx, cancel := context.WithTimeout(ctx, m.cfg.ReadyTimeout)
	defer cancel()
	if err := s.envd.WaitHealthy(readyCtx, inst.Done()); err != nil {
		return fmt.Errorf("%w (console: %s)", err, tail(inst.Console(), 800))
	}
	version, err := s.envd.Init(readyCtx, m.initRequest(s))
	if err != nil {
		return err
	}
	s.frozenToken = "" // envd holds this sandbox's own token from now on
	m.armExpiry(s, timeout)
	s.infoMu.Lock()
	s.guestHTTP = newGuestTransport()
	s.guestCtx, s.guestCancel = context.WithCancel(context.Background())
	s.info.State = Running
	s.info.HostAddress = slot.GuestHost.String()
	s.info.EnvdVersion = version
	s.infoMu.Unlock()
	s.sampler = startSampler(s, m.cfg.SampleEvery, m.log)
	s.watch = make(chan struct{})
	m.wg.Add(1)
	go m.watchGuest(s, inst, s.watch)
	return nil
}

// watchGuest notices a guest that dies on its own: the sandbox goes to the
// error state and everything it held is released.
func (m *Manager) watchGuest(s *Sandbox, inst runtime.Instance, stop chan struct{}) {
	defer m.wg.Done()
	select {
	case <-stop:
		return
	case <-inst.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.Info().State; st == Stopping || st == Stopped || st == Pausing || st == Paused {
		return
	}
	reason := fmt.Sprintf("the guest exited unexpectedly: %v", inst.Err())
	m.log.Error("guest died", "sandbox", s.info.ID, "err", inst.Err())
	s.watch = nil // this goroutine is the watcher; nothing to stop
	m.teardown(s)
	s.setState(Error, reason)
	m.changed(s.info.ID)
}

// changed reports a state change this manager made on its own.
func (m *Manager) changed(id string) {
	if m.cfg.Changed != nil {
		m.cfg.Changed(id)
	}
}

// teardown releases everything s holds, in reverse order of acquisition.
// It is safe on a partly built sandbox. Callers hold s.mu.
func (m *Manager) teardown(s *Sandbox) {
	if s.expiry != nil {
		s.expiry.Stop()
	}
	if s.sampler != nil {
		s.sampler.stop()
		s.sampler = nil
	}
	if s.watch != nil {
		close(s.watch)
		s.watch = nil
	}
	if s.envd != nil {
		s.closeIdle()
	}
	s.cutGuestTraffic()
	keepDir := false
	if s.inst != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := s.inst.Shutdown(ctx); err != nil {
			m.log.Warn("guest shutdown", "sandbox", s.info.ID, "err", err)
		}
		cancel()
		if err := s.inst.Release(); err != nil {
			// A mount may remain in the directory: leave it for the next
			// start's reclaim rather than delete through it.
			m.log.Error("release guest resources", "sandbox", s.info.ID, "err", err)
			keepDir = true
		}
		s.inst = nil
	}
	if s.slot != nil {
		if err := m.cfg.Net.Release(s.slot); err != nil {
			m.log.Error("release network slot", "sandbox", s.info.ID, "slot", s.slot.Index, "err", err)
		}
		s.slot = nil
	}
	if s.dir != "" && !keepDir {
		if err := os.RemoveAll(s.dir); err != nil {
			m.log.Error("remove sandbox directory", "sandbox", s.info.ID, "err", err)
		}
	}
}

func (m *Manager) get(id string) (*Sandbox, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.boxes[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return s, nil
}

// Get returns a sandbox by ID.
func (m *Manager) Get(id string) (*Sandbox, error) { return m.get(id) }

// LogDir is the directory of a sandbox's console (console.Read and
// console.Follow read it), running or paused, and a func that reports
// when the sandbox is gone (its directory with it).
func (m *Manager) LogDir(id string) (string, func() bool, error) {
	s, err := m.get(id)
	if err != nil {
		return "", nil, err
	}
	gone := func() bool {
		st := s.Info().State
		return st == Stopping || st == Stopped
	}
	if gone() {
		return "", nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return filepath.Join(m.sandboxesDir(), id), gone, nil
}

// List returns every sandbox's state, by creation time.
func (m *Manager) List() []Info {
	m.mu.Lock()
	boxes := slices.Collect(maps.Values(m.boxes))
	m.mu.Unlock()
	out := make([]Info, 0, len(boxes))
	for _, s := range boxes {
		out = append(out, s.Info())
	}
	slices.SortFunc(out, func(a, b Info) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out
}

// Destroy stops a sandbox and releases everything it holds.
func (m *Manager) Destroy(id string) error {
	s, err := m.get(id)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.Info().State; st == Stopped {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	m.destroyLocked(s)
	return nil
}

// destroyLocked tears s down and forgets it. Callers hold s.mu.
func (m *Manager) destroyLocked(s *Sandbox) {
	s.setState(Stopping, "")
	m.teardown(s)
	s.setState(Stopped, "")
	m.mu.Lock()
	if m.boxes[s.info.ID] == s {
		delete(m.boxes, s.info.ID)
	}
	m.mu.Unlock()
	m.log.Info("sandbox destroyed", "sandbox", s.info.ID)
}

// SetTimeout moves a running sandbox's expiry to d from now.
func (m *Manager) SetTimeout(id string, d time.Duration) (Info, error) {
	if err := validTimeout(d); err != nil {
		return Info{}, err
	}
	s, err := m.get(id)
	if err != nil {
		return Info{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.Info().State; st != Running {
		return Info{}, fmt.Errorf("%w: sandbox %s is %s", ErrNotRunning, id, st)
	}
	m.armExpiry(s, d)
	return s.Info(), nil
}

// armExpiry makes a running sandbox expire d from now. The expiry time is
// set before the timer, so a timer never fires before it. Callers hold
// s.mu.
func (m *Manager) armExpiry(s *Sandbox, d time.Duration) {
	s.infoMu.Lock()
	s.info.ExpiresAt = m.clock.Now().Add(d)
	s.infoMu.Unlock()
	if s.expiry == nil {
		id := s.info.ID
		s.expiry = m.clock.AfterFunc(d, func() { m.expire(id) })
	} else {
		s.expiry.Reset(d)
	}
}

// expire is the reaper: called by a sandbox's timer. It decides under the
// sandbox's lock, so a timeout set meanwhile either comes first and
// stands, or finds the sandbox gone.
func (m *Manager) expire(id string) {
	m.wg.Add(1)
	defer m.wg.Done()
	s, err := m.get(id)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	info := s.Info()
	if info.State != Running {
		return // paused or gone while this timer fired
	}
	if now := m.clock.Now(); now.Before(info.ExpiresAt) {
		s.expiry.Reset(info.ExpiresAt.Sub(now)) // extended while this timer fired
		return
	}
	defer m.changed(id)
	if info.OnTimeout == OnTimeoutPause {
		m.log.Info("sandbox timed out; pausing", "sandbox", id)
		if _, err := m.pauseLocked(context.Background(), s); err != nil {
			m.log.Error("pause on timeout", "sandbox", id, "err", err)
		}
		return
	}
	m.log.Info("sandbox timed out", "sandbox", id)
	m.destroyLocked(s)
}

// quiesceWindow lets the FINs of the connections closed before a pause
// reach the guest while it still runs.
const quiesceWindow = 100 * time.Millisecond

// Pause saves a running sandbox to disk and frees its CPU, RAM and network
// slot. On failure the sandbox keeps running.
func (m *Manager) Pause(ctx context.Context, id string) (Info, error) {
	s, err := m.get(id)
	if err != nil {
		return Info{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return m.pauseLocked(ctx, s)
}

func (m *Manager) pauseLocked(ctx context.Context, s *Sandbox) (Info, error) {
	id := s.info.ID
	switch st := s.Info().State; st {
	case Running:
	case Paused:
		return Info{}, fmt.Errorf("sandbox %s is %w", id, ErrAlreadyPaused)
	default:
		return Info{}, fmt.Errorf("%w: sandbox %s is %s", ErrNotRunning, id, st)
	}
	pi, ok := s.inst.(runtime.PausableInstance)
	if !ok || m.caps.Resumer == nil {
		return Info{}, fmt.Errorf("%w: the %s runtime cannot pause sandboxes yet", ErrUnsupported, m.cfg.Driver.Name())
	}
	t0 := time.Now()
	s.setState(Pausing, "")
	if err := s.envd.PrepareSnapshot(ctx); err != nil {
		s.setState(Running, "")
		return Info{}, fmt.Errorf("pause %s: %w", id, err)
	}
	s.closeIdle()
	time.Sleep(quiesceWindow)
	// The guest's exit is expected from here on.
	close(s.watch)
	s.watch = nil
	if err := pi.Pause(ctx); err != nil {
		// The guest runs on; envd needs its /init to leave snapshot mode.
		s.watch = make(chan struct{})
		m.wg.Add(1)
		go m.watchGuest(s, s.inst, s.watch)
		_, ierr := s.envd.Init(context.Background(), m.initRequest(s))
		s.setState(Running, "")
		if errors.Is(err, syscall.ENOSPC) {
			err = fmt.Errorf("%w: %w", ErrNoCapacity, err)
		}
		return Info{}, errors.Join(fmt.Errorf("pause %s: %w", id, err), ierr)
	}
	s.expiry.Stop()
	s.sampler.stop()
	s.sampler = nil
	s.closeIdle()
	s.cutGuestTraffic()
	if err := m.cfg.Net.Release(s.slot); err != nil {
		m.log.Error("release network slot after pause", "sandbox", id, "err", err)
	}
	s.slot = nil
	if err := m.writeRecord(s, 0, -1, true); err != nil {
		m.log.Error("record the paused sandbox", "sandbox", id, "err", err)
	}
	s.infoMu.Lock()
	s.info.State, s.info.HostAddress, s.info.ExpiresAt = Paused, "", time.Time{}
	s.infoMu.Unlock()
	m.log.Info("sandbox paused", "sandbox", id, "took", time.Since(t0).Round(time.Millisecond))
	return s.Info(), nil
}

func (m *Manager) initRequest(s *Sandbox) envdclient.InitRequest {
	r := s.info.Request
	user := ""
	if mf, _, err := m.Image(r.Template); err == nil {
		user = mf.DefaultUser
	}
	return envdclient.InitRequest{AccessToken: r.AccessToken, EnvVars: r.EnvVars, DefaultUser: user, Timestamp: time.Now().UTC(), CurrentToken: s.frozenToken}
}

// Resume brings a paused sandbox back; on a running one it only extends
// the timeout when one is given.
func (m *Manager) Resume(ctx context.Context, id string, timeout time.Duration) (Info, error) {
	s, err := m.get(id)
	if err != nil {
		return Info{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return m.resumeLocked(ctx, s, timeout)
}

func (m *Manager) resumeLocked(ctx context.Context, s *Sandbox, timeout time.Duration) (Info, error) {
	id := s.info.ID
	if timeout == 0 {
		timeout = s.info.Timeout
	}
	switch st := s.Info().State; st {
	case Running:
		if timeout > 0 {
			m.armExpiry(s, timeout)
		}
		return s.Info(), nil
	case Paused:
	default:
		return Info{}, fmt.Errorf("%w: sandbox %s is %s", ErrNotRunning, id, st)
	}
	t0 := time.Now()
	s.setState(Resuming, "")
	mf, imgDir, err := m.Image(s.info.Template)
	if err == nil {
		err = m.restore(ctx, s, mf, imgDir, timeout, "")
	}
	if err != nil {
		if s.inst != nil {
			s.inst.Kill()
			s.inst = nil
		}
		if s.slot != nil {
			_ = m.cfg.Net.Release(s.slot)
			s.slot = nil
		}
		s.setState(Paused, "")
		return Info{}, fmt.Errorf("resume %s: %w", id, err)
	}
	m.log.Info("sandbox resumed", "sandbox", id, "took", time.Since(t0).Round(time.Millisecond))
	return s.Info(), nil
}

// restore resumes s from its directory, or, with snapshotDir, first makes
// that directory a clone of the snapshot.
func (m *Manager) restore(ctx context.Context, s *Sandbox, mf *guestimage.Manifest, imgDir string, timeout time.Duration, snapshotDir string) error {
	if err := m.acquireSlot(s); err != nil {
		return err
	}
	spec := m.spec(s, mf, imgDir)
	if snapshotDir != "" {
		if err := m.caps.Snapshotter.PrepareClone(ctx, snapshotDir, spec); err != nil {
			return err
		}
	}
	inst, err := m.caps.Resumer.Resume(ctx, spec)
	if err != nil {
		return err
	}
	return m.bringUp(ctx, s, inst, timeout)
}

// Metrics returns the latest samples of a running sandbox.
func (m *Manager) Metrics(id string) ([]Metrics, error) {
	s, err := m.get(id)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sampler == nil {
		return nil, fmt.Errorf("%w: sandbox %s is %s", ErrNotRunning, id, s.Info().State)
	}
	recent := s.sampler.snapshot()
	if len(recent) == 0 {
		s.sampler.sample(context.Background(), s)
		recent = s.sampler.snapshot()
	}
	return recent, nil
}

// Committed is what running sandboxes hold of the host.
func (m *Manager) Committed() (vcpus, memMiB int) {
	for _, i := range m.List() {
		if i.State == Creating || i.State == Running {
			vcpus += i.VCPUs
			memMiB += i.MemoryMiB
		}
	}
	return
}

// closePauseTimeout bounds each pause Close makes.
const closePauseTimeout = 2 * time.Minute

// Close stops the manager and waits for background work. Sandboxes are
// kept for the next run (an agent restart or upgrade must not lose them):
// running ones are paused, paused ones stay; a sandbox that cannot be
// paused (still booting, or its pause failed) is destroyed. With
// Config.DestroyOnClose every sandbox is destroyed.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	ids := slices.Collect(maps.Keys(m.boxes))
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !m.cfg.DestroyOnClose && m.keepAtClose(id) {
				return
			}
			_ = m.Destroy(id)
		}()
	}
	wg.Wait()
	m.wg.Wait()
	if r := m.caps.Reclaimer; r != nil {
		if err := r.Reclaim(m.cfg.StateDir); err != nil {
			m.log.Error("clean up runtime state", "err", err)
		}
	}
}

// keepAtClose pauses sandbox id if it runs and says whether it is paused.
func (m *Manager) keepAtClose(id string) bool {
	s, err := m.get(id)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st := s.Info().State; st {
	case Paused:
		return true
	case Running:
		ctx, cancel := context.WithTimeout(context.Background(), closePauseTimeout)
		defer cancel()
		if _, err := m.pauseLocked(ctx, s); err != nil {
			m.log.Error("could not pause a sandbox at shutdown: destroying it", "sandbox", id, "err", err)
			return false
		}
		return true
	default:
		m.log.Warn("destroying a sandbox that is neither running nor paused at shutdown", "sandbox", id, "state", st)
		return false
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unavailable"
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}
