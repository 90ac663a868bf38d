// Package sandbox is the agent's sandbox manager: the state machine of each
// sandbox, per-sandbox serialisation of operations, timeouts and the reaper,
// metrics sampling, and the release of every host resource a sandbox holds
// on every path (failed creates, guests that die, destroys, agent restarts).
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"sync"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/egress"
	"git.omukk.dev/wrenn/sandbox/internal/envdclient"
	"git.omukk.dev/wrenn/sandbox/internal/network"
	"git.omukk.dev/wrenn/sandbox/internal/runtime"
	"git.omukk.dev/wrenn/sandbox/pkg/fault"
)

// State of a sandbox.
type State string

const (
	Creating State = "creating"
	Running  State = "running"
	Pausing  State = "pausing"
	Paused   State = "paused"
	Resuming State = "resuming"
	Stopping State = "stopping"
	Stopped  State = "stopped"
	Error    State = "error"
)

// TimeoutAction is what the reaper does with an expired sandbox.
type TimeoutAction string

const (
	OnTimeoutDestroy TimeoutAction = "destroy"
	OnTimeoutPause   TimeoutAction = "pause"
)

// Request is what a sandbox is created from.
type Request struct {
	ID            string
	Template      string
	VCPUs         int
	MemoryMiB     int
	DiskMiB       int
	Timeout       time.Duration
	EnvVars       map[string]string
	AllowInternet bool
	Metadata      map[string]string
	AccessToken   string
	OnTimeout     TimeoutAction
	Snapshot      string // start from this snapshot template
	// Network is the sandbox's own egress policy, enforced in its slot on
	// every bring-up (create, resume, clone).
	Network egress.Policy
}

// Info is a snapshot of a sandbox's public state.
type Info struct {
	Request
	State       State
	Err         string
	CreatedAt   time.Time
	ExpiresAt   time.Time
	Runtime     string
	EnvdVersion string
	HostAddress string
	// GuestFault is the last thing the guest did that a well-behaved envd
	// never does (an answer over its size limit); it was refused.
	GuestFault string
}

// Sandbox is one sandbox. mu serialises operations on it; fields read by
// List and Get are guarded by infoMu so they never wait on an operation.
type Sandbox struct {
	mu sync.Mutex

	// frozenToken is envd's token in the snapshot a clone starts from,
	// until the clone's first /init replaces it.
	frozenToken string
	// guestHTTP carries proxied requests into the guest (any port); it is
	// replaced at every bring-up and written with both mu and infoMu held.
	guestHTTP *http.Transport
	// guestCtx ends, cutting proxied requests, when the guest stops or
	// pauses; set with guestHTTP.
	guestCtx    context.Context
	guestCancel context.CancelFunc

	infoMu sync.RWMutex
	info   Info

	inst    runtime.Instance
	slot    *network.Slot
	dir     string
	envd    *envdclient.Client
	expiry  timer
	sampler *sampler
	watch   chan struct{} // closed to stop watching the guest
}

// Info returns a copy of the sandbox's state.
func (s *Sandbox) Info() Info {
	s.infoMu.RLock()
	defer s.infoMu.RUnlock()
	out := s.info
	return out
}

func (s *Sandbox) setState(st State, errMsg string) {
	s.infoMu.Lock()
	s.info.State, s.info.Err = st, errMsg
	s.infoMu.Unlock()
}

// Envd is the client of the sandbox's envd, or an error when it is not running.
func (s *Sandbox) Envd() (*envdclient.Client, error) {
	s.infoMu.RLock()
	st := s.info.State
	s.infoMu.RUnlock()
	if st != Running {
		return nil, fmt.Errorf("%w: sandbox %s is %s", ErrNotRunning, s.info.ID, st)
	}
	return s.envd, nil
}

// The manager's errors, each of a fault kind, which is what crosses the
// agent's API.
var (
	ErrNotFound      = fault.New(fault.NotFound, "sandbox not found")
	ErrAlreadyExists = fault.New(fault.Exists, "sandbox already exists")
	ErrInvalid       = fault.New(fault.Invalid, "invalid request")
	ErrNotRunning    = fault.New(fault.Conflict, "sandbox is not running")
	ErrNoCapacity    = fault.New(fault.NoCapacity, "no capacity")
	ErrUnsupported   = fault.New(fault.Unsupported, "not supported")
	ErrConflict      = fault.New(fault.Conflict, "conflict")
	ErrAlreadyPaused = fault.New(fault.Exists, "already paused")
)

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidID reports whether id can name a sandbox (and its cgroup, files, hostname).
func ValidID(id string) bool { return idPattern.MatchString(id) }

// Metrics sample of one sandbox.
type Metrics struct {
	At         time.Time
	CPUUsedPct float32
	CPUCount   uint32
	MemUsed    uint64
	MemTotal   uint64
	MemCache   uint64 // the guest's page cache
	DiskUsed   uint64
	DiskTotal  uint64
	HostRSS    uint64
}

// sampler polls envd's /metrics and the VMM's host memory while the
// sandbox runs; it is stopped before the sandbox stops or pauses.
type sampler struct {
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	recent []Metrics
}

const samplesKept = 60

func startSampler(s *Sandbox, every time.Duration, log *slog.Logger) *sampler {
	ctx, cancel := context.WithCancel(context.Background())
	sm := &sampler{cancel: cancel, done: make(chan struct{}), log: log}
	go func() {
		defer close(sm.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			sm.sample(ctx, s)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return sm
}

func (sm *sampler) sample(ctx context.Context, s *Sandbox) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := s.envd.Metrics(rctx)
	if errors.Is(err, envdclient.ErrMisbehaving) {
		s.noteFault(sm.log, err)
	}
	if err != nil {
		return
	}
	sample := Metrics{At: time.Now(), CPUUsedPct: m.CPUUsedPct, CPUCount: m.CPUCount, MemUsed: m.MemUsed, MemTotal: m.MemTotal, MemCache: m.MemCache, DiskUsed: m.DiskUsed, DiskTotal: m.DiskTotal, HostRSS: s.inst.HostRSS()}
	sm.mu.Lock()
	sm.recent = append(sm.recent, sample)
	if len(sm.recent) > samplesKept {
		sm.recent = sm.recent[len(sm.recent)-samplesKept:]
	}
	sm.mu.Unlock()
}

func (sm *sampler) stop() {
	sm.cancel()
	<-sm.done
}

func (sm *sampler) snapshot() []Metrics {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return append([]Metrics(nil), sm.recent...)
}

// noteFault marks the sandbox with what its guest did wrong and logs it
// (the first time it changes): code in a sandbox controls envd, and what
// it answers is refused past its limits, never taken in whole.
func (s *Sandbox) noteFault(log *slog.Logger, err error) {
	s.infoMu.Lock()
	changed := s.info.GuestFault != err.Error()
	s.info.GuestFault = err.Error()
	id := s.info.ID
	s.infoMu.Unlock()
	if changed && log != nil {
		log.Warn("the guest misbehaved; its answer was refused", "sandbox", id, "fault", err.Error())
	}
}
