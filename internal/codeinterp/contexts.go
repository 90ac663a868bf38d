package codeinterp

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// codeContext is one kernel that keeps its variables between executions:
// the SDKs' Context. One execution runs in it at a time; others queue.
type codeContext struct {
	ID       string `json:"id"`
	Language string `json:"language"`
	Cwd      string `json:"cwd"`

	created time.Time
	spec    *KernelSpec
	srv     *Server
	run     chan struct{} // holds a token while an execution or a (re)start has the kernel

	mu      sync.Mutex
	k       *kernel
	removed bool
	// applied is the sandbox's environment as last set in the kernel.
	applied map[string]string
}

func (s *Server) newContext(language, cwd string, spec *KernelSpec) *codeContext {
	return &codeContext{ID: uuid.NewString(), Language: language, Cwd: cwd, created: time.Now(), spec: spec, srv: s, run: make(chan struct{}, 1)}
}

// acquire takes the context for one execution or (re)start.
func (c *codeContext) acquire(ctx context.Context) error {
	select {
	case c.run <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *codeContext) release() { <-c.run }

// ensureKernel starts the kernel if there is none or it died (its
// variables are gone then, as after a restart). The caller holds run.
func (c *codeContext) ensureKernel(ctx context.Context) (*kernel, error) {
	c.mu.Lock()
	k, removed := c.k, c.removed
	c.mu.Unlock()
	if removed {
		return nil, errContextRemoved
	}
	if k != nil && k.alive() {
		return k, nil
	}
	if k != nil {
		c.srv.log.Warn("kernel died; starting a new one", "context", c.ID, "language", c.Language, "err", k.exitErr)
		k.shutdown(ctx)
	}
	k, err := startKernel(ctx, c.srv.kernelConfig(c))
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removed {
		go k.shutdown(context.Background())
		return nil, errContextRemoved
	}
	c.k, c.applied = k, nil
	return k, nil
}

var errContextRemoved = fmt.Errorf("the context was removed")

// stopKernel stops the current kernel, telling a running execution why.
func (c *codeContext) stopKernel(note stopNote) {
	c.mu.Lock()
	k := c.k
	c.k = nil
	c.mu.Unlock()
	if k != nil {
		k.mu.Lock()
		k.note = note
		k.mu.Unlock()
		k.shutdown(context.Background())
	}
}

// restart replaces the kernel with a new one: a running execution ends
// with a ContextRestarting error, and the variables are gone.
func (c *codeContext) restart(ctx context.Context) error {
	c.stopKernel(stopNote{"ContextRestarting", "the context was restarted while the code ran"})
	if err := c.acquire(ctx); err != nil {
		return err
	}
	defer c.release()
	c.stopKernel(stopNote{"ContextRestarting", "the context was restarted while the code ran"})
	_, err := c.ensureKernel(ctx)
	return err
}

// execRequest is one execution with the environment it asks for.
type execRequest struct {
	code    string
	sandbox map[string]string // the sandbox's environment (envd's /envs)
	env     map[string]string // this call's own variables
}

// execute runs one request in the context, streaming to emit.
func (c *codeContext) execute(ctx context.Context, r execRequest, emit func(output)) {
	if err := c.acquire(ctx); err != nil {
		return // the client left while waiting
	}
	defer c.release()
	// A kernel that starts is kept even if this client leaves meanwhile.
	k, err := c.ensureKernel(context.WithoutCancel(ctx))
	if err == errContextRemoved {
		emit(errorOutput("ContextRemoved", "the context was removed", ""))
		return
	}
	if err != nil {
		emit(errorOutput("KernelStartFailed", err.Error(), ""))
		return
	}
	// The sandbox's variables and this call's go in before the code, in
	// requests of their own, and this call's come out after it: the
	// code's line numbers and its last expression stay its own.
	want := maps.Clone(r.sandbox)
	if want == nil {
		want = map[string]string{}
	}
	maps.Copy(want, r.env)
	if !c.setEnv(ctx, k, want, emit) {
		return
	}
	if _, err := k.execute(ctx, r.code, false, emit); err != nil {
		return
	}
	if len(r.env) > 0 {
		c.setEnv(context.WithoutCancel(ctx), k, r.sandbox, func(output) {})
	}
}

// setEnv makes the kernel's environment want, as far as the sandbox's and
// calls' variables go, by a silent execution of what changed.
func (c *codeContext) setEnv(ctx context.Context, k *kernel, want map[string]string, emit func(output)) bool {
	c.mu.Lock()
	have := c.applied
	c.mu.Unlock()
	set := map[string]string{}
	for name, v := range want {
		if old, ok := have[name]; !ok || old != v {
			set[name] = v
		}
	}
	var unset []string
	for name := range have {
		if _, ok := want[name]; !ok {
			unset = append(unset, name)
		}
	}
	if len(set) == 0 && len(unset) == 0 {
		return true
	}
	sort.Strings(unset)
	code, err := envCode(c.Language, set, unset)
	if err != nil {
		emit(errorOutput("EnvVarsUnsupported", err.Error(), ""))
		return false
	}
	var failure output
	failed, err := k.execute(ctx, code, true, func(o output) {
		if o["type"] == "error" {
			failure = o
		}
	})
	if err != nil {
		return false
	}
	if failed {
		if failure != nil {
			emit(errorOutput("EnvVarsFailed", fmt.Sprintf("setting the environment variables failed: %v: %v", failure["name"], failure["value"]), ""))
		}
		return false
	}
	c.mu.Lock()
	c.applied = maps.Clone(want)
	c.mu.Unlock()
	return true
}

// envCode is a statement in language that sets and unsets environment
// variables. Names and values are JSON strings, which both Python and R
// read as string literals.
func envCode(language string, set map[string]string, unset []string) (string, error) {
	names := slices.Sorted(maps.Keys(set))
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	var b strings.Builder
	switch language {
	case "python":
		if len(set) > 0 {
			b.WriteString("__import__('os').environ.update({")
			for i, n := range names {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(q(n) + ": " + q(set[n]))
			}
			b.WriteString("})\n")
		}
		for _, n := range unset {
			b.WriteString("__import__('os').environ.pop(" + q(n) + ", None)\n")
		}
	case "r":
		if len(set) > 0 {
			b.WriteString("invisible(Sys.setenv(")
			for i, n := range names {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(q(n) + " = " + q(set[n]))
			}
			b.WriteString("))\n")
		}
		if len(unset) > 0 {
			b.WriteString("invisible(Sys.unsetenv(c(")
			for i, n := range unset {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(q(n))
			}
			b.WriteString(")))\n")
		}
	default:
		return "", fmt.Errorf("environment variables cannot be set in a %s context", language)
	}
	return b.String(), nil
}

// supportsEnv reports whether envCode handles language.
func supportsEnv(language string) bool {
	_, err := envCode(language, nil, nil)
	return err == nil
}
