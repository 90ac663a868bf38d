// Package processsvc implements envd's process.Process Connect service:
// starting processes (with or without a PTY) as a chosen user, following
// their output from any number of clients, input, signals and resizing.
package processsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/internal/envd/envstate"
	"git.omukk.dev/wrenn/sandbox/internal/envd/keepalive"
	"git.omukk.dev/wrenn/sandbox/internal/envd/osuser"
	"git.omukk.dev/wrenn/sandbox/internal/envdapi"
	pb "git.omukk.dev/wrenn/sandbox/proto/envd/process"
	"git.omukk.dev/wrenn/sandbox/proto/envd/process/processconnect"
)

// endRetention is how long an exited process's end event stays available to
// a late Connect.
const endRetention = 30 * time.Second

// Service is safe for concurrent use. Close kills what it started.
type Service struct {
	processconnect.UnimplementedProcessHandler

	state *envstate.State
	log   *slog.Logger

	mu      sync.Mutex
	procs   map[uint32]*proc
	expiry  map[uint32]*time.Timer
	closed  bool
	stop    chan struct{}
	running sync.WaitGroup
}

// New returns a service that starts processes with the defaults in state.
func New(state *envstate.State, log *slog.Logger) *Service {
	return &Service{state: state, log: log, procs: map[uint32]*proc{}, expiry: map[uint32]*time.Timer{}, stop: make(chan struct{})}
}

// Close kills every running process with SIGKILL and waits until their
// goroutines have finished.
func (s *Service) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.stop)
	for _, p := range s.procs {
		if !p.ended() {
			_ = p.signal(syscall.SIGKILL)
		}
	}
	for _, t := range s.expiry {
		t.Stop()
	}
	s.mu.Unlock()
	s.running.Wait()
}

func (s *Service) Start(ctx context.Context, req *connect.Request[pb.StartRequest], stream *connect.ServerStream[pb.StartResponse]) error {
	cfg := req.Msg.GetProcess()
	if cfg == nil || cfg.GetCmd() == "" {
		return connect.NewError(connect.CodeInvalidArgument, errors.New("process.cmd is required"))
	}
	u, err := s.state.UserFromHeader(req.Header())
	if err != nil {
		return connect.NewError(connect.CodeUnauthenticated, err)
	}
	cmd, err := s.command(cfg, u)
	if err != nil {
		return err
	}
	stdin := true
	if req.Msg.Stdin != nil {
		stdin = req.Msg.GetStdin()
	}
	out := newFanout()
	if req.Msg.Pty != nil {
		out.keepRecent(replayBytes)
	}
	sub := out.subscribe()
	defer out.unsubscribe(sub)

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return connect.NewError(connect.CodeUnavailable, errors.New("envd is shutting down"))
	}
	s.running.Add(1)
	p, err := startProc(startSpec{cmd: cmd, pty: req.Msg.Pty, stdin: stdin}, cfg, req.Msg.Tag, out, s.stop, s.finished)
	if err != nil {
		s.running.Done()
		s.mu.Unlock()
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	s.procs[p.pid] = p
	// Connect-Timeout-Ms is the process's lifetime, whether or not the
	// client is still there; a client that merely disconnects leaves it running.
	if deadline, ok := ctx.Deadline(); ok {
		p.killTimer.Store(time.AfterFunc(time.Until(deadline), func() {
			if !p.ended() {
				_ = p.signal(syscall.SIGKILL)
			}
		}))
	}
	s.mu.Unlock()
	s.log.Debug("process started", "pid", p.pid, "cmd", cfg.GetCmd(), "user", u.Name, "pty", req.Msg.Pty != nil)

	return follow(ctx, p, sub, keepalive.Interval(req.Header()), func(ev *pb.ProcessEvent) error {
		return stream.Send(&pb.StartResponse{Event: ev})
	})
}

// finished runs on the process's own goroutine once its end event is set.
func (s *Service) finished(p *proc) {
	defer s.running.Done()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.expiry[p.pid] = time.AfterFunc(endRetention, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.procs[p.pid] == p {
			delete(s.procs, p.pid)
		}
		delete(s.expiry, p.pid)
	})
}

func (s *Service) command(cfg *pb.ProcessConfig, u *osuser.User) (*exec.Cmd, error) {
	cwd, err := osuser.ResolvePath(cfg.GetCwd(), u, s.state.Workdir())
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	if cfg.Cwd == nil {
		// Accounts such as nobody have a home that does not exist.
		if fi, err := os.Stat(cwd); err != nil || !fi.IsDir() {
			cwd = "/"
		}
	}
	if fi, err := os.Stat(cwd); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("cwd '%s': %w", cwd, err))
	} else if !fi.IsDir() {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("cwd '%s' is not a directory", cwd))
	}
	env := map[string]string{
		"PATH":    os.Getenv("PATH"),
		"HOME":    u.Home,
		"USER":    u.Name,
		"LOGNAME": u.Name,
	}
	if env["PATH"] == "" {
		env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	maps.Copy(env, s.state.Env())
	maps.Copy(env, cfg.GetEnvs())
	cmd := exec.Command(cfg.GetCmd(), cfg.GetArgs()...)
	cmd.Dir = cwd
	cmd.Env = make([]string, 0, len(env))
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.Credential()}
	return cmd, nil
}

// sendEvery paces data messages while output streams: data that arrives
// within sendEvery of the previous message waits for the rest of that
// interval (or until maxChunk bytes are ready) and goes out with it. Output
// after a quiet spell is sent at once; a burst goes out in a few hundred
// large messages a second instead of thousands of small ones, which is
// what a client that parses every message in script (the E2B SDKs) can
// keep up with. A variable so that tests can change it.
var sendEvery = 5 * time.Millisecond

// follow streams a process's events to one client: start, data, keepalives
// while idle, and end. It returns when the process has ended and its output
// is delivered, or when the client goes away (the process keeps running).
func follow(ctx context.Context, p *proc, sub *subscriber, interval time.Duration, send func(*pb.ProcessEvent) error) error {
	if err := send(&pb.ProcessEvent{Event: &pb.ProcessEvent_Start{Start: &pb.ProcessEvent_StartEvent{Pid: p.pid}}}); err != nil {
		return err
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	defer hold.Stop()
	var (
		pending      []*pb.ProcessEvent_DataEvent
		pendingBytes int
		lastSend     time.Time
	)
	take := func() error {
		events, err := sub.take()
		if err != nil {
			return connect.NewError(connect.CodeResourceExhausted, err)
		}
		for _, ev := range events {
			pendingBytes += len(payload(ev))
		}
		pending = append(pending, events...)
		return nil
	}
	sendPending := func() error {
		if len(pending) == 0 {
			return nil
		}
		for _, d := range coalesce(pending) {
			if err := send(&pb.ProcessEvent{Event: &pb.ProcessEvent_Data{Data: d}}); err != nil {
				return err
			}
		}
		pending, pendingBytes = nil, 0
		lastSend = time.Now()
		ticker.Reset(interval)
		return nil
	}
	for {
		select {
		case <-sub.ready:
			if err := take(); err != nil {
				return err
			}
			if len(pending) == 0 {
				continue
			}
			if wait := sendEvery - time.Since(lastSend); pendingBytes < maxChunk && wait > 0 {
				hold.Reset(wait)
				continue
			}
			hold.Stop()
			if err := sendPending(); err != nil {
				return err
			}
		case <-hold.C:
			if err := sendPending(); err != nil {
				return err
			}
		case <-p.done:
			if err := take(); err != nil {
				return err
			}
			if err := sendPending(); err != nil {
				return err
			}
			return send(&pb.ProcessEvent{Event: &pb.ProcessEvent_End{End: p.end}})
		case <-ticker.C:
			if err := send(&pb.ProcessEvent{Event: &pb.ProcessEvent_Keepalive{Keepalive: &pb.ProcessEvent_KeepAlive{}}}); err != nil {
				return err
			}
		case <-ctx.Done():
			return connect.NewError(connect.CodeCanceled, ctx.Err())
		}
	}
}

func (s *Service) Connect(ctx context.Context, req *connect.Request[pb.ConnectRequest], stream *connect.ServerStream[pb.ConnectResponse]) error {
	p, err := s.find(req.Msg.GetProcess())
	if err != nil {
		return err
	}
	sub := p.out.subscribeReplay(req.Header().Get(envdapi.ReplayHeader) == "1")
	defer p.out.unsubscribe(sub)
	return follow(ctx, p, sub, keepalive.Interval(req.Header()), func(ev *pb.ProcessEvent) error {
		return stream.Send(&pb.ConnectResponse{Event: ev})
	})
}

// find resolves a selector; among several processes with one tag a running
// one wins, then the most recently started.
func (s *Service) find(sel *pb.ProcessSelector) (*proc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch v := sel.GetSelector().(type) {
	case *pb.ProcessSelector_Pid:
		if p, ok := s.procs[v.Pid]; ok {
			return p, nil
		}
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("process with pid %d not found", v.Pid))
	case *pb.ProcessSelector_Tag:
		var best *proc
		for _, p := range s.procs {
			if p.tag == nil || *p.tag != v.Tag {
				continue
			}
			if best == nil || (best.ended() && !p.ended()) || (best.ended() == p.ended() && p.pid > best.pid) {
				best = p
			}
		}
		if best == nil {
			return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("process with tag %q not found", v.Tag))
		}
		return best, nil
	default:
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("process selector needs a pid or a tag"))
	}
}

// findRunning is find for operations that need a live process.
func (s *Service) findRunning(sel *pb.ProcessSelector) (*proc, error) {
	p, err := s.find(sel)
	if err != nil {
		return nil, err
	}
	if p.ended() {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("process %d has already exited", p.pid))
	}
	return p, nil
}

func (s *Service) List(_ context.Context, _ *connect.Request[pb.ListRequest]) (*connect.Response[pb.ListResponse], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &pb.ListResponse{}
	for _, p := range s.procs {
		if p.ended() {
			continue
		}
		out.Processes = append(out.Processes, &pb.ProcessInfo{Config: p.config, Pid: p.pid, Tag: p.tag})
	}
	return connect.NewResponse(out), nil
}

func (s *Service) Update(_ context.Context, req *connect.Request[pb.UpdateRequest]) (*connect.Response[pb.UpdateResponse], error) {
	p, err := s.findRunning(req.Msg.GetProcess())
	if err != nil {
		return nil, err
	}
	if req.Msg.Pty != nil {
		if err := p.resize(req.Msg.Pty.GetSize()); err != nil {
			return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("resize pty of %d: %w", p.pid, err))
		}
	}
	return connect.NewResponse(&pb.UpdateResponse{}), nil
}

func (s *Service) SendInput(_ context.Context, req *connect.Request[pb.SendInputRequest]) (*connect.Response[pb.SendInputResponse], error) {
	p, err := s.findRunning(req.Msg.GetProcess())
	if err != nil {
		return nil, err
	}
	if req.Msg.GetInput().GetInput() == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("input needs stdin or pty bytes"))
	}
	if err := p.writeInput(req.Msg.GetInput()); err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	return connect.NewResponse(&pb.SendInputResponse{}), nil
}

func (s *Service) StreamInput(ctx context.Context, stream *connect.ClientStream[pb.StreamInputRequest]) (*connect.Response[pb.StreamInputResponse], error) {
	var p *proc
	for stream.Receive() {
		msg := stream.Msg()
		switch ev := msg.GetEvent().(type) {
		case *pb.StreamInputRequest_Start:
			if p != nil {
				return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("start sent twice"))
			}
			found, err := s.findRunning(ev.Start.GetProcess())
			if err != nil {
				return nil, err
			}
			p = found
		case *pb.StreamInputRequest_Data:
			if p == nil {
				return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("the first message must be start"))
			}
			if err := p.writeInput(ev.Data.GetInput()); err != nil {
				return nil, connect.NewError(connect.CodeInternal, err)
			}
		case *pb.StreamInputRequest_Keepalive:
		default:
			return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("empty stream input event"))
		}
	}
	if err := stream.Err(); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.StreamInputResponse{}), nil
}

func (s *Service) SendSignal(_ context.Context, req *connect.Request[pb.SendSignalRequest]) (*connect.Response[pb.SendSignalResponse], error) {
	var sig syscall.Signal
	switch req.Msg.GetSignal() {
	case pb.Signal_SIGNAL_SIGKILL:
		sig = syscall.SIGKILL
	case pb.Signal_SIGNAL_SIGTERM:
		sig = syscall.SIGTERM
	default:
		return nil, connect.NewError(connect.CodeUnimplemented, fmt.Errorf("signal %s is not supported; use SIGTERM or SIGKILL", req.Msg.GetSignal()))
	}
	p, err := s.findRunning(req.Msg.GetProcess())
	if err != nil {
		return nil, err
	}
	if err := p.signal(sig); err != nil {
		return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("signal %d: %w", p.pid, err))
	}
	return connect.NewResponse(&pb.SendSignalResponse{}), nil
}

func (s *Service) CloseStdin(_ context.Context, req *connect.Request[pb.CloseStdinRequest]) (*connect.Response[pb.CloseStdinResponse], error) {
	// An exited process's stdin is closed already: not an error.
	p, err := s.find(req.Msg.GetProcess())
	if err != nil {
		return nil, err
	}
	if err := p.closeStdin(); err != nil {
		return nil, connect.NewError(connect.CodeUnknown, err)
	}
	return connect.NewResponse(&pb.CloseStdinResponse{}), nil
}
