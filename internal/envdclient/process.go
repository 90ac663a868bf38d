package envdclient

import (
	"context"
	"iter"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/internal/envdapi"
	procpb "git.omukk.dev/wrenn/sandbox/proto/envd/process"
)

// The process API in the agent's terms: envd's process protocol (start
// and connect streams, their event oneofs, input, resize and signals) is
// translated here once, for commands run to completion, streamed
// commands and terminals alike.

// ProcessSpec is a process to start in the guest.
type ProcessSpec struct {
	Cmd  string
	Args []string
	Envs map[string]string
	Cwd  string
	// User runs it (envd's default user if empty).
	User string
	// Stdin keeps its standard input open for SendStdin.
	Stdin bool
	// PTY, if set, runs it on a terminal of that size.
	PTY *TermSize
}

// TermSize is a terminal's size in characters.
type TermSize struct{ Cols, Rows uint32 }

// EventKind says what a process did.
type EventKind uint8

const (
	Started EventKind = iota + 1
	Stdout
	Stderr
	// Output is a terminal's output.
	Output
	Ended
)

// Event is one thing a process did.
type Event struct {
	Kind EventKind
	// PID is set on Started.
	PID uint32
	// Data is what it wrote (Stdout, Stderr, Output).
	Data []byte
	// ExitCode and Error say how it Ended; Error is set when it could not
	// run or was killed.
	ExitCode int32
	Error    string
}

// Process follows a started or attached process's events.
type Process struct {
	stream interface {
		Receive() bool
		Err() error
		Close() error
	}
	msg func() *procpb.ProcessEvent
}

// Start starts a process and follows it.
func (c *Client) Start(ctx context.Context, spec ProcessSpec) (*Process, error) {
	req := &procpb.StartRequest{Process: &procpb.ProcessConfig{Cmd: spec.Cmd, Args: spec.Args, Envs: spec.Envs}, Stdin: &spec.Stdin}
	if spec.Cwd != "" {
		req.Process.Cwd = &spec.Cwd
	}
	if spec.PTY != nil {
		req.Pty = &procpb.PTY{Size: &procpb.PTY_Size{Cols: spec.PTY.Cols, Rows: spec.PTY.Rows}}
	}
	st, err := c.processStream.Start(ctx, asUser(connect.NewRequest(req), spec.User))
	if err != nil {
		return nil, err
	}
	return &Process{stream: st, msg: func() *procpb.ProcessEvent { return st.Msg().GetEvent() }}, nil
}

// Attach follows a running process, as a second terminal connection does;
// with replay, a terminal's latest output comes first (envdapi.ReplayHeader).
func (c *Client) Attach(ctx context.Context, pid uint32, replay bool) (*Process, error) {
	req := connect.NewRequest(&procpb.ConnectRequest{Process: selectPID(pid)})
	if replay {
		req.Header().Set(envdapi.ReplayHeader, "1")
	}
	st, err := c.processStream.Connect(ctx, req)
	if err != nil {
		return nil, err
	}
	return &Process{stream: st, msg: func() *procpb.ProcessEvent { return st.Msg().GetEvent() }}, nil
}

// Events yields the process's events until it ends, the stream fails
// (Err says why), or the caller stops.
func (p *Process) Events() iter.Seq[Event] {
	return func(yield func(Event) bool) {
		for p.stream.Receive() {
			ev, ok := eventOf(p.msg())
			if ok && !yield(ev) {
				return
			}
		}
	}
}

func eventOf(e *procpb.ProcessEvent) (Event, bool) {
	switch e := e.GetEvent().(type) {
	case *procpb.ProcessEvent_Start:
		return Event{Kind: Started, PID: e.Start.GetPid()}, true
	case *procpb.ProcessEvent_Data:
		switch d := e.Data.GetOutput().(type) {
		case *procpb.ProcessEvent_DataEvent_Stdout:
			return Event{Kind: Stdout, Data: d.Stdout}, true
		case *procpb.ProcessEvent_DataEvent_Stderr:
			return Event{Kind: Stderr, Data: d.Stderr}, true
		case *procpb.ProcessEvent_DataEvent_Pty:
			return Event{Kind: Output, Data: d.Pty}, true
		}
	case *procpb.ProcessEvent_End:
		return Event{Kind: Ended, ExitCode: e.End.GetExitCode(), Error: e.End.GetError()}, true
	}
	return Event{}, false // keepalives
}

// Err is why the events stopped, if not because the process ended.
func (p *Process) Err() error { return p.stream.Err() }

// Close stops following; the process runs on unless the context that
// started it ends.
func (p *Process) Close() error { return p.stream.Close() }

func selectPID(pid uint32) *procpb.ProcessSelector {
	return &procpb.ProcessSelector{Selector: &procpb.ProcessSelector_Pid{Pid: pid}}
}

// SendStdin writes to a process's standard input.
func (c *Client) SendStdin(ctx context.Context, pid uint32, data []byte) error {
	_, err := c.process.SendInput(ctx, connect.NewRequest(&procpb.SendInputRequest{Process: selectPID(pid), Input: &procpb.ProcessInput{Input: &procpb.ProcessInput_Stdin{Stdin: data}}}))
	return err
}

// CloseStdin closes a process's standard input.
func (c *Client) CloseStdin(ctx context.Context, pid uint32) error {
	_, err := c.process.CloseStdin(ctx, connect.NewRequest(&procpb.CloseStdinRequest{Process: selectPID(pid)}))
	return err
}

// SendTerminal types into a process's terminal.
func (c *Client) SendTerminal(ctx context.Context, pid uint32, data []byte) error {
	_, err := c.process.SendInput(ctx, connect.NewRequest(&procpb.SendInputRequest{Process: selectPID(pid), Input: &procpb.ProcessInput{Input: &procpb.ProcessInput_Pty{Pty: data}}}))
	return err
}

// Resize sets a process's terminal size.
func (c *Client) Resize(ctx context.Context, pid uint32, size TermSize) error {
	_, err := c.process.Update(ctx, connect.NewRequest(&procpb.UpdateRequest{Process: selectPID(pid), Pty: &procpb.PTY{Size: &procpb.PTY_Size{Cols: size.Cols, Rows: size.Rows}}}))
	return err
}

// Kill sends a process SIGKILL.
func (c *Client) Kill(ctx context.Context, pid uint32) error {
	_, err := c.process.SendSignal(ctx, connect.NewRequest(&procpb.SendSignalRequest{Process: selectPID(pid), Signal: procpb.Signal_SIGNAL_SIGKILL}))
	return err
}

// ProcessInfo is a process envd runs.
type ProcessInfo struct {
	PID  uint32
	Tag  string
	Cmd  string
	Args []string
	Cwd  string
}

// Processes lists the processes envd runs.
func (c *Client) Processes(ctx context.Context) ([]ProcessInfo, error) {
	res, err := c.process.List(ctx, connect.NewRequest(&procpb.ListRequest{}))
	if err != nil {
		return nil, err
	}
	out := make([]ProcessInfo, 0, len(res.Msg.GetProcesses()))
	for _, p := range res.Msg.GetProcesses() {
		cfg := p.GetConfig()
		out = append(out, ProcessInfo{PID: p.GetPid(), Tag: p.GetTag(), Cmd: cfg.GetCmd(), Args: cfg.GetArgs(), Cwd: cfg.GetCwd()})
	}
	return out, nil
}
