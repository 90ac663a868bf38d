// Package codeinterp is the code interpreter inside a sandbox: the HTTP API
// that E2B's code-interpreter SDKs call on port 49999 (POST /execute
// streaming NDJSON, and /contexts), served from Jupyter kernels it starts
// itself and speaks to over ZeroMQ (the Jupyter messaging protocol, with a
// pure-Go ZeroMQ). Each context is one kernel process; the default Python
// context starts with the server, which reports healthy once it is ready.
package codeinterp

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/envdapi"
)

// Port is where the SDKs reach the code interpreter in a sandbox.
const Port = 49999

// DefaultCwd is a new context's working directory unless the caller names one.
const DefaultCwd = "/home/user"

// DefaultEnvdURL is the sandbox's envd seen from inside.
var DefaultEnvdURL = "http://127.0.0.1:" + strconv.Itoa(envdapi.Port)

// maxBody bounds a request body (the code to run).
const maxBody = 32 << 20

// Config says how the server runs.
type Config struct {
	Languages Languages
	// DefaultCwd is where contexts run unless created with a cwd.
	DefaultCwd string
	// RunDir holds the kernels' connection files and sockets (private).
	RunDir string
	// Env is the kernels' base environment.
	Env []string
	// EnvdURL is the sandbox's envd: an execution's X-Access-Token is
	// checked against it, and the sandbox's environment variables come
	// from its /envs. Empty runs without either (outside a sandbox).
	EnvdURL      string
	StartTimeout time.Duration
	Log          *slog.Logger
}

// Server is one code interpreter.
type Server struct {
	cfg     Config
	log     *slog.Logger
	startup string // IPython startup file
	envd    *http.Client

	mu       sync.Mutex
	contexts map[string]*codeContext
	defaults map[string]*codeContext // a language's context for calls that name only the language
	closed   bool

	ready    chan struct{}
	readyErr error
}

//go:embed startup.py
var ipythonStartup []byte

// New prepares a server; Start brings up its default Python context.
func New(cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.DefaultCwd == "" {
		cfg.DefaultCwd = DefaultCwd
	}
	if _, ok := cfg.Languages["python"]; !ok {
		return nil, fmt.Errorf("no Python kernel is installed (kernel specs are looked for in %s; Debian's python3-ipykernel has one)", strings.Join(KernelSpecDirs, ", "))
	}
	if err := os.MkdirAll(cfg.RunDir, 0o700); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Log, contexts: map[string]*codeContext{}, defaults: map[string]*codeContext{}, ready: make(chan struct{}),
		envd: &http.Client{Timeout: 10 * time.Second}}
	s.startup = filepath.Join(cfg.RunDir, "ipython-startup.py")
	if err := os.WriteFile(s.startup, ipythonStartup, 0o644); err != nil {
		return nil, fmt.Errorf("IPython startup file: %w", err)
	}
	return s, nil
}

// kernelConfig is how a context's kernel starts.
func (s *Server) kernelConfig(c *codeContext) kernelConfig {
	return kernelConfig{
		Spec: c.spec, Cwd: c.Cwd, Env: s.cfg.Env, RunDir: s.cfg.RunDir, StartTimeout: s.cfg.StartTimeout, Log: s.log.With("context", c.ID),
		// Plain tracebacks, untruncated reprs, and the formatters of
		// startup.py.
		Args: []string{"--InteractiveShell.colors=NoColor", "--PlainTextFormatter.max_seq_length=0", "--IPKernelApp.exec_files=" + s.startup},
	}
}

// Start brings up the default Python context in the background; Ready
// reports when it can run code.
func (s *Server) Start() {
	c := s.newContext("python", s.cfg.DefaultCwd, s.cfg.Languages["python"])
	s.mu.Lock()
	s.contexts[c.ID], s.defaults["python"] = c, c
	s.mu.Unlock()
	_ = c.acquire(context.Background())
	go func() {
		defer c.release()
		_, err := c.ensureKernel(context.Background())
		if err != nil {
			s.log.Error("the default Python context did not start", "err", err)
		}
		s.readyErr = err
		close(s.ready)
	}()
}

// Ready is closed once the default context has started (or failed to:
// see Health).
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Close stops every kernel.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	all := make([]*codeContext, 0, len(s.contexts))
	for _, c := range s.contexts {
		all = append(all, c)
	}
	s.contexts, s.defaults = map[string]*codeContext{}, map[string]*codeContext{}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range all {
		wg.Go(func() { c.remove() })
	}
	wg.Wait()
}

func (c *codeContext) remove() {
	c.mu.Lock()
	c.removed = true
	c.mu.Unlock()
	c.stopKernel(stopNote{"ContextRemoved", "the context was removed while the code ran"})
}

// Handler is the HTTP API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", s.health)
	mux.HandleFunc("POST /execute", s.execute)
	mux.HandleFunc("POST /contexts", s.createContext)
	mux.HandleFunc("GET /contexts", s.listContexts)
	mux.HandleFunc("POST /contexts/{id}/restart", s.restartContext)
	mux.HandleFunc("DELETE /contexts/{id}", s.removeContext)
	return mux
}

// health answers 200 once the default Python context runs code; until
// then 503 says why not.
func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	select {
	case <-s.ready:
	default:
		http.Error(w, "the Python kernel is starting", http.StatusServiceUnavailable)
		return
	}
	if s.readyErr != nil {
		http.Error(w, "the Python kernel did not start: "+s.readyErr.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "OK")
}

// decode reads a JSON body into v, refusing fields it does not know.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("the body exceeds %d bytes", maxBody), http.StatusRequestEntityTooLarge)
			return false
		}
		http.Error(w, "malformed JSON body: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

// executeBody is what the SDKs post to /execute.
type executeBody struct {
	Code      *string           `json:"code"`
	ContextID string            `json:"context_id"`
	Language  string            `json:"language"`
	EnvVars   map[string]string `json:"env_vars"`
}

func (s *Server) execute(w http.ResponseWriter, r *http.Request) {
	var b executeBody
	if !decode(w, r, &b) {
		return
	}
	if b.Code == nil {
		http.Error(w, "code is required", http.StatusBadRequest)
		return
	}
	if b.ContextID != "" && b.Language != "" {
		http.Error(w, "give context_id or language, not both", http.StatusBadRequest)
		return
	}
	sandboxEnv, status, err := s.sandboxEnv(r)
	if err != nil {
		http.Error(w, err.Error(), status)
		return
	}
	c, status, err := s.contextFor(b.ContextID, b.Language)
	if err != nil {
		http.Error(w, err.Error(), status)
		return
	}
	if len(b.EnvVars) > 0 && !supportsEnv(c.Language) {
		http.Error(w, fmt.Sprintf("env_vars: environment variables cannot be set in a %s context", c.Language), http.StatusBadRequest)
		return
	}
	// Headers go at once: the SDKs time the request out until they come,
	// and the body may wait for a busy context or a starting kernel.
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	emit := func(o output) {
		if enc.Encode(o) == nil {
			_ = rc.Flush()
		}
	}
	c.execute(r.Context(), execRequest{code: *b.Code, sandbox: sandboxEnv, env: b.EnvVars}, emit)
	emit(output{"type": "end_of_execution"})
}

// sandboxEnv asks envd for the sandbox's environment variables with the
// caller's access token; envd refusing the token refuses the execution.
func (s *Server) sandboxEnv(r *http.Request) (map[string]string, int, error) {
	if s.cfg.EnvdURL == "" {
		return nil, 0, nil
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, s.cfg.EnvdURL+"/envs", nil)
	if err != nil {
		return nil, http.StatusInternalServerError, err
	}
	if tok := r.Header.Get("X-Access-Token"); tok != "" {
		req.Header.Set("X-Access-Token", tok)
	}
	resp, err := s.envd.Do(req)
	if err != nil {
		return nil, http.StatusBadGateway, fmt.Errorf("envd did not answer (%v): the sandbox's environment variables are unknown", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		s.log.Warn("execution refused: wrong access token", "remote", r.RemoteAddr)
		return nil, http.StatusUnauthorized, errors.New("unauthorized: X-Access-Token must be the sandbox's envd access token")
	case resp.StatusCode != http.StatusOK:
		return nil, http.StatusBadGateway, fmt.Errorf("envd answered /envs with %s", resp.Status)
	}
	env := map[string]string{}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&env); err != nil {
		return nil, http.StatusBadGateway, fmt.Errorf("envd's /envs: %w", err)
	}
	return env, 0, nil
}

// contextFor finds the context an execution names, by ID, or the
// language's default one (created on first use), or the Python default.
func (s *Server) contextFor(id, language string) (*codeContext, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, http.StatusServiceUnavailable, errors.New("the code interpreter is shutting down")
	}
	if id != "" {
		c, ok := s.contexts[id]
		if !ok {
			return nil, http.StatusNotFound, fmt.Errorf("context %s not found", id)
		}
		return c, 0, nil
	}
	name, spec, err := s.cfg.Languages.Lookup(language)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	if c, ok := s.defaults[name]; ok {
		return c, 0, nil
	}
	// Its kernel starts with the first execution, which holds the context.
	c := s.newContext(name, s.cfg.DefaultCwd, spec)
	s.contexts[c.ID], s.defaults[name] = c, c
	return c, 0, nil
}

type createContextBody struct {
	Language string `json:"language"`
	Cwd      string `json:"cwd"`
}

func (s *Server) createContext(w http.ResponseWriter, r *http.Request) {
	var b createContextBody
	if !decode(w, r, &b) {
		return
	}
	name, spec, err := s.cfg.Languages.Lookup(b.Language)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cwd := b.Cwd
	if cwd == "" {
		cwd = s.cfg.DefaultCwd
	}
	if !filepath.IsAbs(cwd) {
		http.Error(w, fmt.Sprintf("cwd %q: an absolute path is required", cwd), http.StatusBadRequest)
		return
	}
	if fi, err := os.Stat(cwd); err != nil || !fi.IsDir() {
		http.Error(w, fmt.Sprintf("cwd %q: no such directory", cwd), http.StatusBadRequest)
		return
	}
	c := s.newContext(name, filepath.Clean(cwd), spec)
	_ = c.acquire(context.Background())
	_, err = c.ensureKernel(context.WithoutCancel(r.Context()))
	c.release()
	if err != nil {
		http.Error(w, "create the context: "+err.Error(), http.StatusInternalServerError)
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.remove()
		http.Error(w, "the code interpreter is shutting down", http.StatusServiceUnavailable)
		return
	}
	s.contexts[c.ID] = c
	s.mu.Unlock()
	s.log.Info("context created", "context", c.ID, "language", c.Language, "cwd", c.Cwd)
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) listContexts(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	list := make([]*codeContext, 0, len(s.contexts))
	for _, c := range s.contexts {
		list = append(list, c)
	}
	s.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].created.Before(list[j].created) })
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) *codeContext {
	id := r.PathValue("id")
	s.mu.Lock()
	c, ok := s.contexts[id]
	s.mu.Unlock()
	if !ok {
		http.Error(w, fmt.Sprintf("context %s not found", id), http.StatusNotFound)
		return nil
	}
	return c
}

func (s *Server) restartContext(w http.ResponseWriter, r *http.Request) {
	c := s.lookup(w, r)
	if c == nil {
		return
	}
	if err := c.restart(r.Context()); err != nil {
		if errors.Is(err, errContextRemoved) {
			http.Error(w, fmt.Sprintf("context %s not found", c.ID), http.StatusNotFound)
			return
		}
		http.Error(w, "restart the context: "+err.Error(), http.StatusInternalServerError)
		return
	}
	s.log.Info("context restarted", "context", c.ID)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) removeContext(w http.ResponseWriter, r *http.Request) {
	c := s.lookup(w, r)
	if c == nil {
		return
	}
	s.mu.Lock()
	delete(s.contexts, c.ID)
	if s.defaults[c.Language] == c {
		delete(s.defaults, c.Language)
	}
	s.mu.Unlock()
	c.remove()
	s.log.Info("context removed", "context", c.ID)
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
