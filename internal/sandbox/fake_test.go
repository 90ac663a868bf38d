package sandbox

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"git.omukk.dev/wrenn/sandbox/internal/egress"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/envd"
	"git.omukk.dev/wrenn/sandbox/internal/envdapi"
	"git.omukk.dev/wrenn/sandbox/internal/guestimage"
	"git.omukk.dev/wrenn/sandbox/internal/network"
	"git.omukk.dev/wrenn/sandbox/internal/runtime"
)

// The manager's tests run without VMs: a driver whose "guest" is a real
// envd (in its local mode, in this process) serving on a loopback address
// that a fake slot allocator hands out as the slot's host address. What
// the manager does with guests, slots, envd and time is real; only the
// VM and the network namespace are left out.

// fakeClock is a clock the test moves. Timers that come due run in their
// own goroutines, as time.AfterFunc's do; settle waits for them.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	fired  sync.WaitGroup
}

type fakeTimer struct {
	c      *fakeClock
	at     time.Time
	f      func()
	active bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f, active: true}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.active
	t.active = false
	return was
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.active
	t.at, t.active = t.c.now.Add(d), true
	return was
}

// advance moves the clock on by d and fires what came due.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		if t.active && !t.at.After(c.now) {
			t.active = false
			c.fired.Add(1)
			go func() {
				defer c.fired.Done()
				t.f()
			}()
		}
	}
}

// settle waits for the timers fired so far to return.
func (c *fakeClock) settle() { c.fired.Wait() }

// fakeSlots hands out slots whose host address is a loopback address of
// their own with envd's port reserved on it: the guest's envd serves on
// that listener, and releasing the slot closes it, as tearing down a
// namespace cuts the guest off.
type fakeSlots struct {
	mu       sync.Mutex
	next     int
	held     map[int]net.Listener
	full     bool
	acquired int
	released int
	policies map[int]egress.Rules // by slot index, as last set
}

func (f *fakeSlots) Acquire(internet, guestNamespace bool) (*network.Slot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.full {
		return nil, errors.New("all 1 network slots are in use")
	}
	var ln net.Listener
	var addr netip.Addr
	var err error
	for range 20 {
		b := make([]byte, 3)
		rand.Read(b)
		addr = netip.AddrFrom4([4]byte{127, b[0], b[1], b[2] | 1})
		if ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, envdapi.Port).String()); err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	i := f.next
	f.next++
	if f.held == nil {
		f.held = map[int]net.Listener{}
	}
	f.held[i] = ln
	f.acquired++
	return &network.Slot{Index: i, Namespace: fmt.Sprintf("fake-ns-%d", i), GuestHost: addr, Internet: internet}, nil
}

func (f *fakeSlots) SetSandboxEgress(s *network.Slot, r egress.Rules) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.held[s.Index]; !ok {
		return fmt.Errorf("egress policy set on slot %d, which is not held", s.Index)
	}
	if f.policies == nil {
		f.policies = map[int]egress.Rules{}
	}
	f.policies[s.Index] = r
	return nil
}

func (f *fakeSlots) Release(s *network.Slot) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	ln, ok := f.held[s.Index]
	if !ok {
		return fmt.Errorf("slot %d released but not held", s.Index)
	}
	ln.Close()
	delete(f.held, s.Index)
	f.released++
	return nil
}

// listener is the reserved envd listener of the slot with namespace ns.
func (f *fakeSlots) listener(ns string) (net.Listener, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var i int
	if _, err := fmt.Sscanf(ns, "fake-ns-%d", &i); err != nil {
		return nil, err
	}
	ln, ok := f.held[i]
	if !ok {
		return nil, fmt.Errorf("no slot %s", ns)
	}
	return ln, nil
}

func (f *fakeSlots) inUse() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.held)
}

// fakeDriver runs "guests" that are envd servers; its failures are set
// by the test.
type fakeDriver struct {
	slots *fakeSlots

	mu             sync.Mutex
	failStart      error
	failPause      error
	dieBeforeReady bool
	saved          map[string]*envd.Server // paused guests' envd, by sandbox directory
	guests         map[string]*fakeGuest   // the latest guest of each sandbox
	all            []*fakeGuest
}

func (d *fakeDriver) Name() string                  { return "fake" }
func (d *fakeDriver) Accelerator() (string, string) { return "none", "a test driver: no VM" }

func (d *fakeDriver) Start(ctx context.Context, spec runtime.Spec) (runtime.Instance, error) {
	d.mu.Lock()
	fail := d.failStart
	d.mu.Unlock()
	if fail != nil {
		return nil, fail
	}
	srv, err := envd.New(envd.Config{Local: true, SandboxID: spec.SandboxID, TemplateID: spec.TemplateID, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, err
	}
	return d.launch(spec, srv)
}

func (d *fakeDriver) Resume(ctx context.Context, spec runtime.Spec) (runtime.Instance, error) {
	d.mu.Lock()
	srv := d.saved[spec.Dir]
	delete(d.saved, spec.Dir)
	d.mu.Unlock()
	if srv == nil {
		return nil, fmt.Errorf("no paused guest in %s", spec.Dir)
	}
	return d.launch(spec, srv)
}

func (d *fakeDriver) launch(spec runtime.Spec, srv *envd.Server) (*fakeGuest, error) {
	ln, err := d.slots.listener(spec.Namespace)
	if err != nil {
		return nil, err
	}
	g := &fakeGuest{d: d, dir: spec.Dir, srv: srv, ln: ln, done: make(chan struct{})}
	d.mu.Lock()
	die := d.dieBeforeReady
	if d.guests == nil {
		d.guests = map[string]*fakeGuest{}
	}
	d.guests[spec.SandboxID] = g
	d.all = append(d.all, g)
	d.mu.Unlock()
	if die {
		go g.exit(errors.New("the guest crashed while booting"))
		return g, nil
	}
	go srv.Serve(ln)
	return g, nil
}

func (d *fakeDriver) guest(id string) *fakeGuest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.guests[id]
}

// unreleased counts guests whose resources were never given back.
func (d *fakeDriver) unreleased() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, g := range d.all {
		if !g.isReleased() {
			n++
		}
	}
	return n
}

type fakeGuest struct {
	d    *fakeDriver
	dir  string
	srv  *envd.Server
	ln   net.Listener
	done chan struct{}

	mu       sync.Mutex
	once     sync.Once
	err      error
	released bool
}

// exit ends the guest: its envd stops and Done closes.
func (g *fakeGuest) exit(cause error) {
	g.once.Do(func() {
		g.mu.Lock()
		g.err = cause
		g.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.srv.Shutdown(ctx)
		g.ln.Close()
		close(g.done)
	})
}

func (g *fakeGuest) PID() int              { return 0 }
func (g *fakeGuest) Done() <-chan struct{} { return g.done }
func (g *fakeGuest) Console() string       { return filepath.Join(g.dir, "console.log") }
func (g *fakeGuest) HostRSS() uint64       { return 1 << 20 }
func (g *fakeGuest) Kill()                 { g.exit(errors.New("killed")) }

func (g *fakeGuest) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

func (g *fakeGuest) Shutdown(ctx context.Context) error {
	g.exit(nil)
	return nil
}

func (g *fakeGuest) Release() error {
	select {
	case <-g.done:
	default:
		return errors.New("Release of a guest that still runs")
	}
	// A paused guest's state is dropped with the sandbox.
	g.d.mu.Lock()
	saved := g.d.saved[g.dir]
	if saved == g.srv {
		delete(g.d.saved, g.dir)
	}
	g.d.mu.Unlock()
	if saved == g.srv {
		_ = saved.Shutdown(context.Background())
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.released = true
	return nil
}

func (g *fakeGuest) isReleased() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.released
}

// Pause keeps the guest's envd, state and all, for Resume, and stops
// serving; a failure set by the test leaves the guest running.
func (g *fakeGuest) Pause(ctx context.Context) error {
	g.d.mu.Lock()
	fail := g.d.failPause
	g.d.mu.Unlock()
	if fail != nil {
		return fail
	}
	g.once.Do(func() {
		g.ln.Close()
		g.d.mu.Lock()
		if g.d.saved == nil {
			g.d.saved = map[string]*envd.Server{}
		}
		g.d.saved[g.dir] = g.srv
		g.d.mu.Unlock()
		close(g.done)
	})
	g.mu.Lock()
	g.released = true
	g.mu.Unlock()
	return nil
}

var (
	_ runtime.Resumer          = (*fakeDriver)(nil)
	_ runtime.PausableInstance = (*fakeGuest)(nil)
)

// writeImage makes a template directory that passes guestimage.Verify.
func writeImage(t *testing.T, imagesDir, name, defaultUser string) {
	t.Helper()
	dir := filepath.Join(imagesDir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mf := guestimage.Manifest{Name: name, Fingerprint: name + "-fingerprint", DefaultUser: defaultUser, Files: map[string]guestimage.FileEntry{}}
	for _, f := range []string{guestimage.FileKernel, guestimage.FileInitramfs, guestimage.FileRootfs} {
		data := []byte("not really " + f)
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		mf.Files[f] = guestimage.FileEntry{Size: int64(len(data)), Sha256: hex.EncodeToString(sum[:])}
	}
	b, _ := json.Marshal(mf)
	if err := os.WriteFile(filepath.Join(dir, guestimage.FileManifest), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

type harness struct {
	m     *Manager
	drv   *fakeDriver
	slots *fakeSlots
	clock *fakeClock
	state string

	changedMu sync.Mutex
	changed   []string // "id state" for each Changed call
}

// newHarness starts a manager on the fake driver; its cleanup closes the
// manager and checks that nothing is left: no slot, no unreleased guest,
// no sandbox directory.
func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{slots: &fakeSlots{}, clock: newFakeClock(), state: t.TempDir()}
	h.drv = &fakeDriver{slots: h.slots}
	images := t.TempDir()
	writeImage(t, images, "tpl", "")
	writeImage(t, images, "nobody-image", "no-such-user-here")
	m, err := NewManager(Config{
		StateDir: h.state, ImagesDir: images, Driver: h.drv, Net: h.slots,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), ReadyTimeout: 10 * time.Second,
		SampleEvery: time.Hour, DestroyOnClose: true, clock: h.clock,
		Changed: func(id string) {
			state := "gone"
			if s, err := h.m.Get(id); err == nil {
				state = string(s.Info().State)
			}
			h.changedMu.Lock()
			h.changed = append(h.changed, id+" "+state)
			h.changedMu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.m = m
	t.Cleanup(func() {
		m.Close()
		h.clock.settle()
		h.assertNothingHeld(t)
	})
	return h
}

func (h *harness) assertNothingHeld(t *testing.T) {
	t.Helper()
	if n := h.slots.inUse(); n != 0 {
		t.Errorf("%d network slots still held", n)
	}
	if n := h.drv.unreleased(); n != 0 {
		t.Errorf("%d guests never released", n)
	}
	if entries, _ := os.ReadDir(filepath.Join(h.state, "sandboxes")); len(entries) != 0 {
		t.Errorf("sandbox directories left: %v", entries)
	}
}

func (h *harness) create(t *testing.T, id string, mod func(*Request)) Info {
	t.Helper()
	r := Request{ID: id, Template: "tpl", Timeout: time.Minute, AccessToken: "token-" + id}
	if mod != nil {
		mod(&r)
	}
	info, err := h.m.Create(context.Background(), r)
	if err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	return info
}

func (h *harness) info(t *testing.T, id string) Info {
	t.Helper()
	s, err := h.m.Get(id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return s.Info()
}

// envdAnswers checks that the sandbox's envd answers the agent's client
// (which presents the sandbox's token).
func (h *harness) envdAnswers(t *testing.T, id string) {
	t.Helper()
	s, err := h.m.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := s.Envd()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Metrics(context.Background()); err != nil {
		t.Fatalf("envd of %s: %v", id, err)
	}
}
