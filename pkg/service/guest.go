package service

import (
	"context"
	"errors"
	"io"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/fault"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
	"git.omukk.dev/wrenn/sandbox/proto/hostagent/v1/hostagentv1connect"
)

// target is a running sandbox and the agent that has it.
type target struct {
	Sandbox db.Sandbox
	Host    db.Host
	Agent   hostagentv1connect.HostAgentServiceClient
	// AgentID is the sandbox's ID on the agent.
	AgentID string
}

// fail is an agent's error on an operation on the sandbox.
func (t target) fail(op string, err error) error { return agentError(t.Host, op, err) }

// running resolves one of the team's running sandboxes to its agent.
func (s *Service) running(ctx context.Context, c auth.Caller, sid uuid.UUID) (target, error) {
	sb, err := s.getSandbox(ctx, c, sid)
	if err != nil {
		return target{}, err
	}
	if sb.State != "running" {
		hint := ""
		if sb.State == "paused" {
			hint = "; resume it first (POST /v1/sandboxes/{id}/resume)"
		}
		return target{}, errf(ErrConflict, "sandbox is %s, not running%s", sb.State, hint)
	}
	h, client, err := s.hostAgent(ctx, sb.HostID)
	if err != nil {
		return target{}, err
	}
	return target{Sandbox: sb, Host: h, Agent: client, AgentID: id.Format(id.Sandbox, sb.ID)}, nil
}

// Guest is one of the team's running sandboxes, resolved once, for calls
// into it: commands, files, terminals, processes, metrics.
type Guest struct {
	t target
	// execMaxOutput bounds each stream Exec returns (the installation's
	// WRENN_EXEC_MAX_OUTPUT_BYTES; 0 is the agent's default).
	execMaxOutput uint64
}

// Guest resolves one of the team's running sandboxes; another team's is
// not found, one that is not running a conflict.
func (s *Service) Guest(ctx context.Context, c auth.Caller, sid uuid.UUID) (*Guest, error) {
	t, err := s.running(ctx, c, sid)
	if err != nil {
		return nil, err
	}
	return &Guest{t: t, execMaxOutput: uint64(s.Config.ExecMaxOutput)}, nil
}

// ID is the sandbox's wire ID.
func (g *Guest) ID() string { return g.t.AgentID }

// ExecInput is a command to run in a sandbox.
type ExecInput struct {
	Cmd  string
	Args []string
	Envs map[string]string
	Cwd  string
	// User runs the command (default: the image's default user).
	User string
	// TimeoutSeconds bounds the command; 0 is the agent's default (60 s)
	// for Exec, and no bound for ExecStream.
	TimeoutSeconds uint32
	// Stdin is written to the command's standard input, then closed.
	Stdin []byte
}

func (in ExecInput) request(agentID string) (*pb.ExecRequest, error) {
	if in.Cmd == "" {
		return nil, errf(ErrInvalid, "cmd is required")
	}
	return &pb.ExecRequest{SandboxId: agentID, Cmd: in.Cmd, Args: in.Args, Envs: in.Envs, Cwd: in.Cwd, User: in.User,
		TimeoutSeconds: in.TimeoutSeconds, Stdin: in.Stdin}, nil
}

// ExecResult is how a command ended and what it wrote.
type ExecResult struct {
	PID            uint32
	ExitCode       int32
	Stdout, Stderr []byte
	// StdoutTruncated and StderrTruncated say a stream was longer than
	// the installation's bound and only its start is here.
	StdoutTruncated, StderrTruncated bool
	// Error is set when the command could not run or was killed.
	Error string
}

// Exec runs a command to completion.
func (g *Guest) Exec(ctx context.Context, in ExecInput) (ExecResult, error) {
	req, err := in.request(g.t.AgentID)
	if err != nil {
		return ExecResult{}, err
	}
	req.MaxOutputBytes = g.execMaxOutput
	res, err := g.t.Agent.Exec(ctx, connect.NewRequest(req))
	if err != nil {
		return ExecResult{}, g.t.fail("exec", err)
	}
	m := res.Msg
	return ExecResult{PID: m.GetPid(), ExitCode: m.GetExitCode(), Stdout: m.GetStdout(), Stderr: m.GetStderr(), Error: m.GetError(),
		StdoutTruncated: m.GetStdoutTruncated(), StderrTruncated: m.GetStderrTruncated()}, nil
}

// ProcessEvent is one thing a followed process (a streamed command or a
// terminal) did.
type ProcessEvent struct {
	Kind ProcessEventKind
	// PID is the started process's.
	PID uint32
	// Data is what it wrote (stdout, stderr, terminal output).
	Data []byte
	// ExitCode and Error say how it ended; Error is set when it could not
	// run or was killed.
	ExitCode int32
	Error    string
}

// ProcessEventKind says what a process did.
type ProcessEventKind uint8

const (
	ProcessStarted ProcessEventKind = iota + 1
	ProcessStdout
	ProcessStderr
	// ProcessOutput is a terminal's output.
	ProcessOutput
	ProcessEnded
)

func ended(e *pb.ExecEnd) ProcessEvent {
	return ProcessEvent{Kind: ProcessEnded, ExitCode: e.GetExitCode(), Error: e.GetError()}
}

// ExecStream runs a command and calls fn with each of its events until it
// ends, fn fails (its error is returned), or ctx ends. A command without
// a timeout keeps running when the caller stops following it.
func (g *Guest) ExecStream(ctx context.Context, in ExecInput, fn func(ProcessEvent) error) error {
	req, err := in.request(g.t.AgentID)
	if err != nil {
		return err
	}
	stream, err := g.t.Agent.ExecStream(ctx, connect.NewRequest(req))
	if err != nil {
		return g.t.fail("exec", err)
	}
	defer stream.Close()
	return follow(g.t, "exec", stream, func(m *pb.ExecStreamResponse) (ProcessEvent, bool) {
		switch e := m.GetEvent().(type) {
		case *pb.ExecStreamResponse_StartedPid:
			return ProcessEvent{Kind: ProcessStarted, PID: e.StartedPid}, true
		case *pb.ExecStreamResponse_Stdout:
			return ProcessEvent{Kind: ProcessStdout, Data: e.Stdout}, true
		case *pb.ExecStreamResponse_Stderr:
			return ProcessEvent{Kind: ProcessStderr, Data: e.Stderr}, true
		case *pb.ExecStreamResponse_End:
			return ended(e.End), true
		}
		return ProcessEvent{}, false
	}, fn)
}

// follow calls fn with each message of an agent's stream that event
// turns into a ProcessEvent; fn's error comes back as it is, the
// stream's as the agent's error on op.
func follow[T any](t target, op string, stream *connect.ServerStreamForClient[T], event func(*T) (ProcessEvent, bool), fn func(ProcessEvent) error) error {
	for stream.Receive() {
		if ev, ok := event(stream.Msg()); ok {
			if err := fn(ev); err != nil {
				return err
			}
		}
	}
	if err := stream.Err(); err != nil {
		return t.fail(op, err)
	}
	return nil
}

// Process is a process envd runs in the sandbox.
type Process struct {
	PID  uint32
	Tag  string
	Cmd  string
	Args []string
	Cwd  string
}

// Processes lists what runs in the sandbox under envd.
func (g *Guest) Processes(ctx context.Context) ([]Process, error) {
	res, err := g.t.Agent.ListProcesses(ctx, connect.NewRequest(&pb.ListProcessesRequest{SandboxId: g.t.AgentID}))
	if err != nil {
		return nil, g.t.fail("list processes", err)
	}
	out := make([]Process, 0, len(res.Msg.GetProcesses()))
	for _, p := range res.Msg.GetProcesses() {
		out = append(out, Process{PID: p.GetPid(), Tag: p.GetTag(), Cmd: p.GetCmd(), Args: p.GetArgs(), Cwd: p.GetCwd()})
	}
	return out, nil
}

// Metric is one resource sample of a sandbox.
type Metric struct {
	At         time.Time
	CPUUsedPct float32
	CPUCount   uint32
	MemUsed    uint64
	MemTotal   uint64
	MemCache   uint64 // the guest's page cache
	DiskUsed   uint64
	DiskTotal  uint64
	// HostRSS is the memory the sandbox takes on its host.
	HostRSS uint64
}

// Metrics returns the sandbox's recent resource samples, oldest first.
func (g *Guest) Metrics(ctx context.Context) ([]Metric, error) {
	res, err := g.t.Agent.GetSandboxMetrics(ctx, connect.NewRequest(&pb.GetSandboxMetricsRequest{SandboxId: g.t.AgentID}))
	if err != nil {
		return nil, g.t.fail("metrics", err)
	}
	out := make([]Metric, 0, len(res.Msg.GetRecent()))
	for _, m := range res.Msg.GetRecent() {
		out = append(out, Metric{At: time.UnixMilli(m.GetTimestampUnixMs()).UTC(), CPUUsedPct: m.GetCpuUsedPct(), CPUCount: m.GetCpuCount(),
			MemUsed: m.GetMemUsedBytes(), MemTotal: m.GetMemTotalBytes(), MemCache: m.GetMemCacheBytes(), DiskUsed: m.GetDiskUsedBytes(), DiskTotal: m.GetDiskTotalBytes(), HostRSS: m.GetHostRssBytes()})
	}
	return out, nil
}

// FileEntry is a file or directory in the sandbox.
type FileEntry struct {
	Name        string
	Path        string
	IsDir       bool
	Size        int64
	Permissions string
	ModifiedAt  time.Time
}

func entryOf(e *pb.FileEntry) FileEntry {
	return FileEntry{Name: e.GetName(), Path: e.GetPath(), IsDir: e.GetIsDir(), Size: e.GetSize(), Permissions: e.GetPermissions(),
		ModifiedAt: time.UnixMilli(e.GetModifiedUnixMs()).UTC()}
}

// Paths are the guest's own: envd inside the sandbox resolves them with
// user's permissions (the image's default user if empty), so nothing here
// reaches the host.

// ReadFile opens a file in the sandbox as a stream. Errors such as a
// missing file come here, before any content; one in the middle (the
// sandbox went away) comes from Read. Close ends the transfer.
func (g *Guest) ReadFile(ctx context.Context, path, user string) (io.ReadCloser, error) {
	stream, err := g.t.Agent.ReadFileStream(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: g.t.AgentID, Path: path, User: user}))
	if err != nil {
		return nil, g.t.fail("read file", err)
	}
	if !stream.Receive() {
		if err := stream.Err(); err != nil {
			stream.Close()
			return nil, g.t.fail("read file", err)
		}
	}
	return &fileReader{g: g, stream: stream, chunk: stream.Msg().GetChunk()}, nil
}

type fileReader struct {
	g      *Guest
	stream *connect.ServerStreamForClient[pb.ReadFileStreamResponse]
	chunk  []byte
	err    error
}

// Read returns at most one chunk of the stream per call, so a caller that
// flushes after each Read passes chunks on as they come.
func (f *fileReader) Read(p []byte) (int, error) {
	for len(f.chunk) == 0 {
		if f.err != nil {
			return 0, f.err
		}
		if !f.stream.Receive() {
			f.err = io.EOF
			if err := f.stream.Err(); err != nil {
				f.err = f.g.t.fail("read file", err)
			}
			continue
		}
		f.chunk = f.stream.Msg().GetChunk()
	}
	n := copy(p, f.chunk)
	f.chunk = f.chunk[n:]
	return n, nil
}

func (f *fileReader) Close() error { return f.stream.Close() }

// WriteFile streams content into a file in the sandbox and returns its
// size. If reading content fails, the transfer is cancelled and the file
// in the sandbox is left as it was.
func (g *Guest) WriteFile(ctx context.Context, path, user string, content io.Reader) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream := g.t.Agent.WriteFileStream(ctx)
	err := stream.Send(&pb.WriteFileStreamRequest{Part: &pb.WriteFileStreamRequest_Header{Header: &pb.WriteFileRequest{SandboxId: g.t.AgentID, Path: path, User: user}}})
	buf := make([]byte, 1<<20)
	for err == nil {
		n, rerr := io.ReadFull(content, buf)
		if n > 0 {
			err = stream.Send(&pb.WriteFileStreamRequest{Part: &pb.WriteFileStreamRequest_Chunk{Chunk: buf[:n]}})
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			cancel() // fails the stream, so envd keeps the old file
			_, _ = stream.CloseAndReceive()
			return 0, fault.Errorf(fault.Invalid, "reading the content failed: %w", rerr)
		}
	}
	if errors.Is(err, io.EOF) {
		err = nil // the agent ended the stream; its error comes below
	}
	res, cerr := stream.CloseAndReceive()
	if err == nil {
		err = cerr
	}
	if err != nil {
		return 0, g.t.fail("write file", err)
	}
	return int64(res.Msg.GetSize()), nil
}

// ListDir lists a directory, depth levels down (1 to 10).
func (g *Guest) ListDir(ctx context.Context, path, user string, depth uint32) ([]FileEntry, error) {
	if depth < 1 || depth > 10 {
		return nil, errf(ErrInvalid, "depth must be 1 to 10")
	}
	res, err := g.t.Agent.ListDir(ctx, connect.NewRequest(&pb.ListDirRequest{SandboxId: g.t.AgentID, Path: path, Depth: depth, User: user}))
	if err != nil {
		return nil, g.t.fail("list", err)
	}
	out := make([]FileEntry, 0, len(res.Msg.GetEntries()))
	for _, e := range res.Msg.GetEntries() {
		out = append(out, entryOf(e))
	}
	return out, nil
}

// MakeDir creates a directory and its parents.
func (g *Guest) MakeDir(ctx context.Context, path, user string) (FileEntry, error) {
	res, err := g.t.Agent.MakeDir(ctx, connect.NewRequest(&pb.MakeDirRequest{SandboxId: g.t.AgentID, Path: path, User: user}))
	if err != nil {
		return FileEntry{}, g.t.fail("make directory", err)
	}
	return entryOf(res.Msg.GetEntry()), nil
}

// Remove removes a file or a directory with its contents.
func (g *Guest) Remove(ctx context.Context, path, user string) error {
	if _, err := g.t.Agent.RemovePath(ctx, connect.NewRequest(&pb.RemovePathRequest{SandboxId: g.t.AgentID, Path: path, User: user})); err != nil {
		return g.t.fail("remove", err)
	}
	return nil
}

// TerminalOptions start a terminal, or (PID set) reattach to one that
// outlived an earlier connection.
type TerminalOptions struct {
	PID        uint32
	Cols, Rows uint32
	// Cmd is the program (default: a login shell).
	Cmd  string
	User string
	// Replay, when reattaching, sends the terminal's latest output first
	// (up to 64 KiB, from a line start), so a new screen shows what was there.
	Replay bool
}

// Terminal is an attached terminal in a sandbox. It lives on in the
// sandbox when the caller detaches (Close), until it is killed.
type Terminal struct {
	g      *Guest
	pid    uint32
	stream *connect.ServerStreamForClient[pb.PtyAttachResponse]
}

// OpenTerminal starts or reattaches to a terminal and waits until it runs.
func (g *Guest) OpenTerminal(ctx context.Context, o TerminalOptions) (*Terminal, error) {
	stream, err := g.t.Agent.PtyAttach(ctx, connect.NewRequest(&pb.PtyAttachRequest{
		SandboxId: g.t.AgentID, Pid: o.PID, Cols: o.Cols, Rows: o.Rows, Cmd: o.Cmd, User: o.User, Replay: o.Replay,
	}))
	if err != nil {
		return nil, g.t.fail("terminal", err)
	}
	if !stream.Receive() {
		err := stream.Err()
		stream.Close()
		if err != nil {
			return nil, g.t.fail("terminal", err)
		}
		return nil, fault.New(fault.Upstream, "terminal did not start")
	}
	return &Terminal{g: g, pid: stream.Msg().GetStartedPid(), stream: stream}, nil
}

// PID is the terminal's process in the sandbox.
func (t *Terminal) PID() uint32 { return t.pid }

// Follow calls fn with the terminal's output, and its end, until it ends,
// fn fails, or the context it was opened with ends.
func (t *Terminal) Follow(fn func(ProcessEvent) error) error {
	return follow(t.g.t, "terminal", t.stream, func(m *pb.PtyAttachResponse) (ProcessEvent, bool) {
		switch e := m.GetEvent().(type) {
		case *pb.PtyAttachResponse_Output:
			return ProcessEvent{Kind: ProcessOutput, Data: e.Output}, true
		case *pb.PtyAttachResponse_End:
			return ended(e.End), true
		}
		return ProcessEvent{}, false
	}, fn)
}

// Input types into the terminal.
func (t *Terminal) Input(ctx context.Context, data []byte) error {
	_, err := t.g.t.Agent.PtySendInput(ctx, connect.NewRequest(&pb.PtySendInputRequest{SandboxId: t.g.t.AgentID, Pid: t.pid, Data: data}))
	if err != nil {
		return t.g.t.fail("terminal input", err)
	}
	return nil
}

// Resize sets the terminal's size.
func (t *Terminal) Resize(ctx context.Context, cols, rows uint32) error {
	_, err := t.g.t.Agent.PtyResize(ctx, connect.NewRequest(&pb.PtyResizeRequest{SandboxId: t.g.t.AgentID, Pid: t.pid, Cols: cols, Rows: rows}))
	if err != nil {
		return t.g.t.fail("terminal resize", err)
	}
	return nil
}

// Kill ends the terminal's process.
func (t *Terminal) Kill(ctx context.Context) error {
	_, err := t.g.t.Agent.PtyKill(ctx, connect.NewRequest(&pb.PtyKillRequest{SandboxId: t.g.t.AgentID, Pid: t.pid}))
	if err != nil {
		return t.g.t.fail("terminal kill", err)
	}
	return nil
}

// Close detaches; the terminal keeps running in the sandbox.
func (t *Terminal) Close() error { return t.stream.Close() }
