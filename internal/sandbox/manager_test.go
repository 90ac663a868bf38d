package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/envdapi"
	"git.omukk.dev/wrenn/sandbox/internal/runtime"
	"git.omukk.dev/wrenn/sandbox/internal/waitfor"
)

func TestCreateRunsTheGuestAndReportsEnvdsVersion(t *testing.T) {
	h := newHarness(t)
	info := h.create(t, "sb1", nil)
	if info.State != Running || info.Runtime != "fake/none" || info.HostAddress == "" {
		t.Fatalf("created %+v", info)
	}
	if info.EnvdVersion != envdapi.Version {
		t.Errorf("envd version %q, want what envd answered: %q", info.EnvdVersion, envdapi.Version)
	}
	if !info.ExpiresAt.Equal(h.clock.Now().Add(time.Minute)) {
		t.Errorf("expires at %s, want a minute from %s", info.ExpiresAt, h.clock.Now())
	}
	h.envdAnswers(t, "sb1")
	if _, err := h.m.Create(context.Background(), Request{ID: "sb1", Template: "tpl"}); !errors.Is(err, ErrAlreadyExists) {
		t.Errorf("a second sandbox sb1: %v", err)
	}
	if err := h.m.Destroy("sb1"); err != nil {
		t.Fatal(err)
	}
	h.assertNothingHeld(t)
}

// Whatever step of a create fails, nothing it took is kept and the ID can
// be used again.
func TestFailedCreateReleasesEverything(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(h *harness) Request
		want  string
	}{
		{"the driver cannot start", func(h *harness) Request {
			h.drv.failStart = errors.New("no VMM")
			return Request{}
		}, "no VMM"},
		{"the guest dies while booting", func(h *harness) Request {
			h.drv.dieBeforeReady = true
			return Request{}
		}, "the guest exited before envd became ready"},
		{"envd refuses its /init", func(h *harness) Request {
			return Request{Template: "nobody-image"}
		}, "no-such-user-here"},
		{"no network slot", func(h *harness) Request {
			h.slots.full = true
			return Request{}
		}, "network slots are in use"},
		{"timeout beyond the limit", func(h *harness) Request {
			return Request{Timeout: 8 * 24 * time.Hour}
		}, "allowed is 1s to 7 days"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			r := tc.setup(h)
			r.ID = "doomed"
			if r.Template == "" {
				r.Template = "tpl"
			}
			if _, err := h.m.Create(context.Background(), r); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("create: %v, want an error saying %q", err, tc.want)
			}
			if list := h.m.List(); len(list) != 0 {
				t.Errorf("the failed sandbox is listed: %+v", list)
			}
			h.assertNothingHeld(t)
			h.drv.failStart, h.drv.dieBeforeReady, h.slots.full = nil, false, false
			h.create(t, "doomed", nil)
		})
	}
}

// A pause that fails leaves the sandbox running: envd out of its snapshot
// mode, its slot and its guest watcher in place.
func TestFailedPauseKeepsTheSandboxRunning(t *testing.T) {
	h := newHarness(t)
	before := h.create(t, "p1", nil)
	h.drv.failPause = fmt.Errorf("write the memory: %w", syscall.ENOSPC)
	if _, err := h.m.Pause(context.Background(), "p1"); !errors.Is(err, ErrNoCapacity) {
		t.Fatalf("pause on a full disk: %v, want a capacity error", err)
	}
	after := h.info(t, "p1")
	if after.State != Running || after.HostAddress != before.HostAddress || after.ExpiresAt != before.ExpiresAt {
		t.Fatalf("after the failed pause: %+v", after)
	}
	if h.slots.inUse() != 1 {
		t.Errorf("slots held: %d", h.slots.inUse())
	}
	h.envdAnswers(t, "p1")
	// The watcher is back: the guest's death is noticed.
	h.drv.guest("p1").exit(errors.New("gone"))
	waitfor.True(t, 10*time.Second, "the dead guest noticed", func() bool { return h.info(t, "p1").State == Error })

	// With room, pause and resume work, and keep envd's state.
	h.drv.failPause = nil
	h.create(t, "p2", func(r *Request) { r.EnvVars = map[string]string{"KEPT": "yes"} })
	if info, err := h.m.Pause(context.Background(), "p2"); err != nil || info.State != Paused || info.HostAddress != "" {
		t.Fatalf("pause: %+v %v", info, err)
	}
	if h.slots.inUse() != 0 {
		t.Errorf("a paused sandbox holds a slot")
	}
	if _, err := h.m.Pause(context.Background(), "p2"); !errors.Is(err, ErrAlreadyPaused) {
		t.Errorf("pausing twice: %v", err)
	}
	info, err := h.m.Resume(context.Background(), "p2", 0)
	if err != nil || info.State != Running {
		t.Fatalf("resume: %+v %v", info, err)
	}
	h.envdAnswers(t, "p2")
}

// A timeout set before the timer fires moves the expiry; the timer then
// acts at the new time: destroying, or pausing when asked to.
func TestExpiry(t *testing.T) {
	h := newHarness(t)
	h.create(t, "e1", func(r *Request) { r.Timeout = 10 * time.Second })
	h.create(t, "e2", func(r *Request) { r.Timeout = 10 * time.Second; r.OnTimeout = OnTimeoutPause })
	h.clock.advance(9 * time.Second)
	if _, err := h.m.SetTimeout("e1", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	h.clock.advance(time.Second)
	h.clock.settle()
	if st := h.info(t, "e1").State; st != Running {
		t.Fatalf("e1 after its first timeout, extended: %s", st)
	}
	if st := h.info(t, "e2").State; st != Paused {
		t.Fatalf("e2 after its timeout (pause): %s", st)
	}
	h.clock.advance(19 * time.Second)
	h.clock.settle()
	if _, err := h.m.Get("e1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("e1 after its extended timeout: %v", err)
	}
	// A paused sandbox does not expire; resumed, it counts again.
	h.clock.advance(time.Hour)
	h.clock.settle()
	if _, err := h.m.Resume(context.Background(), "e2", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	h.clock.advance(5 * time.Second)
	h.clock.settle()
	if st := h.info(t, "e2").State; st != Paused {
		t.Fatalf("e2 after its timeout since resuming: %s", st)
	}
}

// What the manager does on its own (a timeout's pause or destroy, a
// guest's death) is reported once it is done; what it is asked to do is
// not (the asker knows).
func TestOwnChangesAreReported(t *testing.T) {
	h := newHarness(t)
	h.create(t, "kill", func(r *Request) { r.Timeout = 10 * time.Second })
	h.create(t, "pause", func(r *Request) { r.Timeout = 10 * time.Second; r.OnTimeout = OnTimeoutPause })
	h.create(t, "asked", func(r *Request) { r.Timeout = time.Hour })
	h.create(t, "dies", func(r *Request) { r.Timeout = time.Hour })
	if _, err := h.m.Pause(context.Background(), "asked"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Resume(context.Background(), "asked", time.Hour); err != nil {
		t.Fatal(err)
	}
	h.clock.advance(10 * time.Second)
	h.clock.settle()
	h.drv.guest("dies").exit(errors.New("killed"))
	waitfor.True(t, 10*time.Second, "the dead guest to be reported", func() bool {
		h.changedMu.Lock()
		defer h.changedMu.Unlock()
		return slices.Contains(h.changed, "dies error")
	})
	if err := h.m.Destroy("asked"); err != nil {
		t.Fatal(err)
	}
	h.changedMu.Lock()
	got := slices.Sorted(slices.Values(h.changed))
	h.changedMu.Unlock()
	if want := []string{"dies error", "kill gone", "pause paused"}; !slices.Equal(got, want) {
		t.Errorf("reported %q, want %q", got, want)
	}
}

// The timer firing and a client setting a new timeout at the same moment:
// either the new timeout comes first and stands, or the sandbox is gone
// and the client is told so; never a timeout accepted for a sandbox that
// is then destroyed.
func TestExpiryRacesANewTimeout(t *testing.T) {
	h := newHarness(t)
	outcomes := map[string]int{}
	for i := range 20 {
		id := fmt.Sprintf("race%d", i)
		h.create(t, id, func(r *Request) { r.Timeout = 10 * time.Second })
		// Both wait for the sandbox, then either may have it first.
		sb, _ := h.m.Get(id)
		sb.mu.Lock()
		h.clock.advance(10 * time.Second)
		var setErr error
		var set Info
		setDone := make(chan struct{})
		go func() {
			defer close(setDone)
			set, setErr = h.m.SetTimeout(id, time.Hour)
		}()
		waitfor.True(t, 10*time.Second, "the timer and the new timeout to wait for the sandbox", func() bool {
			return waitingForLock("(*Manager).expire") && waitingForLock("(*Manager).SetTimeout")
		})
		sb.mu.Unlock()
		<-setDone
		h.clock.settle()
		s, getErr := h.m.Get(id)
		switch {
		case setErr == nil:
			if getErr != nil {
				t.Fatalf("%s: the new timeout was accepted, then the sandbox expired: %v", id, getErr)
			}
			if got := s.Info(); got.State != Running || !got.ExpiresAt.Equal(set.ExpiresAt) {
				t.Fatalf("%s: after the accepted timeout: %+v", id, got)
			}
			outcomes["extended"]++
		case errors.Is(setErr, ErrNotRunning) || errors.Is(setErr, ErrNotFound):
			if getErr == nil {
				t.Fatalf("%s: the timeout was refused (%v) but the sandbox is %s", id, setErr, s.Info().State)
			}
			outcomes["expired"]++
		default:
			t.Fatalf("%s: set timeout: %v", id, setErr)
		}
		// An extended sandbox still expires, at its new time.
		h.clock.advance(time.Hour)
		h.clock.settle()
		if _, err := h.m.Get(id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s: an hour past its timeout: %v", id, err)
		}
	}
	t.Logf("outcomes: %v", outcomes)
}

// waitingForLock tells whether a goroutine in fn waits for a mutex.
func waitingForLock(fn string) bool {
	buf := make([]byte, 1<<20)
	buf = buf[:goruntime.Stack(buf, true)]
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "sync.(*Mutex).Lock") && strings.Contains(g, "sandbox."+fn+"(") {
			return true
		}
	}
	return false
}

// A guest that dies on its own puts its sandbox in the error state with
// everything released; the sandbox can then only be destroyed.
func TestGuestDeathReleasesEverything(t *testing.T) {
	h := newHarness(t)
	h.create(t, "d1", nil)
	h.drv.guest("d1").exit(errors.New("out of memory"))
	waitfor.True(t, 10*time.Second, "the sandbox to go to error", func() bool { return h.info(t, "d1").State == Error })
	info := h.info(t, "d1")
	if !strings.Contains(info.Err, "exited unexpectedly: out of memory") {
		t.Errorf("error %q", info.Err)
	}
	if h.slots.inUse() != 0 || h.drv.unreleased() != 0 {
		t.Errorf("after the death: %d slots held, %d guests unreleased", h.slots.inUse(), h.drv.unreleased())
	}
	if _, err := os.Stat(filepath.Join(h.state, "sandboxes", "d1")); !os.IsNotExist(err) {
		t.Errorf("the dead sandbox's directory: %v", err)
	}
	s, _ := h.m.Get("d1")
	if _, err := s.Envd(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("envd of a dead sandbox: %v", err)
	}
	if _, err := h.m.Pause(context.Background(), "d1"); !errors.Is(err, ErrNotRunning) {
		t.Errorf("pause a dead sandbox: %v", err)
	}
	if _, err := h.m.SetTimeout("d1", time.Minute); !errors.Is(err, ErrNotRunning) {
		t.Errorf("set the timeout of a dead sandbox: %v", err)
	}
	if _, _, _, err := h.m.GuestEndpoint("d1"); !errors.Is(err, ErrNotRunning) {
		t.Errorf("proxy into a dead sandbox: %v", err)
	}
	if err := h.m.Destroy("d1"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Get("d1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after destroy: %v", err)
	}
}

// Many clients at once on one sandbox (pause, resume, timeouts, metrics,
// the proxy's endpoint, reads, and a destroy in the middle): every answer
// is one a client may get, and nothing is left once it is gone. Run with
// -race.
func TestConcurrentOperationsOnOneSandbox(t *testing.T) {
	h := newHarness(t)
	h.create(t, "busy", func(r *Request) { r.Timeout = time.Hour })
	ctx := context.Background()
	ops := []func() error{
		func() error { _, err := h.m.Pause(ctx, "busy"); return err },
		func() error { _, err := h.m.Resume(ctx, "busy", 0); return err },
		func() error { _, err := h.m.Resume(ctx, "busy", 30*time.Minute); return err },
		func() error { _, err := h.m.SetTimeout("busy", time.Duration(1+rand.IntN(60))*time.Minute); return err },
		func() error { _, err := h.m.Metrics("busy"); return err },
		func() error { _, _, _, err := h.m.GuestEndpoint("busy"); return err },
		func() error {
			s, err := h.m.Get("busy")
			if err != nil {
				return err
			}
			cl, err := s.Envd()
			if err != nil {
				return err
			}
			if _, err := cl.Metrics(ctx); err != nil && s.Info().State == Running {
				// envd of a sandbox that stays running answers; one that
				// is being paused meanwhile may not.
				if s.Info().State == Running {
					return err
				}
			}
			return nil
		},
		func() error { h.m.List(); h.m.Committed(); return nil },
		func() error { h.clock.advance(time.Second); return nil },
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var unexpected []error
	destroyed := make(chan struct{})
	for w := range 6 {
		wg.Go(func() {
			for i := range 20 {
				if w == 0 && i == 12 {
					if err := h.m.Destroy("busy"); err != nil {
						mu.Lock()
						unexpected = append(unexpected, fmt.Errorf("destroy: %w", err))
						mu.Unlock()
					}
					close(destroyed)
					continue
				}
				err := ops[rand.IntN(len(ops))]()
				if err != nil && !errors.Is(err, ErrConflict) && !errors.Is(err, ErrAlreadyPaused) && !errors.Is(err, ErrNotRunning) && !errors.Is(err, ErrNotFound) {
					mu.Lock()
					unexpected = append(unexpected, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	<-destroyed
	h.clock.settle()
	for _, err := range unexpected {
		t.Error(err)
	}
	if _, err := h.m.Get("busy"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after the destroy: %v", err)
	}
	h.assertNothingHeld(t)
}

// startOnly is a driver that starts guests and can do nothing else.
type startOnly struct{ runtime.Driver }

// snapshotsOnly can make snapshots but not resume them.
type snapshotsOnly struct{ runtime.Driver }

func (snapshotsOnly) SaveSnapshot(context.Context, string, string) error       { return nil }
func (snapshotsOnly) PrepareClone(context.Context, string, runtime.Spec) error { return nil }

// What a driver can do is found once; a set that cannot work is refused
// when the manager starts, and what a driver lacks is refused per request.
func TestDriverCapabilities(t *testing.T) {
	slots := &fakeSlots{}
	cfg := Config{StateDir: t.TempDir(), ImagesDir: t.TempDir(), Net: slots, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), DestroyOnClose: true}
	cfg.Driver = snapshotsOnly{&fakeDriver{slots: slots}}
	if _, err := NewManager(cfg); err == nil || !strings.Contains(err.Error(), "cannot resume") {
		t.Fatalf("a driver that snapshots but cannot resume: %v", err)
	}

	drv := &fakeDriver{slots: slots}
	cfg.Driver = startOnly{drv}
	writeImage(t, cfg.ImagesDir, "tpl", "")
	m, err := NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	if _, err := m.Create(ctx, Request{ID: "c1", Template: "tpl", OnTimeout: OnTimeoutPause}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("pause on timeout without pause: %v", err)
	}
	if _, err := m.Create(ctx, Request{ID: "c1", Template: "tpl", AccessToken: "t"}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Pause(ctx, "c1"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("pause: %v", err)
	}
	if _, err := m.CreateSnapshot(ctx, "c1", "snap"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("snapshot: %v", err)
	}
	if st := m.List()[0].State; st != Running {
		t.Errorf("after the refused requests: %s", st)
	}
}

// A sandbox's log directory is its own, running or paused; once it is
// destroyed, its followers are told it is gone and a new read is not found.
func TestLogDirFollowsTheSandbox(t *testing.T) {
	h := newHarness(t)
	h.create(t, "sb1", nil)
	dir, gone, err := h.m.LogDir("sb1")
	if err != nil || gone() {
		t.Fatalf("LogDir of a running sandbox: %q %v", dir, err)
	}
	if want := filepath.Join(h.m.sandboxesDir(), "sb1"); dir != want {
		t.Errorf("log directory %s, want %s", dir, want)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.m.LogDir("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("LogDir of no sandbox: %v", err)
	}
	if err := h.m.Destroy("sb1"); err != nil {
		t.Fatal(err)
	}
	if !gone() {
		t.Error("a follower of a destroyed sandbox is not told it is gone")
	}
	if _, _, err := h.m.LogDir("sb1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("LogDir of a destroyed sandbox: %v", err)
	}
	h.assertNothingHeld(t)
}
