package sdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/proto/envd/process"
)

// Commands runs processes in a sandbox.
type Commands struct{ sb *Sandbox }

// CommandResult is how a command ended.
type CommandResult struct {
	// ExitCode is the exit status, or -1 when a signal ended the command.
	ExitCode int
	// Stdout and Stderr hold the output not given to a writer or callback.
	Stdout, Stderr string
	// Error is envd's description of a failure ("exit status 1",
	// "signal: killed").
	Error string
}

// ProcessInfo is a process envd runs.
type ProcessInfo struct {
	PID  uint32            `json:"pid"`
	Tag  string            `json:"tag,omitempty"`
	Cmd  string            `json:"cmd"`
	Args []string          `json:"args"`
	Env  map[string]string `json:"env,omitempty"`
	Cwd  string            `json:"cwd,omitempty"`
}

// CommandOption tunes how a command runs.
type CommandOption func(*commandConfig)

type commandConfig struct {
	direct         bool
	args           []string
	env            map[string]string
	cwd            string
	tag            string
	stdin          bool
	timeout        time.Duration
	stdout, stderr io.Writer
	pty            *process.PTY
}

// WithArgs runs the command as an executable with these arguments
// instead of as a line for bash (even with no arguments).
func WithArgs(args ...string) CommandOption {
	return func(c *commandConfig) { c.direct, c.args = true, args }
}

// WithEnv adds environment variables.
func WithEnv(env map[string]string) CommandOption { return func(c *commandConfig) { c.env = env } }

// WithCwd sets the working directory.
func WithCwd(dir string) CommandOption { return func(c *commandConfig) { c.cwd = dir } }

// WithTag names the process, so that it can be found by tag.
func WithTag(tag string) CommandOption { return func(c *commandConfig) { c.tag = tag } }

// WithStdin keeps the command's standard input open for SendStdin
// (otherwise it reads /dev/null).
func WithStdin() CommandOption { return func(c *commandConfig) { c.stdin = true } }

// WithTimeout limits how long the command may run: envd kills it then.
// Without it a command runs until it ends or is killed.
func WithTimeout(d time.Duration) CommandOption { return func(c *commandConfig) { c.timeout = d } }

// WithStdout streams standard output to w as it arrives (it is then not
// kept in CommandResult.Stdout). Writes happen on one goroutine; a slow
// writer slows the command down rather than losing output.
func WithStdout(w io.Writer) CommandOption { return func(c *commandConfig) { c.stdout = w } }

// WithStderr streams standard error to w, as WithStdout does.
func WithStderr(w io.Writer) CommandOption { return func(c *commandConfig) { c.stderr = w } }

// OnStdout calls f with each chunk of standard output.
func OnStdout(f func([]byte)) CommandOption { return WithStdout(callbackWriter(f)) }

// OnStderr calls f with each chunk of standard error.
func OnStderr(f func([]byte)) CommandOption { return WithStderr(callbackWriter(f)) }

type callbackWriter func([]byte)

func (f callbackWriter) Write(p []byte) (int, error) {
	f(bytes.Clone(p))
	return len(p), nil
}

func (c *commandConfig) apply(opts []CommandOption) *commandConfig {
	for _, o := range opts {
		o(c)
	}
	return c
}

// Run runs cmd (a line for `bash -l -c`, or an executable with WithArgs)
// and waits for it. A non-zero exit is an *ExitError holding the result.
// If ctx ends first, the command is killed before Run returns.
func (c *Commands) Run(ctx context.Context, cmd string, opts ...CommandOption) (CommandResult, error) {
	h, err := c.Start(ctx, cmd, opts...)
	if err != nil {
		return CommandResult{}, err
	}
	res, err := h.Wait(ctx)
	if ctx.Err() != nil && h.running() {
		h.killDetached()
	}
	return res, err
}

// Start starts cmd in the background and returns once it runs. The
// process outlives ctx (which only bounds starting it); Wait, Kill or
// Disconnect the handle.
func (c *Commands) Start(ctx context.Context, cmd string, opts ...CommandOption) (*CommandHandle, error) {
	cfg := (&commandConfig{}).apply(opts)
	pc := &process.ProcessConfig{Cmd: "/bin/bash", Args: []string{"-l", "-c", cmd}, Envs: cfg.env}
	if cfg.direct {
		pc.Cmd, pc.Args = cmd, cfg.args
	}
	if cfg.cwd != "" {
		pc.Cwd = &cfg.cwd
	}
	req := &process.StartRequest{Process: pc, Stdin: &cfg.stdin, Pty: cfg.pty}
	if cfg.tag != "" {
		req.Tag = &cfg.tag
	}
	op := "start " + cmd
	return c.sb.follow(ctx, op, cfg, func(sctx context.Context) (eventStream, error) {
		s, err := c.sb.envd.proc.Start(sctx, connect.NewRequest(req))
		if err != nil {
			return nil, err
		}
		return streamAdapter[process.StartResponse]{s, (*process.StartResponse).GetEvent}, nil
	})
}

// Connect follows a running process by PID: its output from now on, and
// how it ends.
func (c *Commands) Connect(ctx context.Context, pid uint32, opts ...CommandOption) (*CommandHandle, error) {
	cfg := (&commandConfig{}).apply(opts)
	req := &process.ConnectRequest{Process: pidSelector(pid)}
	return c.sb.follow(ctx, fmt.Sprintf("connect to process %d", pid), cfg, func(sctx context.Context) (eventStream, error) {
		s, err := c.sb.envd.proc.Connect(sctx, connect.NewRequest(req))
		if err != nil {
			return nil, err
		}
		return streamAdapter[process.ConnectResponse]{s, (*process.ConnectResponse).GetEvent}, nil
	})
}

// List returns the processes envd runs.
func (c *Commands) List(ctx context.Context) ([]ProcessInfo, error) {
	res, err := c.sb.envd.proc.List(ctx, connect.NewRequest(&process.ListRequest{}))
	if err != nil {
		return nil, connectError("list processes", err)
	}
	out := make([]ProcessInfo, 0, len(res.Msg.GetProcesses()))
	for _, p := range res.Msg.GetProcesses() {
		cfg := p.GetConfig()
		out = append(out, ProcessInfo{PID: p.GetPid(), Tag: p.GetTag(), Cmd: cfg.GetCmd(), Args: cfg.GetArgs(), Env: cfg.GetEnvs(), Cwd: cfg.GetCwd()})
	}
	return out, nil
}

// Kill sends SIGKILL to a process.
func (c *Commands) Kill(ctx context.Context, pid uint32) error {
	_, err := c.sb.envd.proc.SendSignal(ctx, connect.NewRequest(&process.SendSignalRequest{Process: pidSelector(pid), Signal: process.Signal_SIGNAL_SIGKILL}))
	return connectError(fmt.Sprintf("kill process %d", pid), err)
}

// SendStdin writes data to a process's standard input (started WithStdin).
func (c *Commands) SendStdin(ctx context.Context, pid uint32, data []byte) error {
	_, err := c.sb.envd.proc.SendInput(ctx, connect.NewRequest(&process.SendInputRequest{Process: pidSelector(pid), Input: &process.ProcessInput{Input: &process.ProcessInput_Stdin{Stdin: data}}}))
	return connectError(fmt.Sprintf("stdin of process %d", pid), err)
}

// CloseStdin closes a process's standard input (it reads EOF).
func (c *Commands) CloseStdin(ctx context.Context, pid uint32) error {
	_, err := c.sb.envd.proc.CloseStdin(ctx, connect.NewRequest(&process.CloseStdinRequest{Process: pidSelector(pid)}))
	return connectError(fmt.Sprintf("close stdin of process %d", pid), err)
}

func pidSelector(pid uint32) *process.ProcessSelector {
	return &process.ProcessSelector{Selector: &process.ProcessSelector_Pid{Pid: pid}}
}

// eventStream is a Start or Connect stream.
type eventStream interface {
	Receive() bool
	Event() *process.ProcessEvent
	Err() error
	Close() error
}

type streamAdapter[T any] struct {
	*connect.ServerStreamForClient[T]
	event func(*T) *process.ProcessEvent
}

func (s streamAdapter[T]) Event() *process.ProcessEvent { return s.event(s.Msg()) }

// CommandHandle is a process started or followed by this client.
type CommandHandle struct {
	// PID is the process's ID in the sandbox.
	PID uint32

	sb     *Sandbox
	op     string
	cancel context.CancelFunc
	done   chan struct{}
	// set before done closes
	res CommandResult
	err error
	// disconnected by the caller (not an error of the stream)
	mu           sync.Mutex
	disconnected bool
}

// ErrDisconnected is what Wait returns after Disconnect.
var ErrDisconnected = errors.New("disconnected from the process (it may still run)")

// follow opens a stream with open, waits for its start event and follows
// the rest on a goroutine the handle owns.
func (s *Sandbox) follow(ctx context.Context, op string, cfg *commandConfig, open func(context.Context) (eventStream, error)) (*CommandHandle, error) {
	// The stream outlives ctx: it carries the process's output until the
	// process ends or the handle disconnects. Its deadline, if any, is
	// the command's timeout (envd kills the process then).
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if cfg.timeout > 0 {
		var c2 context.CancelFunc
		sctx, c2 = context.WithTimeout(sctx, cfg.timeout)
		prev := cancel
		cancel = func() { c2(); prev() }
	}
	h := &CommandHandle{sb: s, op: op, cancel: cancel, done: make(chan struct{})}
	started := make(chan error, 1)
	go h.read(sctx, cfg, open, started)
	select {
	case err := <-started:
		if err != nil {
			cancel()
			<-h.done
			return nil, err
		}
		return h, nil
	case <-ctx.Done():
		// The process may start after all: kill it once its PID is known,
		// so nothing the caller gave up on keeps running.
		go func() {
			select {
			case err := <-started:
				if err == nil {
					h.killDetached()
				}
			case <-time.After(30 * time.Second):
			}
			cancel()
		}()
		return nil, fmt.Errorf("%s: %w", op, ctx.Err())
	}
}

func (h *CommandHandle) read(ctx context.Context, cfg *commandConfig, open func(context.Context) (eventStream, error), started chan<- error) {
	defer close(h.done)
	defer h.cancel()
	stream, err := open(ctx)
	if err != nil {
		h.err = connectError(h.op, err)
		started <- h.err
		return
	}
	defer stream.Close()
	var stdout, stderr bytes.Buffer
	out, errw := cfg.stdout, cfg.stderr
	if out == nil {
		out = &stdout
	}
	if errw == nil {
		errw = &stderr
	}
	gotStart, gotEnd := false, false
	var writeErr error
	for stream.Receive() {
		ev := stream.Event()
		switch e := ev.GetEvent().(type) {
		case *process.ProcessEvent_Start:
			if !gotStart {
				gotStart = true
				h.PID = e.Start.GetPid()
				started <- nil
			}
		case *process.ProcessEvent_Data:
			if writeErr != nil {
				continue
			}
			switch d := e.Data.GetOutput().(type) {
			case *process.ProcessEvent_DataEvent_Stdout:
				_, writeErr = out.Write(d.Stdout)
			case *process.ProcessEvent_DataEvent_Stderr:
				_, writeErr = errw.Write(d.Stderr)
			case *process.ProcessEvent_DataEvent_Pty:
				_, writeErr = out.Write(d.Pty)
			}
		case *process.ProcessEvent_End:
			gotEnd = true
			h.res = CommandResult{ExitCode: int(e.End.GetExitCode()), Error: e.End.GetError()}
		}
	}
	h.res.Stdout, h.res.Stderr = stdout.String(), stderr.String()
	switch {
	case gotEnd:
		if writeErr != nil {
			h.err = fmt.Errorf("%s: writing its output: %w", h.op, writeErr)
		} else if h.res.ExitCode != 0 {
			h.err = &ExitError{Result: h.res}
		}
	case h.isDisconnected():
		h.err = ErrDisconnected
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		h.err = &APIError{Op: h.op, Message: "the command's timeout passed", kind: ErrTimeout}
	case stream.Err() != nil:
		h.err = streamError(h.op, stream.Err(), gotStart, " before the command ended")
	default:
		h.err = &APIError{Op: h.op, Message: "the stream ended before the command did (was the sandbox killed or paused?)", kind: ErrUnavailable}
	}
	if !gotStart {
		if h.err == nil {
			h.err = &APIError{Op: h.op, Message: "envd sent no start event", kind: ErrUnavailable}
		}
		started <- h.err
	}
}

// streamError classifies how a stream failed. Once it has started, a
// stream that breaks (the connection reset, a truncated body, which
// Connect reports as a protocol error) means the sandbox went away under
// it: ErrUnavailable; a slow reader cut off by envd or a deadline keep
// their kinds.
func streamError(op string, err error, started bool, what string) error {
	code := connect.CodeOf(err)
	if !started || code == connect.CodeResourceExhausted || code == connect.CodeDeadlineExceeded || code == connect.CodeCanceled {
		return connectError(op, err)
	}
	return &APIError{Op: op, Code: code.String(), kind: ErrUnavailable,
		Message: "the stream was cut" + what + " (was the sandbox killed or paused?): " + err.Error()}
}

func (h *CommandHandle) isDisconnected() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.disconnected
}

func (h *CommandHandle) running() bool {
	select {
	case <-h.done:
		return false
	default:
		return true
	}
}

// killDetached kills the process on a context of its own: the caller's
// has ended.
func (h *CommandHandle) killDetached() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = h.sb.Commands.Kill(ctx, h.PID)
	select {
	case <-h.done:
	case <-ctx.Done():
		h.cancel()
	}
}

// Wait waits for the process to end. A non-zero exit is an *ExitError;
// a stream cut by a killed or paused sandbox matches ErrUnavailable. If
// ctx ends first, Wait returns its error and the process runs on.
func (h *CommandHandle) Wait(ctx context.Context) (CommandResult, error) {
	select {
	case <-h.done:
		return h.res, h.err
	case <-ctx.Done():
		return CommandResult{}, fmt.Errorf("%s: %w", h.op, ctx.Err())
	}
}

// Done is closed when the process has ended or the stream has.
func (h *CommandHandle) Done() <-chan struct{} { return h.done }

// Kill sends SIGKILL to the process.
func (h *CommandHandle) Kill(ctx context.Context) error { return h.sb.Commands.Kill(ctx, h.PID) }

// SendStdin writes data to the process's standard input.
func (h *CommandHandle) SendStdin(ctx context.Context, data []byte) error {
	return h.sb.Commands.SendStdin(ctx, h.PID, data)
}

// CloseStdin closes the process's standard input.
func (h *CommandHandle) CloseStdin(ctx context.Context) error {
	return h.sb.Commands.CloseStdin(ctx, h.PID)
}

// Disconnect stops following the process; it keeps running (Connect
// follows it again).
func (h *CommandHandle) Disconnect() {
	h.mu.Lock()
	h.disconnected = true
	h.mu.Unlock()
	h.cancel()
	<-h.done
}
