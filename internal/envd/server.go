// Package envd assembles the in-sandbox daemon: the process and filesystem
// Connect services, the HTTP endpoints (/health, /init, /files, /envs,
// /metrics, /snapshot/prepare), access-token auth, CORS, connection tracking
// for snapshots, and loopback port forwarding.
package envd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/rs/cors"
	"golang.org/x/sys/unix"

	"git.omukk.dev/wrenn/sandbox/internal/envd/envstate"
	"git.omukk.dev/wrenn/sandbox/internal/envd/files"
	"git.omukk.dev/wrenn/sandbox/internal/envd/filesystemsvc"
	"git.omukk.dev/wrenn/sandbox/internal/envd/osuser"
	"git.omukk.dev/wrenn/sandbox/internal/envd/portfwd"
	"git.omukk.dev/wrenn/sandbox/internal/envd/processsvc"
	"git.omukk.dev/wrenn/sandbox/internal/envdapi"
	"git.omukk.dev/wrenn/sandbox/proto/envd/filesystem/filesystemconnect"
	"git.omukk.dev/wrenn/sandbox/proto/envd/process/processconnect"
)

// maxInitBody bounds POST /init; real bodies are a few KB.
const maxInitBody = 1 << 20

// Config says how envd runs.
type Config struct {
	// Local runs on a developer's host rather than as a sandbox's daemon:
	// the host clock is never touched and the default user is envd's own.
	Local bool
	// ForwardAddr is the address loopback-only services are forwarded to;
	// invalid disables forwarding.
	ForwardAddr netip.Addr
	SandboxID   string
	TemplateID  string
	Log         *slog.Logger
}

// Server is one envd instance.
type Server struct {
	cfg   Config
	log   *slog.Logger
	state *envstate.State
	procs *processsvc.Service
	fs    *filesystemsvc.Service
	ports *portfwd.Forwarder
	conns *connTracker
	cpu   cpuSampler
	http  *http.Server

	initMu       sync.Mutex
	snapshotting bool // /snapshot/prepare ran; the next /init is a restore
}

// New builds a server; Serve starts it.
func New(cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	defaultUser := "root"
	var self *osuser.User
	if cfg.Local {
		var err error
		if self, err = osuser.Current(); err != nil {
			return nil, err
		}
		if home := os.Getenv("HOME"); filepath.IsAbs(home) {
			self.Home = home
		}
		defaultUser = self.Name
	}
	system := map[string]string{"E2B_SANDBOX": "true", "WRENN_SANDBOX": "true"}
	if cfg.SandboxID != "" {
		system["E2B_SANDBOX_ID"] = cfg.SandboxID
	}
	if cfg.TemplateID != "" {
		system["E2B_TEMPLATE_ID"] = cfg.TemplateID
	}
	s := &Server{cfg: cfg, log: cfg.Log, state: envstate.New(defaultUser, system), conns: newConnTracker()}
	if self != nil {
		s.state.SetLocalUser(self)
	}
	s.procs = processsvc.New(s.state, s.log)
	s.fs = filesystemsvc.New(s.state)
	if cfg.ForwardAddr.IsValid() {
		s.ports = portfwd.New(cfg.ForwardAddr, time.Second, s.log)
	}

	mux := http.NewServeMux()
	mux.Handle(processconnect.NewProcessHandler(s.procs))
	mux.Handle(filesystemconnect.NewFilesystemHandler(s.fs))
	mux.HandleFunc("GET /health", s.health)
	mux.HandleFunc("POST /init", s.init)
	mux.HandleFunc("GET /envs", s.envs)
	mux.HandleFunc("GET /metrics", s.metrics)
	mux.HandleFunc("POST /snapshot/prepare", s.snapshotPrepare)
	mux.Handle("/files", &files.Handler{State: s.state, Log: s.log})
	handler := cors.New(cors.Options{
		AllowOriginFunc:  func(string) bool { return true },
		AllowedMethods:   []string{"HEAD", "GET", "POST", "PUT", "PATCH", "DELETE"},
		AllowedHeaders:   []string{"*"},
		ExposedHeaders:   []string{"Connect-Protocol-Version", "Connect-Content-Encoding", "Grpc-Status", "Grpc-Message", "Location", "Cache-Control", "X-Content-Type-Options", envdapi.VersionHeader},
		AllowCredentials: false,
		MaxAge:           7200,
	}).Handler(s.requireToken(mux))

	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	s.http = &http.Server{
		Handler:           handler,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		ConnState:         s.conns.hook,
		ConnContext:       withConn,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if s.ports != nil {
		s.ports.Start()
	}
	s.log.Info("envd listening", "addr", ln.Addr().String(), "version", envdapi.Version, "local", s.cfg.Local, "forward_addr", s.cfg.ForwardAddr)
	err := s.http.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, kills the processes envd started, stops
// watchers and forwards, and waits for their goroutines.
func (s *Server) Shutdown(ctx context.Context) error {
	s.procs.Close() // ends process streams so Shutdown need not wait for them
	s.fs.Close()
	if s.ports != nil {
		s.ports.Stop()
	}
	err := s.http.Shutdown(ctx)
	if err != nil {
		s.http.Close()
	}
	return err
}

// publicRoute reports whether a route skips the access-token check: /files
// authorises itself (token or signature) and /init authenticates itself.
func publicRoute(r *http.Request) bool {
	switch {
	case r.URL.Path == "/health" && r.Method == http.MethodGet:
		return true
	case r.URL.Path == "/init" && r.Method == http.MethodPost:
		return true
	case r.URL.Path == "/files" && (r.Method == http.MethodGet || r.Method == http.MethodPost || r.Method == http.MethodHead):
		return true
	}
	return false
}

func (s *Server) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if publicRoute(r) || !s.state.HasToken() {
			next.ServeHTTP(w, r)
			return
		}
		got := r.Header.Get("X-Access-Token")
		if got == "" || !s.state.TokenMatches(got) {
			s.log.Warn("unauthorized request", "path", r.URL.Path, "remote", r.RemoteAddr)
			files.WriteError(w, http.StatusUnauthorized, "unauthorized access, please provide a valid access token or method signing if supported")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) envs(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.state.Env())
}

func (s *Server) metrics(w http.ResponseWriter, _ *http.Request) {
	m, err := s.cpu.collect()
	if err != nil {
		s.log.Warn("metrics failed", "err", err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(m)
}

func (s *Server) init(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxInitBody))
	if err != nil {
		http.Error(w, fmt.Sprintf("read body: %v", err), http.StatusBadRequest)
		return
	}
	var req envstate.InitRequest
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, fmt.Sprintf("invalid JSON body: %v", err), http.StatusBadRequest)
			return
		}
	}
	s.initMu.Lock()
	defer s.initMu.Unlock()
	if !s.state.Authorize(&req, r.Header.Get("X-Access-Token")) {
		s.log.Warn("rejected /init with a wrong access token", "remote", r.RemoteAddr)
		files.WriteError(w, http.StatusUnauthorized, "access token does not match the one already set")
		return
	}
	if req.DefaultUser != "" {
		if _, err := osuser.Lookup(req.DefaultUser); err != nil {
			http.Error(w, fmt.Sprintf("defaultUser: %v", err), http.StatusBadRequest)
			return
		}
	}
	if s.state.Apply(&req) && req.Timestamp != nil && !s.cfg.Local {
		if err := syncClock(*req.Timestamp); err != nil {
			s.log.Warn("could not set the clock", "err", err)
		}
	}
	if s.snapshotting {
		// A restore: connections from before the snapshot lead nowhere now.
		closed := s.conns.closePreSnapshot(connFrom(r.Context()))
		s.http.SetKeepAlivesEnabled(true)
		if s.ports != nil {
			s.ports.Restart()
		}
		s.snapshotting = false
		s.log.Info("resumed from snapshot", "closed_conns", closed)
	}
	w.Header().Set(envdapi.VersionHeader, envdapi.Version)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// syncClock sets the wall clock to the host's time when it lags by more than
// 50 ms or leads by more than 5 s (after a restore, the guest clock is stale).
func syncClock(host time.Time) error {
	diff := time.Until(host)
	if diff < 50*time.Millisecond && diff > -5*time.Second {
		return nil
	}
	ts := unix.NsecToTimespec(host.UnixNano())
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		return fmt.Errorf("set clock to %s: %w", host.Format(time.RFC3339Nano), err)
	}
	return nil
}

// snapshotPrepare quiesces envd before its VM is paused: no keep-alives, no
// idle connections, no forwards, garbage collected.
func (s *Server) snapshotPrepare(w http.ResponseWriter, _ *http.Request) {
	s.initMu.Lock()
	defer s.initMu.Unlock()
	s.http.SetKeepAlivesEnabled(false)
	idle, marked := s.conns.markSnapshot()
	if s.ports != nil {
		s.ports.Stop()
	}
	s.snapshotting = true
	runtime.GC()
	debug.FreeOSMemory()
	s.log.Info("prepared for snapshot", "closed_idle_conns", idle, "open_conns", marked)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}
