package hostagent

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/internal/envdclient"
	"git.omukk.dev/wrenn/sandbox/pkg/fault"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

// Calls into a running sandbox: commands, terminals and files, each
// passed to the sandbox's envd through envdclient's process and file API.

// envdFor resolves a running sandbox's envd client.
func (s *Service) envdFor(id string) (*envdclient.Client, error) {
	sb, err := s.M.Get(id)
	if err != nil {
		return nil, err
	}
	return sb.Envd()
}

func processSpec(m *pb.ExecRequest) envdclient.ProcessSpec {
	return envdclient.ProcessSpec{Cmd: m.Cmd, Args: m.Args, Envs: m.Envs, Cwd: m.Cwd, User: m.User}
}

func execEnd(ev envdclient.Event) *pb.ExecEnd {
	return &pb.ExecEnd{ExitCode: ev.ExitCode, Error: ev.Error}
}

// Exec runs a command to completion and returns its output.
func (s *Service) Exec(ctx context.Context, req *connect.Request[pb.ExecRequest]) (*connect.Response[pb.ExecResponse], error) {
	m := req.Msg
	if m.Cmd == "" {
		return nil, fault.New(fault.Invalid, "cmd is required")
	}
	limit, err := execOutputLimit(m.MaxOutputBytes)
	if err != nil {
		return nil, err
	}
	c, err := s.envdFor(m.SandboxId)
	if err != nil {
		return nil, err
	}
	timeout := time.Duration(m.TimeoutSeconds) * time.Second
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	spec := processSpec(m)
	spec.Stdin = len(m.Stdin) > 0
	p, err := c.Start(ctx, spec)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	out := &pb.ExecResponse{}
	for ev := range p.Events() {
		switch ev.Kind {
		case envdclient.Started:
			out.Pid = ev.PID
			if spec.Stdin {
				if err := c.SendStdin(ctx, ev.PID, m.Stdin); err != nil {
					return nil, err
				}
				if err := c.CloseStdin(ctx, ev.PID); err != nil {
					return nil, err
				}
			}
		case envdclient.Stdout:
			out.Stdout, out.StdoutTruncated = appendCapped(out.Stdout, ev.Data, limit, out.StdoutTruncated)
		case envdclient.Stderr:
			out.Stderr, out.StderrTruncated = appendCapped(out.Stderr, ev.Data, limit, out.StderrTruncated)
		case envdclient.Ended:
			out.ExitCode, out.Error = ev.ExitCode, ev.Error
		}
	}
	if err := p.Err(); err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return nil, fault.Errorf(fault.Timeout, "command did not finish within %s; it was killed", timeout)
		}
		return nil, err
	}
	return connect.NewResponse(out), nil
}

// ExecStream runs a command and streams its output; a client that goes
// away leaves nothing running for it only if it set a timeout.
func (s *Service) ExecStream(ctx context.Context, req *connect.Request[pb.ExecRequest], out *connect.ServerStream[pb.ExecStreamResponse]) error {
	m := req.Msg
	if m.Cmd == "" {
		return fault.New(fault.Invalid, "cmd is required")
	}
	c, err := s.envdFor(m.SandboxId)
	if err != nil {
		return err
	}
	if m.TimeoutSeconds > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(m.TimeoutSeconds)*time.Second)
		defer cancel()
	}
	p, err := c.Start(ctx, processSpec(m))
	if err != nil {
		return err
	}
	return forward(p, out, func(ev envdclient.Event) *pb.ExecStreamResponse {
		switch ev.Kind {
		case envdclient.Started:
			return &pb.ExecStreamResponse{Event: &pb.ExecStreamResponse_StartedPid{StartedPid: ev.PID}}
		case envdclient.Stdout:
			return &pb.ExecStreamResponse{Event: &pb.ExecStreamResponse_Stdout{Stdout: ev.Data}}
		case envdclient.Stderr:
			return &pb.ExecStreamResponse{Event: &pb.ExecStreamResponse_Stderr{Stderr: ev.Data}}
		case envdclient.Ended:
			return &pb.ExecStreamResponse{Event: &pb.ExecStreamResponse_End{End: execEnd(ev)}}
		}
		return nil
	})
}

// forward sends the caller each of a process's events that msg turns
// into a message, until the process ends or the caller goes away.
func forward[T any](p *envdclient.Process, out *connect.ServerStream[T], msg func(envdclient.Event) *T) error {
	defer p.Close()
	for ev := range p.Events() {
		if m := msg(ev); m != nil {
			if err := out.Send(m); err != nil {
				return err
			}
		}
	}
	return p.Err()
}

// ListProcesses lists what envd runs in the sandbox.
func (s *Service) ListProcesses(ctx context.Context, req *connect.Request[pb.ListProcessesRequest]) (*connect.Response[pb.ListProcessesResponse], error) {
	c, err := s.envdFor(req.Msg.SandboxId)
	if err != nil {
		return nil, err
	}
	procs, err := c.Processes(ctx)
	if err != nil {
		return nil, err
	}
	out := &pb.ListProcessesResponse{}
	for _, p := range procs {
		out.Processes = append(out.Processes, &pb.Process{Pid: p.PID, Tag: p.Tag, Cmd: p.Cmd, Args: p.Args, Cwd: p.Cwd})
	}
	return connect.NewResponse(out), nil
}

// PtyAttach starts a terminal (pid 0) or follows an existing one.
func (s *Service) PtyAttach(ctx context.Context, req *connect.Request[pb.PtyAttachRequest], out *connect.ServerStream[pb.PtyAttachResponse]) error {
	m := req.Msg
	c, err := s.envdFor(m.SandboxId)
	if err != nil {
		return err
	}
	var p *envdclient.Process
	if m.Pid == 0 {
		spec := envdclient.ProcessSpec{Cmd: m.Cmd, Args: m.Args, User: m.User, PTY: &envdclient.TermSize{Cols: m.Cols, Rows: m.Rows},
			Envs: map[string]string{"TERM": "xterm-256color", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}}
		if spec.Cmd == "" {
			spec.Cmd, spec.Args = "/bin/bash", []string{"-i", "-l"}
		}
		for k, v := range m.Envs {
			spec.Envs[k] = v
		}
		if m.Cols == 0 || m.Rows == 0 {
			spec.PTY = &envdclient.TermSize{Cols: 80, Rows: 24}
		}
		p, err = c.Start(ctx, spec)
	} else {
		p, err = c.Attach(ctx, m.Pid, m.Replay)
	}
	if err != nil {
		return err
	}
	return forward(p, out, func(ev envdclient.Event) *pb.PtyAttachResponse {
		switch ev.Kind {
		case envdclient.Started:
			return &pb.PtyAttachResponse{Event: &pb.PtyAttachResponse_StartedPid{StartedPid: ev.PID}}
		case envdclient.Output:
			return &pb.PtyAttachResponse{Event: &pb.PtyAttachResponse_Output{Output: ev.Data}}
		case envdclient.Ended:
			return &pb.PtyAttachResponse{Event: &pb.PtyAttachResponse_End{End: execEnd(ev)}}
		}
		return nil
	})
}

func (s *Service) PtySendInput(ctx context.Context, req *connect.Request[pb.PtySendInputRequest]) (*connect.Response[pb.PtySendInputResponse], error) {
	c, err := s.envdFor(req.Msg.SandboxId)
	if err != nil {
		return nil, err
	}
	if err := c.SendTerminal(ctx, req.Msg.Pid, req.Msg.Data); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.PtySendInputResponse{}), nil
}

func (s *Service) PtyResize(ctx context.Context, req *connect.Request[pb.PtyResizeRequest]) (*connect.Response[pb.PtyResizeResponse], error) {
	if req.Msg.Cols == 0 || req.Msg.Rows == 0 {
		return nil, fault.New(fault.Invalid, "cols and rows must be above 0")
	}
	c, err := s.envdFor(req.Msg.SandboxId)
	if err != nil {
		return nil, err
	}
	if err := c.Resize(ctx, req.Msg.Pid, envdclient.TermSize{Cols: req.Msg.Cols, Rows: req.Msg.Rows}); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.PtyResizeResponse{}), nil
}

func (s *Service) PtyKill(ctx context.Context, req *connect.Request[pb.PtyKillRequest]) (*connect.Response[pb.PtyKillResponse], error) {
	c, err := s.envdFor(req.Msg.SandboxId)
	if err != nil {
		return nil, err
	}
	if err := c.Kill(ctx, req.Msg.Pid); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.PtyKillResponse{}), nil
}

// maxUnaryFile bounds ReadFile and WriteFile; larger files use the streams.
const maxUnaryFile = 16 << 20

func (s *Service) WriteFile(ctx context.Context, req *connect.Request[pb.WriteFileRequest]) (*connect.Response[pb.WriteFileResponse], error) {
	m := req.Msg
	if m.Path == "" {
		return nil, fault.New(fault.Invalid, "path is required")
	}
	if len(m.Content) > maxUnaryFile {
		return nil, fault.Errorf(fault.Invalid, "content is %d bytes; use WriteFileStream above %d", len(m.Content), maxUnaryFile)
	}
	c, err := s.envdFor(m.SandboxId)
	if err != nil {
		return nil, err
	}
	if err := c.WriteFile(ctx, m.Path, m.User, strings.NewReader(string(m.Content)), int64(len(m.Content))); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.WriteFileResponse{Path: m.Path, Size: uint64(len(m.Content))}), nil
}

func (s *Service) WriteFileStream(ctx context.Context, stream *connect.ClientStream[pb.WriteFileStreamRequest]) (*connect.Response[pb.WriteFileResponse], error) {
	if !stream.Receive() {
		if err := stream.Err(); err != nil {
			return nil, err
		}
		return nil, fault.New(fault.Invalid, "empty stream: the first message must be the header")
	}
	h := stream.Msg().GetHeader()
	if h == nil || h.Path == "" {
		return nil, fault.New(fault.Invalid, "the first message must be a header with a path")
	}
	c, err := s.envdFor(h.SandboxId)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	var written uint64
	go func() {
		for stream.Receive() {
			chunk := stream.Msg().GetChunk()
			if _, err := pw.Write(chunk); err != nil {
				return
			}
			written += uint64(len(chunk))
		}
		// A client that goes away mid-stream fails the upload, and envd
		// keeps the old file.
		pw.CloseWithError(stream.Err())
	}()
	err = c.WriteFile(ctx, h.Path, h.User, pr, -1)
	pr.CloseWithError(io.ErrClosedPipe)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.WriteFileResponse{Path: h.Path, Size: written}), nil
}

func (s *Service) ReadFile(ctx context.Context, req *connect.Request[pb.ReadFileRequest]) (*connect.Response[pb.ReadFileResponse], error) {
	m := req.Msg
	c, err := s.envdFor(m.SandboxId)
	if err != nil {
		return nil, err
	}
	body, size, err := c.ReadFile(ctx, m.Path, m.User)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	if size > maxUnaryFile {
		return nil, fault.Errorf(fault.Invalid, "%s is %d bytes; use ReadFileStream above %d", m.Path, size, maxUnaryFile)
	}
	data, err := io.ReadAll(io.LimitReader(body, maxUnaryFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxUnaryFile {
		return nil, fault.Errorf(fault.Invalid, "%s is over %d bytes; use ReadFileStream", m.Path, maxUnaryFile)
	}
	return connect.NewResponse(&pb.ReadFileResponse{Content: data}), nil
}

func (s *Service) ReadFileStream(ctx context.Context, req *connect.Request[pb.ReadFileRequest], out *connect.ServerStream[pb.ReadFileStreamResponse]) error {
	m := req.Msg
	c, err := s.envdFor(m.SandboxId)
	if err != nil {
		return err
	}
	body, _, err := c.ReadFile(ctx, m.Path, m.User)
	if err != nil {
		return err
	}
	defer body.Close()
	buf := make([]byte, 1<<20)
	for {
		n, err := io.ReadFull(body, buf)
		if n > 0 {
			if serr := out.Send(&pb.ReadFileStreamResponse{Chunk: buf[:n]}); serr != nil {
				return serr
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func entryPB(e envdclient.Entry) *pb.FileEntry {
	out := &pb.FileEntry{Name: e.Name, Path: e.Path, IsDir: e.IsDir, Size: e.Size, Permissions: e.Permissions}
	if !e.Modified.IsZero() {
		out.ModifiedUnixMs = e.Modified.UnixMilli()
	}
	return out
}

func (s *Service) ListDir(ctx context.Context, req *connect.Request[pb.ListDirRequest]) (*connect.Response[pb.ListDirResponse], error) {
	c, err := s.envdFor(req.Msg.SandboxId)
	if err != nil {
		return nil, err
	}
	entries, err := c.ListDir(ctx, req.Msg.Path, req.Msg.User, req.Msg.Depth)
	if err != nil {
		return nil, err
	}
	out := &pb.ListDirResponse{}
	for _, e := range entries {
		out.Entries = append(out.Entries, entryPB(e))
	}
	return connect.NewResponse(out), nil
}

func (s *Service) MakeDir(ctx context.Context, req *connect.Request[pb.MakeDirRequest]) (*connect.Response[pb.MakeDirResponse], error) {
	c, err := s.envdFor(req.Msg.SandboxId)
	if err != nil {
		return nil, err
	}
	e, err := c.MakeDir(ctx, req.Msg.Path, req.Msg.User)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.MakeDirResponse{Entry: entryPB(e)}), nil
}

func (s *Service) RemovePath(ctx context.Context, req *connect.Request[pb.RemovePathRequest]) (*connect.Response[pb.RemovePathResponse], error) {
	c, err := s.envdFor(req.Msg.SandboxId)
	if err != nil {
		return nil, err
	}
	if err := c.Remove(ctx, req.Msg.Path, req.Msg.User); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.RemovePathResponse{}), nil
}

func (s *Service) MovePath(ctx context.Context, req *connect.Request[pb.MovePathRequest]) (*connect.Response[pb.MovePathResponse], error) {
	c, err := s.envdFor(req.Msg.SandboxId)
	if err != nil {
		return nil, err
	}
	e, err := c.Move(ctx, req.Msg.Source, req.Msg.Destination, req.Msg.User)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.MovePathResponse{Entry: entryPB(e)}), nil
}
