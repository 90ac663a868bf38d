// Package hostagent serves the agent's Connect API (hostagent.v1) over the
// sandbox manager, with bearer-secret authentication, and turns sandbox
// operations into envd calls inside the guest.
package hostagent

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/internal/envdclient"
	"git.omukk.dev/wrenn/sandbox/internal/sandbox"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
	fspb "git.omukk.dev/wrenn/sandbox/proto/envd/filesystem"
	procpb "git.omukk.dev/wrenn/sandbox/proto/envd/process"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
	"git.omukk.dev/wrenn/sandbox/proto/hostagent/v1/hostagentv1connect"
)

// Service implements HostAgentService.
type Service struct {
	hostagentv1connect.UnimplementedHostAgentServiceHandler
	M      *sandbox.Manager
	HostID string
	Log    *slog.Logger
}

// Handler is the service behind bearer authentication.
func Handler(svc *Service, secret string) (string, http.Handler) {
	path, h := hostagentv1connect.NewHostAgentServiceHandler(svc, connect.WithReadMaxBytes(hostapi.MaxAgentRequest))
	return path, requireBearer(secret, svc.Log, h)
}

func requireBearer(secret string, log *slog.Logger, next http.Handler) http.Handler {
	want := []byte("Bearer " + secret)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			log.Warn("unauthenticated agent call", "remote", r.RemoteAddr, "path", r.URL.Path)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(map[string]string{"code": "unauthenticated", "message": "a valid agent bearer token is required"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// rpcError maps manager and envd errors to Connect codes.
func rpcError(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	code := connect.CodeInternal
	switch {
	case errors.Is(err, sandbox.ErrNotFound):
		code = connect.CodeNotFound
	case errors.Is(err, sandbox.ErrAlreadyExists):
		code = connect.CodeAlreadyExists
	case errors.Is(err, sandbox.ErrInvalid):
		code = connect.CodeInvalidArgument
	case errors.Is(err, sandbox.ErrNotRunning):
		code = connect.CodeFailedPrecondition
	case errors.Is(err, sandbox.ErrNoCapacity):
		code = connect.CodeResourceExhausted
	case errors.Is(err, sandbox.ErrUnsupported):
		code = connect.CodeUnimplemented
	case errors.Is(err, sandbox.ErrConflict):
		code = connect.CodeAlreadyExists
	case errors.Is(err, context.Canceled):
		code = connect.CodeCanceled
	case errors.Is(err, context.DeadlineExceeded):
		code = connect.CodeDeadlineExceeded
	default:
		var ee *envdclient.Error
		if errors.As(err, &ee) {
			code = envdclient.ConnectCode(err)
		}
	}
	return connect.NewError(code, err)
}

func toPB(i sandbox.Info) *pb.Sandbox {
	st := map[sandbox.State]pb.SandboxState{
		sandbox.Creating: pb.SandboxState_SANDBOX_STATE_CREATING, sandbox.Running: pb.SandboxState_SANDBOX_STATE_RUNNING,
		sandbox.Pausing: pb.SandboxState_SANDBOX_STATE_PAUSING, sandbox.Paused: pb.SandboxState_SANDBOX_STATE_PAUSED,
		sandbox.Resuming: pb.SandboxState_SANDBOX_STATE_RESUMING, sandbox.Stopping: pb.SandboxState_SANDBOX_STATE_STOPPING,
		sandbox.Stopped: pb.SandboxState_SANDBOX_STATE_STOPPED, sandbox.Error: pb.SandboxState_SANDBOX_STATE_ERROR,
	}[i.State]
	out := &pb.Sandbox{
		Id: i.ID, Template: i.Template, State: st, Vcpus: uint32(i.VCPUs), MemoryMib: uint32(i.MemoryMiB), DiskMib: uint32(i.DiskMiB),
		CreatedAtUnixMs: i.CreatedAt.UnixMilli(), AllowInternet: i.AllowInternet, Metadata: i.Metadata, Runtime: i.Runtime,
		Error: i.Err, EnvdVersion: i.EnvdVersion, HostAddress: i.HostAddress, OnTimeout: pb.TimeoutAction_TIMEOUT_ACTION_DESTROY,
		GuestFault: i.GuestFault,
	}
	out.Snapshot = i.Snapshot
	if i.OnTimeout == sandbox.OnTimeoutPause {
		out.OnTimeout = pb.TimeoutAction_TIMEOUT_ACTION_PAUSE
	}
	if !i.ExpiresAt.IsZero() {
		out.ExpiresAtUnixMs = i.ExpiresAt.UnixMilli()
	}
	return out
}

func (s *Service) HostInfo(_ context.Context, _ *connect.Request[pb.HostInfoRequest]) (*connect.Response[pb.HostInfoResponse], error) {
	cfg := s.M.Config()
	accel, why := cfg.Driver.Accelerator()
	vcpus, mem := s.M.Committed()
	// What the host can still promise to a new sandbox's disk, not just
	// what is free: disks already promised are thin and fill later.
	free := uint64(s.M.DiskAvailableMiB())
	return connect.NewResponse(&pb.HostInfoResponse{
		HostId: s.HostID, Cpus: uint32(cfg.HostCPUs), MemoryMib: uint64(cfg.HostMemMiB), DiskFreeMib: free,
		Runtimes: []string{cfg.Driver.Name()}, Runtime: cfg.Driver.Name(), Accelerator: accel, AcceleratorReason: why,
		Templates: s.M.Templates(), Sandboxes: uint32(len(s.M.List())), MaxSandboxes: uint32(cfg.MaxSandboxes),
		CommittedVcpus: uint32(vcpus), CommittedMemoryMib: uint64(mem),
	}), nil
}

func (s *Service) CreateSandbox(ctx context.Context, req *connect.Request[pb.CreateSandboxRequest]) (*connect.Response[pb.CreateSandboxResponse], error) {
	m := req.Msg
	onTimeout := sandbox.OnTimeoutDestroy
	if m.OnTimeout == pb.TimeoutAction_TIMEOUT_ACTION_PAUSE {
		onTimeout = sandbox.OnTimeoutPause
	}
	info, err := s.M.Create(ctx, sandbox.Request{
		ID: m.SandboxId, Template: m.Template, VCPUs: int(m.Vcpus), MemoryMiB: int(m.MemoryMib), DiskMiB: int(m.DiskMib),
		Timeout: time.Duration(m.TimeoutSeconds) * time.Second, EnvVars: m.EnvVars, AllowInternet: m.AllowInternet,
		Metadata: m.Metadata, AccessToken: m.EnvdAccessToken, OnTimeout: onTimeout, Snapshot: m.Snapshot,
	})
	if err != nil {
		return nil, rpcError(err)
	}
	return connect.NewResponse(&pb.CreateSandboxResponse{Sandbox: toPB(info)}), nil
}

func (s *Service) DestroySandbox(_ context.Context, req *connect.Request[pb.DestroySandboxRequest]) (*connect.Response[pb.DestroySandboxResponse], error) {
	if err := s.M.Destroy(req.Msg.SandboxId); err != nil {
		return nil, rpcError(err)
	}
	return connect.NewResponse(&pb.DestroySandboxResponse{}), nil
}

func (s *Service) GetSandbox(_ context.Context, req *connect.Request[pb.GetSandboxRequest]) (*connect.Response[pb.GetSandboxResponse], error) {
	sb, err := s.M.Get(req.Msg.SandboxId)
	if err != nil {
		return nil, rpcError(err)
	}
	return connect.NewResponse(&pb.GetSandboxResponse{Sandbox: toPB(sb.Info())}), nil
}

func (s *Service) ListSandboxes(_ context.Context, _ *connect.Request[pb.ListSandboxesRequest]) (*connect.Response[pb.ListSandboxesResponse], error) {
	out := &pb.ListSandboxesResponse{}
	for _, i := range s.M.List() {
		out.Sandboxes = append(out.Sandboxes, toPB(i))
	}
	return connect.NewResponse(out), nil
}

func (s *Service) SetSandboxTimeout(_ context.Context, req *connect.Request[pb.SetSandboxTimeoutRequest]) (*connect.Response[pb.SetSandboxTimeoutResponse], error) {
	info, err := s.M.SetTimeout(req.Msg.SandboxId, time.Duration(req.Msg.TimeoutSeconds)*time.Second)
	if err != nil {
		return nil, rpcError(err)
	}
	return connect.NewResponse(&pb.SetSandboxTimeoutResponse{Sandbox: toPB(info)}), nil
}

func (s *Service) PauseSandbox(ctx context.Context, req *connect.Request[pb.PauseSandboxRequest]) (*connect.Response[pb.PauseSandboxResponse], error) {
	info, err := s.M.Pause(ctx, req.Msg.SandboxId)
	if err != nil {
		return nil, rpcError(err)
	}
	return connect.NewResponse(&pb.PauseSandboxResponse{Sandbox: toPB(info)}), nil
}

func (s *Service) ResumeSandbox(ctx context.Context, req *connect.Request[pb.ResumeSandboxRequest]) (*connect.Response[pb.ResumeSandboxResponse], error) {
	info, err := s.M.Resume(ctx, req.Msg.SandboxId, time.Duration(req.Msg.TimeoutSeconds)*time.Second)
	if err != nil {
		return nil, rpcError(err)
	}
	return connect.NewResponse(&pb.ResumeSandboxResponse{Sandbox: toPB(info)}), nil
}

func snapshotPB(si *sandbox.SnapshotInfo) *pb.Snapshot {
	return &pb.Snapshot{Name: si.Name, Template: si.Template, SourceSandboxId: si.Source, Vcpus: uint32(si.VCPUs), MemoryMib: uint32(si.MemoryMiB), DiskMib: uint32(si.DiskMiB), CreatedAtUnixMs: si.Created.UnixMilli(), SizeBytes: uint64(si.SizeBytes), Runtime: si.Runtime}
}

func (s *Service) CreateSnapshot(ctx context.Context, req *connect.Request[pb.CreateSnapshotRequest]) (*connect.Response[pb.CreateSnapshotResponse], error) {
	si, err := s.M.CreateSnapshot(ctx, req.Msg.SandboxId, req.Msg.Name)
	if err != nil {
		return nil, rpcError(err)
	}
	return connect.NewResponse(&pb.CreateSnapshotResponse{Snapshot: snapshotPB(si)}), nil
}

func (s *Service) DeleteSnapshot(_ context.Context, req *connect.Request[pb.DeleteSnapshotRequest]) (*connect.Response[pb.DeleteSnapshotResponse], error) {
	if err := s.M.DeleteSnapshot(req.Msg.Name); err != nil {
		if errors.Is(err, sandbox.ErrConflict) {
			return nil, connect.NewError(connect.CodeFailedPrecondition, err)
		}
		return nil, rpcError(err)
	}
	return connect.NewResponse(&pb.DeleteSnapshotResponse{}), nil
}

func (s *Service) ListSnapshots(_ context.Context, _ *connect.Request[pb.ListSnapshotsRequest]) (*connect.Response[pb.ListSnapshotsResponse], error) {
	out := &pb.ListSnapshotsResponse{}
	for _, si := range s.M.ListSnapshots() {
		out.Snapshots = append(out.Snapshots, snapshotPB(si))
	}
	return connect.NewResponse(out), nil
}

func metricsPB(m sandbox.Metrics) *pb.SandboxMetrics {
	return &pb.SandboxMetrics{TimestampUnixMs: m.At.UnixMilli(), CpuUsedPct: m.CPUUsedPct, CpuCount: m.CPUCount, MemUsedBytes: m.MemUsed, MemTotalBytes: m.MemTotal, DiskUsedBytes: m.DiskUsed, DiskTotalBytes: m.DiskTotal, HostRssBytes: m.HostRSS, MemCacheBytes: m.MemCache}
}

func (s *Service) GetSandboxMetrics(_ context.Context, req *connect.Request[pb.GetSandboxMetricsRequest]) (*connect.Response[pb.GetSandboxMetricsResponse], error) {
	recent, err := s.M.Metrics(req.Msg.SandboxId)
	if err != nil {
		return nil, rpcError(err)
	}
	out := &pb.GetSandboxMetricsResponse{}
	for _, m := range recent {
		out.Recent = append(out.Recent, metricsPB(m))
	}
	if len(out.Recent) > 0 {
		out.Latest = out.Recent[len(out.Recent)-1]
	}
	return connect.NewResponse(out), nil
}

// envdFor resolves a running sandbox's envd client.
func (s *Service) envdFor(id string) (*envdclient.Client, error) {
	sb, err := s.M.Get(id)
	if err != nil {
		return nil, rpcError(err)
	}
	c, err := sb.Envd()
	return c, rpcError(err)
}

// withUser selects the guest user for an envd call by Basic auth, as envd expects.
func withUser[T any](r *connect.Request[T], user string) *connect.Request[T] {
	if user != "" {
		r.Header().Set("Authorization", "Basic "+basicUser(user))
	}
	return r
}

func basicUser(user string) string { return base64.StdEncoding.EncodeToString([]byte(user + ":")) }

func startRequest(m *pb.ExecRequest, withStdin bool) *procpb.StartRequest {
	req := &procpb.StartRequest{Process: &procpb.ProcessConfig{Cmd: m.Cmd, Args: m.Args, Envs: m.Envs}, Stdin: &withStdin}
	if m.Cwd != "" {
		req.Process.Cwd = &m.Cwd
	}
	return req
}

// Exec runs a command to completion and returns its output.
func (s *Service) Exec(ctx context.Context, req *connect.Request[pb.ExecRequest]) (*connect.Response[pb.ExecResponse], error) {
	m := req.Msg
	if m.Cmd == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("cmd is required"))
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
	stream, err := c.ProcessStream.Start(ctx, withUser(connect.NewRequest(startRequest(m, len(m.Stdin) > 0)), m.User))
	if err != nil {
		return nil, rpcError(err)
	}
	defer stream.Close()
	out := &pb.ExecResponse{}
	sentStdin := false
	for stream.Receive() {
		ev := stream.Msg().GetEvent()
		switch e := ev.GetEvent().(type) {
		case *procpb.ProcessEvent_Start:
			out.Pid = e.Start.GetPid()
			if len(m.Stdin) > 0 && !sentStdin {
				sentStdin = true
				sel := &procpb.ProcessSelector{Selector: &procpb.ProcessSelector_Pid{Pid: out.Pid}}
				if _, err := c.Process.SendInput(ctx, connect.NewRequest(&procpb.SendInputRequest{Process: sel, Input: &procpb.ProcessInput{Input: &procpb.ProcessInput_Stdin{Stdin: m.Stdin}}})); err != nil {
					return nil, rpcError(err)
				}
				if _, err := c.Process.CloseStdin(ctx, connect.NewRequest(&procpb.CloseStdinRequest{Process: sel})); err != nil {
					return nil, rpcError(err)
				}
			}
		case *procpb.ProcessEvent_Data:
			out.Stdout, out.StdoutTruncated = appendCapped(out.Stdout, e.Data.GetStdout(), limit, out.StdoutTruncated)
			out.Stderr, out.StderrTruncated = appendCapped(out.Stderr, e.Data.GetStderr(), limit, out.StderrTruncated)
		case *procpb.ProcessEvent_End:
			out.ExitCode = e.End.GetExitCode()
			out.Error = e.End.GetError()
		}
	}
	if err := stream.Err(); err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return nil, connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("command did not finish within %s; it was killed", timeout))
		}
		return nil, rpcError(err)
	}
	return connect.NewResponse(out), nil
}

// ExecStream runs a command and streams its output; a client that goes
// away leaves nothing running for it only if it set a timeout.
// ListProcesses lists what envd runs in the sandbox.
func (s *Service) ListProcesses(ctx context.Context, req *connect.Request[pb.ListProcessesRequest]) (*connect.Response[pb.ListProcessesResponse], error) {
	c, err := s.envdFor(req.Msg.SandboxId)
	if err != nil {
		return nil, err
	}
	res, err := c.Process.List(ctx, connect.NewRequest(&procpb.ListRequest{}))
	if err != nil {
		return nil, rpcError(err)
	}
	out := &pb.ListProcessesResponse{}
	for _, p := range res.Msg.GetProcesses() {
		cfg := p.GetConfig()
		out.Processes = append(out.Processes, &pb.Process{Pid: p.GetPid(), Tag: p.GetTag(), Cmd: cfg.GetCmd(), Args: cfg.GetArgs(), Cwd: cfg.GetCwd()})
	}
	return connect.NewResponse(out), nil
}

func (s *Service) ExecStream(ctx context.Context, req *connect.Request[pb.ExecRequest], out *connect.ServerStream[pb.ExecStreamResponse]) error {
	m := req.Msg
	if m.Cmd == "" {
		return connect.NewError(connect.CodeInvalidArgument, errors.New("cmd is required"))
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
	stream, err := c.ProcessStream.Start(ctx, withUser(connect.NewRequest(startRequest(m, false)), m.User))
	if err != nil {
		return rpcError(err)
	}
	defer stream.Close()
	for stream.Receive() {
		ev := stream.Msg().GetEvent()
		var msg *pb.ExecStreamResponse
		switch e := ev.GetEvent().(type) {
		case *procpb.ProcessEvent_Start:
			msg = &pb.ExecStreamResponse{Event: &pb.ExecStreamResponse_StartedPid{StartedPid: e.Start.GetPid()}}
		case *procpb.ProcessEvent_Data:
			if d := e.Data.GetStdout(); d != nil {
				msg = &pb.ExecStreamResponse{Event: &pb.ExecStreamResponse_Stdout{Stdout: d}}
			} else {
				msg = &pb.ExecStreamResponse{Event: &pb.ExecStreamResponse_Stderr{Stderr: e.Data.GetStderr()}}
			}
		case *procpb.ProcessEvent_End:
			msg = &pb.ExecStreamResponse{Event: &pb.ExecStreamResponse_End{End: &pb.ExecEnd{ExitCode: e.End.GetExitCode(), Error: e.End.GetError()}}}
		default:
			continue
		}
		if err := out.Send(msg); err != nil {
			return err
		}
	}
	return rpcError(stream.Err())
}

// maxUnaryFile bounds ReadFile and WriteFile; larger files use the streams.
const maxUnaryFile = 16 << 20

func (s *Service) WriteFile(ctx context.Context, req *connect.Request[pb.WriteFileRequest]) (*connect.Response[pb.WriteFileResponse], error) {
	m := req.Msg
	if m.Path == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("path is required"))
	}
	if len(m.Content) > maxUnaryFile {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("content is %d bytes; use WriteFileStream above %d", len(m.Content), maxUnaryFile))
	}
	c, err := s.envdFor(m.SandboxId)
	if err != nil {
		return nil, err
	}
	if err := c.WriteFile(ctx, m.Path, m.User, strings.NewReader(string(m.Content)), int64(len(m.Content))); err != nil {
		return nil, rpcError(err)
	}
	return connect.NewResponse(&pb.WriteFileResponse{Path: m.Path, Size: uint64(len(m.Content))}), nil
}

func (s *Service) WriteFileStream(ctx context.Context, stream *connect.ClientStream[pb.WriteFileStreamRequest]) (*connect.Response[pb.WriteFileResponse], error) {
	if !stream.Receive() {
		if err := stream.Err(); err != nil {
			return nil, err
		}
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("empty stream: the first message must be the header"))
	}
	h := stream.Msg().GetHeader()
	if h == nil || h.Path == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("the first message must be a header with a path"))
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
		return nil, rpcError(err)
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
		return nil, rpcError(err)
	}
	defer body.Close()
	if size > maxUnaryFile {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s is %d bytes; use ReadFileStream above %d", m.Path, size, maxUnaryFile))
	}
	data, err := io.ReadAll(io.LimitReader(body, maxUnaryFile+1))
	if err != nil {
		return nil, rpcError(err)
	}
	if len(data) > maxUnaryFile {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s is over %d bytes; use ReadFileStream", m.Path, maxUnaryFile))
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
		return rpcError(err)
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
			return rpcError(err)
		}
	}
}

func entryPB(e *fspb.EntryInfo) *pb.FileEntry {
	out := &pb.FileEntry{Name: e.Name, Path: e.Path, IsDir: e.Type == fspb.FileType_FILE_TYPE_DIRECTORY, Size: e.Size, Permissions: e.Permissions}
	if e.ModifiedTime != nil {
		out.ModifiedUnixMs = e.ModifiedTime.AsTime().UnixMilli()
	}
	return out
}

func (s *Service) ListDir(ctx context.Context, req *connect.Request[pb.ListDirRequest]) (*connect.Response[pb.ListDirResponse], error) {
	c, err := s.envdFor(req.Msg.SandboxId)
	if err != nil {
		return nil, err
	}
	r, err := c.FS.ListDir(ctx, withUser(connect.NewRequest(&fspb.ListDirRequest{Path: req.Msg.Path, Depth: req.Msg.Depth}), req.Msg.User))
	if err != nil {
		return nil, rpcError(err)
	}
	out := &pb.ListDirResponse{}
	for _, e := range r.Msg.Entries {
		out.Entries = append(out.Entries, entryPB(e))
	}
	return connect.NewResponse(out), nil
}

func (s *Service) MakeDir(ctx context.Context, req *connect.Request[pb.MakeDirRequest]) (*connect.Response[pb.MakeDirResponse], error) {
	c, err := s.envdFor(req.Msg.SandboxId)
	if err != nil {
		return nil, err
	}
	r, err := c.FS.MakeDir(ctx, withUser(connect.NewRequest(&fspb.MakeDirRequest{Path: req.Msg.Path}), req.Msg.User))
	if err != nil {
		return nil, rpcError(err)
	}
	return connect.NewResponse(&pb.MakeDirResponse{Entry: entryPB(r.Msg.Entry)}), nil
}

func (s *Service) RemovePath(ctx context.Context, req *connect.Request[pb.RemovePathRequest]) (*connect.Response[pb.RemovePathResponse], error) {
	c, err := s.envdFor(req.Msg.SandboxId)
	if err != nil {
		return nil, err
	}
	if _, err := c.FS.Remove(ctx, withUser(connect.NewRequest(&fspb.RemoveRequest{Path: req.Msg.Path}), req.Msg.User)); err != nil {
		return nil, rpcError(err)
	}
	return connect.NewResponse(&pb.RemovePathResponse{}), nil
}

func (s *Service) MovePath(ctx context.Context, req *connect.Request[pb.MovePathRequest]) (*connect.Response[pb.MovePathResponse], error) {
	c, err := s.envdFor(req.Msg.SandboxId)
	if err != nil {
		return nil, err
	}
	r, err := c.FS.Move(ctx, withUser(connect.NewRequest(&fspb.MoveRequest{Source: req.Msg.Source, Destination: req.Msg.Destination}), req.Msg.User))
	if err != nil {
		return nil, rpcError(err)
	}
	return connect.NewResponse(&pb.MovePathResponse{Entry: entryPB(r.Msg.Entry)}), nil
}

func pidSel(pid uint32) *procpb.ProcessSelector {
	return &procpb.ProcessSelector{Selector: &procpb.ProcessSelector_Pid{Pid: pid}}
}

// PtyAttach starts a terminal (pid 0) or follows an existing one.
func (s *Service) PtyAttach(ctx context.Context, req *connect.Request[pb.PtyAttachRequest], out *connect.ServerStream[pb.PtyAttachResponse]) error {
	m := req.Msg
	c, err := s.envdFor(m.SandboxId)
	if err != nil {
		return err
	}
	type eventStream interface {
		Receive() bool
		Err() error
		Close() error
	}
	var stream eventStream
	var next func() *procpb.ProcessEvent
	if m.Pid == 0 {
		cmd, args := m.Cmd, m.Args
		if cmd == "" {
			cmd, args = "/bin/bash", []string{"-i", "-l"}
		}
		envs := map[string]string{"TERM": "xterm-256color", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
		for k, v := range m.Envs {
			envs[k] = v
		}
		cols, rows := max(m.Cols, 1), max(m.Rows, 1)
		if m.Cols == 0 || m.Rows == 0 {
			cols, rows = 80, 24
		}
		st, err := c.ProcessStream.Start(ctx, withUser(connect.NewRequest(&procpb.StartRequest{
			Process: &procpb.ProcessConfig{Cmd: cmd, Args: args, Envs: envs},
			Pty:     &procpb.PTY{Size: &procpb.PTY_Size{Cols: cols, Rows: rows}},
		}), m.User))
		if err != nil {
			return rpcError(err)
		}
		stream, next = st, func() *procpb.ProcessEvent { return st.Msg().GetEvent() }
	} else {
		st, err := c.ProcessStream.Connect(ctx, connect.NewRequest(&procpb.ConnectRequest{Process: pidSel(m.Pid)}))
		if err != nil {
			return rpcError(err)
		}
		stream, next = st, func() *procpb.ProcessEvent { return st.Msg().GetEvent() }
	}
	defer stream.Close()
	for stream.Receive() {
		var msg *pb.PtyAttachResponse
		switch e := next().GetEvent().(type) {
		case *procpb.ProcessEvent_Start:
			msg = &pb.PtyAttachResponse{Event: &pb.PtyAttachResponse_StartedPid{StartedPid: e.Start.GetPid()}}
		case *procpb.ProcessEvent_Data:
			msg = &pb.PtyAttachResponse{Event: &pb.PtyAttachResponse_Output{Output: e.Data.GetPty()}}
		case *procpb.ProcessEvent_End:
			msg = &pb.PtyAttachResponse{Event: &pb.PtyAttachResponse_End{End: &pb.ExecEnd{ExitCode: e.End.GetExitCode(), Error: e.End.GetError()}}}
		default:
			continue
		}
		if err := out.Send(msg); err != nil {
			return err
		}
	}
	return rpcError(stream.Err())
}

func (s *Service) PtySendInput(ctx context.Context, req *connect.Request[pb.PtySendInputRequest]) (*connect.Response[pb.PtySendInputResponse], error) {
	c, err := s.envdFor(req.Msg.SandboxId)
	if err != nil {
		return nil, err
	}
	if _, err := c.Process.SendInput(ctx, connect.NewRequest(&procpb.SendInputRequest{Process: pidSel(req.Msg.Pid), Input: &procpb.ProcessInput{Input: &procpb.ProcessInput_Pty{Pty: req.Msg.Data}}})); err != nil {
		return nil, rpcError(err)
	}
	return connect.NewResponse(&pb.PtySendInputResponse{}), nil
}

func (s *Service) PtyResize(ctx context.Context, req *connect.Request[pb.PtyResizeRequest]) (*connect.Response[pb.PtyResizeResponse], error) {
	if req.Msg.Cols == 0 || req.Msg.Rows == 0 {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("cols and rows must be above 0"))
	}
	c, err := s.envdFor(req.Msg.SandboxId)
	if err != nil {
		return nil, err
	}
	if _, err := c.Process.Update(ctx, connect.NewRequest(&procpb.UpdateRequest{Process: pidSel(req.Msg.Pid), Pty: &procpb.PTY{Size: &procpb.PTY_Size{Cols: req.Msg.Cols, Rows: req.Msg.Rows}}})); err != nil {
		return nil, rpcError(err)
	}
	return connect.NewResponse(&pb.PtyResizeResponse{}), nil
}

func (s *Service) PtyKill(ctx context.Context, req *connect.Request[pb.PtyKillRequest]) (*connect.Response[pb.PtyKillResponse], error) {
	c, err := s.envdFor(req.Msg.SandboxId)
	if err != nil {
		return nil, err
	}
	if _, err := c.Process.SendSignal(ctx, connect.NewRequest(&procpb.SendSignalRequest{Process: pidSel(req.Msg.Pid), Signal: procpb.Signal_SIGNAL_SIGKILL})); err != nil {
		return nil, rpcError(err)
	}
	return connect.NewResponse(&pb.PtyKillResponse{}), nil
}
