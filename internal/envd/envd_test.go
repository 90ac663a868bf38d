package envd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/internal/envd/files"
	"git.omukk.dev/wrenn/sandbox/internal/envdapi"
	"git.omukk.dev/wrenn/sandbox/internal/waitfor"
	fspb "git.omukk.dev/wrenn/sandbox/proto/envd/filesystem"
	"git.omukk.dev/wrenn/sandbox/proto/envd/filesystem/filesystemconnect"
	pb "git.omukk.dev/wrenn/sandbox/proto/envd/process"
	"git.omukk.dev/wrenn/sandbox/proto/envd/process/processconnect"
)

type testEnvd struct {
	srv  *Server
	url  string
	proc processconnect.ProcessClient
	fs   filesystemconnect.FilesystemClient
	// JSON clients, as the E2B JS SDK speaks.
	procJSON processconnect.ProcessClient
}

func startEnvd(t *testing.T) *testEnvd {
	t.Helper()
	return startEnvdLogging(t, testLogger(t))
}

func startEnvdLogging(t *testing.T, log *slog.Logger) *testEnvd {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Local: true, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	u := "http://" + ln.Addr().String()
	return &testEnvd{
		srv:      srv,
		url:      u,
		proc:     processconnect.NewProcessClient(http.DefaultClient, u),
		procJSON: processconnect.NewProcessClient(http.DefaultClient, u, connect.WithProtoJSON()),
		fs:       filesystemconnect.NewFilesystemClient(http.DefaultClient, u),
	}
}

// testLogger shows envd's log only for failing or verbose tests.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type result struct {
	pid                 uint32
	stdout, stderr, pty []byte
	end                 *pb.ProcessEvent_EndEvent
	keepalives          int
}

type eventStream interface {
	Receive() bool
	Err() error
}

func collect[T interface{ GetEvent() *pb.ProcessEvent }](t *testing.T, s interface {
	eventStream
	Msg() T
}) result {
	t.Helper()
	var r result
	first := true
	for s.Receive() {
		ev := s.Msg().GetEvent()
		if first {
			if ev.GetStart() == nil {
				t.Fatalf("first event is %v, want start", ev)
			}
			r.pid = ev.GetStart().GetPid()
			first = false
			continue
		}
		switch e := ev.GetEvent().(type) {
		case *pb.ProcessEvent_Data:
			r.stdout = append(r.stdout, e.Data.GetStdout()...)
			r.stderr = append(r.stderr, e.Data.GetStderr()...)
			r.pty = append(r.pty, e.Data.GetPty()...)
		case *pb.ProcessEvent_End:
			r.end = e.End
		case *pb.ProcessEvent_Keepalive:
			r.keepalives++
		}
	}
	if err := s.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	return r
}

func bash(script string) *pb.StartRequest {
	f := false
	return &pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "/bin/bash", Args: []string{"-c", script}}, Stdin: &f}
}

func run(t *testing.T, c processconnect.ProcessClient, req *pb.StartRequest) result {
	t.Helper()
	s, err := c.Start(context.Background(), connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	return collect(t, s)
}

func TestStartOutputAndExitBothCodecs(t *testing.T) {
	e := startEnvd(t)
	for name, c := range map[string]processconnect.ProcessClient{"binary": e.proc, "json": e.procJSON} {
		t.Run(name, func(t *testing.T) {
			r := run(t, c, bash("echo out; echo err >&2; exit 7"))
			if string(r.stdout) != "out\n" || string(r.stderr) != "err\n" {
				t.Fatalf("stdout %q stderr %q", r.stdout, r.stderr)
			}
			if r.end == nil || r.end.ExitCode != 7 || !r.end.Exited || r.end.Status != "exit status 7" || r.end.GetError() != "exit status 7" {
				t.Fatalf("end = %v", r.end)
			}
			ok := run(t, c, bash("true"))
			if ok.end.ExitCode != 0 || ok.end.Error != nil {
				t.Fatalf("end of true = %v", ok.end)
			}
		})
	}
}

func TestStartBadInput(t *testing.T) {
	e := startEnvd(t)
	ctx := context.Background()
	cases := map[string]*pb.StartRequest{
		"missing binary": {Process: &pb.ProcessConfig{Cmd: "/no/such/binary"}},
		"missing cwd":    {Process: &pb.ProcessConfig{Cmd: "/bin/true", Cwd: ptr("/no/such/dir")}},
		"no cmd":         {Process: &pb.ProcessConfig{}},
	}
	for name, req := range cases {
		s, err := e.proc.Start(ctx, connect.NewRequest(req))
		if err == nil {
			for s.Receive() {
			}
			err = s.Err()
		}
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("%s: err = %v, want invalid_argument", name, err)
		}
	}
	req := connect.NewRequest(bash("true"))
	req.Header().Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("no-such-user-xyz:")))
	s, err := e.proc.Start(ctx, req)
	if err == nil {
		for s.Receive() {
		}
		err = s.Err()
	}
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("unknown user: err = %v, want unauthenticated", err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestConnectByTagAmongMany(t *testing.T) {
	e := startEnvd(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pids := map[string]uint32{}
	for i := range 6 {
		tag := fmt.Sprintf("job-%d", i)
		req := bash(fmt.Sprintf("echo tag=%s; sleep 30", tag))
		req.Tag = &tag
		s, err := e.proc.Start(ctx, connect.NewRequest(req))
		if err != nil {
			t.Fatal(err)
		}
		if !s.Receive() {
			t.Fatal(s.Err())
		}
		pids[tag] = s.Msg().GetEvent().GetStart().GetPid()
	}
	list, err := e.proc.List(ctx, connect.NewRequest(&pb.ListRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Msg.Processes {
		if p.GetTag() != "" && pids[p.GetTag()] != p.Pid {
			t.Errorf("list: tag %s has pid %d, want %d", p.GetTag(), p.Pid, pids[p.GetTag()])
		}
	}
	cs, err := e.proc.Connect(ctx, connect.NewRequest(&pb.ConnectRequest{Process: &pb.ProcessSelector{Selector: &pb.ProcessSelector_Tag{Tag: "job-4"}}}))
	if err != nil {
		t.Fatal(err)
	}
	if !cs.Receive() {
		t.Fatal(cs.Err())
	}
	if got := cs.Msg().GetEvent().GetStart().GetPid(); got != pids["job-4"] {
		t.Fatalf("connect by tag job-4: pid %d, want %d", got, pids["job-4"])
	}
	for tag, pid := range pids {
		if _, err := e.proc.SendSignal(ctx, connect.NewRequest(&pb.SendSignalRequest{Process: &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid}}, Signal: pb.Signal_SIGNAL_SIGKILL})); err != nil {
			t.Errorf("kill %s: %v", tag, err)
		}
	}
	_, err = e.proc.Connect(ctx, connect.NewRequest(&pb.ConnectRequest{Process: &pb.ProcessSelector{Selector: &pb.ProcessSelector_Tag{Tag: "nope"}}}))
	if err == nil {
		_, err = e.proc.Connect(ctx, connect.NewRequest(&pb.ConnectRequest{Process: &pb.ProcessSelector{Selector: &pb.ProcessSelector_Tag{Tag: "nope"}}}))
	}
}

func selPid(pid uint32) *pb.ProcessSelector {
	return &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid}}
}

// A burst the size of a recursive listing, over a PTY, arrives complete.
func TestPtyBurstArrivesComplete(t *testing.T) {
	e := startEnvd(t)
	const lines = 400000
	req := &pb.StartRequest{
		Process: &pb.ProcessConfig{Cmd: "/bin/bash", Args: []string{"-c", fmt.Sprintf("stty raw -echo; seq 1 %d", lines)}},
		Pty:     &pb.PTY{Size: &pb.PTY_Size{Cols: 80, Rows: 24}},
	}
	r := run(t, e.proc, req)
	want, err := exec.Command("seq", "1", fmt.Sprint(lines)).Output()
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(r.pty) != sha256.Sum256(want) {
		t.Fatalf("pty output: %d bytes, want %d identical bytes", len(r.pty), len(want))
	}
	if r.end.ExitCode != 0 {
		t.Fatalf("end = %v", r.end)
	}
}

// Terminal input with ends of input (Ctrl-D) among it, in one message:
// each end at the start of a line ends the program reading, and what
// follows it reaches the next reader, in order; after text without a
// newline, Ctrl-D hands the text over and ends nothing. (In gVisor this
// needs envd's care: tests/e2e TestAgentTerminalEndOfInput.)
func TestPtyEndOfInputAmongInput(t *testing.T) {
	e := startEnvd(t)
	dir := t.TempDir()
	req := &pb.StartRequest{
		Process: &pb.ProcessConfig{Cmd: "/bin/bash", Args: []string{"-c", "cat > one; cat > two; read -r x; echo \"got:$x\""}, Cwd: &dir},
		Pty:     &pb.PTY{Size: &pb.PTY_Size{Cols: 80, Rows: 24}},
	}
	s, err := e.proc.Start(context.Background(), connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Receive() || s.Msg().GetEvent().GetStart() == nil {
		t.Fatalf("no start: %v", s.Err())
	}
	pid := s.Msg().GetEvent().GetStart().GetPid()
	send := func(data string) {
		t.Helper()
		in := &pb.SendInputRequest{Process: &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid}}, Input: &pb.ProcessInput{Input: &pb.ProcessInput_Pty{Pty: []byte(data)}}}
		if _, err := e.proc.SendInput(context.Background(), connect.NewRequest(in)); err != nil {
			t.Fatal(err)
		}
	}
	send("first\rpart")
	send("\x04")
	waitfor.True(t, 10*time.Second, "cat to get the text before Ctrl-D", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "one"))
		return string(b) == "first\npart"
	})
	send("\x04second\r\x04typed\r")
	var out []byte
	var end *pb.ProcessEvent_EndEvent
	for s.Receive() {
		out = append(out, s.Msg().GetEvent().GetData().GetPty()...)
		if e := s.Msg().GetEvent().GetEnd(); e != nil {
			end = e
		}
	}
	if !bytes.Contains(out, []byte("got:typed")) || end.GetExitCode() != 0 {
		t.Fatalf("output %q, end %v (%v)", out, end, s.Err())
	}
	for name, want := range map[string]string{"one": "first\npart", "two": "second\n"} {
		if b, _ := os.ReadFile(filepath.Join(dir, name)); string(b) != want {
			t.Errorf("%s holds %q, want %q", name, b, want)
		}
	}
}

// A terminal's output reaches its client while the program runs on
// quietly: nothing of it waits for more output to come. (envd's reader
// goes on reading what is already there after a full read; on a master
// left in blocking mode that read waited for more instead, holding the
// tail of a burst back, in about one run of three.)
func TestPtyOutputArrivesWhileProgramWaits(t *testing.T) {
	e := startEnvd(t)
	for run := range 8 {
		req := &pb.StartRequest{
			Process: &pb.ProcessConfig{Cmd: "/bin/bash", Args: []string{"-c", "seq 1 20000; echo done-$((1+1)); sleep 60"}},
			Pty:     &pb.PTY{Size: &pb.PTY_Size{Cols: 80, Rows: 24}},
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err := e.proc.Start(ctx, connect.NewRequest(req))
		if err != nil {
			t.Fatal(err)
		}
		var out []byte
		var pid uint32
		for !bytes.Contains(out, []byte("done-2")) && s.Receive() {
			if st := s.Msg().GetEvent().GetStart(); st != nil {
				pid = st.GetPid()
			}
			out = append(out, s.Msg().GetEvent().GetData().GetPty()...)
		}
		cancel()
		if !bytes.Contains(out, []byte("done-2")) {
			t.Fatalf("run %d: %d bytes of output arrived in 5 s, then nothing while the program waited; it ends %q", run, len(out), out[max(0, len(out)-30):])
		}
		kill := &pb.SendSignalRequest{Process: &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: pid}}, Signal: pb.Signal_SIGNAL_SIGKILL}
		if _, err := e.proc.SendSignal(context.Background(), connect.NewRequest(kill)); err != nil {
			t.Fatal(err)
		}
	}
}

// A terminal keeps its latest output for a client that attaches again
// and asks for it (envdapi.ReplayHeader): up to 64 KiB from a line start,
// then what follows, nothing twice; a client that does not ask (E2B's)
// gets only what follows.
func TestPtyReplayOnAttach(t *testing.T) {
	e := startEnvd(t)
	dir := t.TempDir()
	// The output comes while no client follows the terminal.
	req := &pb.StartRequest{
		Process: &pb.ProcessConfig{Cmd: "/bin/bash", Args: []string{"-c", "seq 1 20000; echo done-$((1+1)); touch written; read -r x; echo \"got-$x\""}, Cwd: &dir},
		Pty:     &pb.PTY{Size: &pb.PTY_Size{Cols: 80, Rows: 24}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := e.proc.Start(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Receive() || s.Msg().GetEvent().GetStart() == nil {
		t.Fatalf("no start: %v", s.Err())
	}
	started := s.Msg().GetEvent().GetStart().GetPid()
	s.Close()
	waitfor.NoError(t, 20*time.Second, "the output to be written", func() error {
		_, err := os.Stat(filepath.Join(dir, "written"))
		return err
	})
	out, err := exec.Command("seq", "1", "20000").Output()
	if err != nil {
		t.Fatal(err)
	}
	out = append(bytes.ReplaceAll(out, []byte("\n"), []byte("\r\n")), "done-2\r\n"...)
	attach := func(replay bool) *connect.ServerStreamForClient[pb.ConnectResponse] {
		t.Helper()
		r := connect.NewRequest(&pb.ConnectRequest{Process: &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: started}}})
		if replay {
			r.Header().Set(envdapi.ReplayHeader, "1")
		}
		c, err := e.proc.Connect(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if !c.Receive() || c.Msg().GetEvent().GetStart() == nil {
			t.Fatalf("attach: %v", c.Err())
		}
		return c
	}
	// envd reads the terminal's output a little after the program wrote
	// it: attach until the replay holds all of it.
	var again *connect.ServerStreamForClient[pb.ConnectResponse]
	var replayed []byte
	waitfor.NoError(t, 20*time.Second, "a replay of all the output", func() error {
		if again != nil {
			again.Close()
		}
		again = attach(true)
		if !again.Receive() {
			return fmt.Errorf("no replay: %v", again.Err())
		}
		replayed = again.Msg().GetEvent().GetData().GetPty()
		if !bytes.HasSuffix(replayed, []byte("done-2\r\n")) {
			return fmt.Errorf("the replay ends %q", replayed[max(0, len(replayed)-40):])
		}
		return nil
	})
	plain := attach(false)
	if len(replayed) > 64<<10 || len(replayed) < 60<<10 || !bytes.HasSuffix(out, replayed) || out[len(out)-len(replayed)-1] != '\n' {
		t.Fatalf("replayed %d bytes starting %q: want the output's last 64 KiB from a line start", len(replayed), replayed[:min(40, len(replayed))])
	}
	send := &pb.SendInputRequest{Process: &pb.ProcessSelector{Selector: &pb.ProcessSelector_Pid{Pid: started}}, Input: &pb.ProcessInput{Input: &pb.ProcessInput_Pty{Pty: []byte("x\r")}}}
	if _, err := e.proc.SendInput(ctx, connect.NewRequest(send)); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*connect.ServerStreamForClient[pb.ConnectResponse]{"replaying": again, "plain": plain} {
		var live []byte
		for c.Receive() {
			live = append(live, c.Msg().GetEvent().GetData().GetPty()...)
		}
		if string(live) != "x\r\ngot-x\r\n" { // the echo, the answer
			t.Errorf("%s client: after attaching it got %q, want only the new output", name, live)
		}
	}
}

func TestKeepalivesWhileIdle(t *testing.T) {
	e := startEnvd(t)
	req := connect.NewRequest(bash("sleep 2.5; echo done"))
	req.Header().Set("Keepalive-Ping-Interval", "1")
	s, err := e.proc.Start(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	r := collect(t, s)
	if r.keepalives < 1 || string(r.stdout) != "done\n" {
		t.Fatalf("keepalives %d, stdout %q", r.keepalives, r.stdout)
	}
}

func processListed(t *testing.T, e *testEnvd, pid uint32) bool {
	t.Helper()
	list, err := e.proc.List(context.Background(), connect.NewRequest(&pb.ListRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Msg.Processes {
		if p.Pid == pid {
			return true
		}
	}
	return false
}

// activeConns counts the connections envd is serving a request on.
func activeConns(e *testEnvd) int {
	e.srv.conns.mu.Lock()
	defer e.srv.conns.mu.Unlock()
	n := 0
	for _, c := range e.srv.conns.conns {
		if c.state == http.StateActive {
			n++
		}
	}
	return n
}

func TestDisconnectKeepsProcessTimeoutKillsIt(t *testing.T) {
	e := startEnvd(t)
	ctx, cancel := context.WithCancel(context.Background())
	s, err := e.proc.Start(ctx, connect.NewRequest(bash("sleep 30")))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Receive() {
		t.Fatal(s.Err())
	}
	pid := s.Msg().GetEvent().GetStart().GetPid()
	cancel()
	s.Close()
	waitfor.True(t, 20*time.Second, "envd to finish the stream its client left", func() bool { return activeConns(e) == 0 })
	if !processListed(t, e, pid) {
		t.Fatal("process died with its client; it must keep running")
	}
	if _, err := e.proc.SendSignal(context.Background(), connect.NewRequest(&pb.SendSignalRequest{Process: selPid(pid), Signal: pb.Signal_SIGNAL_SIGTERM})); err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, 20*time.Second, "SIGTERM to end the process", func() bool { return !processListed(t, e, pid) })

	// Connect-Timeout-Ms is the process lifetime.
	tctx, tcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer tcancel()
	s2, err := e.proc.Start(tctx, connect.NewRequest(bash("sleep 30")))
	if err != nil {
		t.Fatal(err)
	}
	if !s2.Receive() {
		t.Fatal(s2.Err())
	}
	pid2 := s2.Msg().GetEvent().GetStart().GetPid()
	for s2.Receive() {
	}
	waitfor.True(t, 20*time.Second, "timeout to kill the process", func() bool { return !processListed(t, e, pid2) })
}

func TestLateConnectSeesEnd(t *testing.T) {
	e := startEnvd(t)
	r := run(t, e.proc, bash("exit 2"))
	s, err := e.proc.Connect(context.Background(), connect.NewRequest(&pb.ConnectRequest{Process: selPid(r.pid)}))
	if err != nil {
		t.Fatal(err)
	}
	late := collect(t, s)
	if late.pid != r.pid || late.end == nil || late.end.ExitCode != 2 {
		t.Fatalf("late connect: pid %d end %v", late.pid, late.end)
	}
	if processListed(t, e, r.pid) {
		t.Fatal("an exited process is listed")
	}
}

func TestInputErrorsAndStdin(t *testing.T) {
	e := startEnvd(t)
	ctx := context.Background()
	code := func(err error) connect.Code { return connect.CodeOf(err) }

	_, err := e.proc.SendInput(ctx, connect.NewRequest(&pb.SendInputRequest{Process: selPid(999999), Input: &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: []byte("x")}}}))
	if code(err) != connect.CodeNotFound {
		t.Errorf("unknown pid: %v", err)
	}
	_, err = e.proc.SendSignal(ctx, connect.NewRequest(&pb.SendSignalRequest{Process: selPid(1), Signal: pb.Signal_SIGNAL_UNSPECIFIED}))
	if code(err) != connect.CodeUnimplemented {
		t.Errorf("unsupported signal: %v", err)
	}

	// A PTY shell: stdin input, CloseStdin are refused; pty input works.
	ptyS, err := e.proc.Start(ctx, connect.NewRequest(&pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "/bin/bash", Args: []string{"--norc", "-i"}}, Pty: &pb.PTY{Size: &pb.PTY_Size{Cols: 80, Rows: 24}}}))
	if err != nil {
		t.Fatal(err)
	}
	ptyS.Receive()
	ptyPid := ptyS.Msg().GetEvent().GetStart().GetPid()
	_, err = e.proc.SendInput(ctx, connect.NewRequest(&pb.SendInputRequest{Process: selPid(ptyPid), Input: &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: []byte("x")}}}))
	if code(err) != connect.CodeInternal {
		t.Errorf("stdin to pty process: %v", err)
	}
	_, err = e.proc.CloseStdin(ctx, connect.NewRequest(&pb.CloseStdinRequest{Process: selPid(ptyPid)}))
	if code(err) != connect.CodeUnknown {
		t.Errorf("close stdin of pty: %v", err)
	}
	_, err = e.proc.SendInput(ctx, connect.NewRequest(&pb.SendInputRequest{Process: selPid(ptyPid), Input: &pb.ProcessInput{}}))
	if code(err) != connect.CodeUnimplemented {
		t.Errorf("empty input: %v", err)
	}
	if _, err := e.proc.Update(ctx, connect.NewRequest(&pb.UpdateRequest{Process: selPid(ptyPid), Pty: &pb.PTY{Size: &pb.PTY_Size{Cols: 120, Rows: 50}}})); err != nil {
		t.Errorf("resize: %v", err)
	}
	if _, err := e.proc.SendInput(ctx, connect.NewRequest(&pb.SendInputRequest{Process: selPid(ptyPid), Input: &pb.ProcessInput{Input: &pb.ProcessInput_Pty{Pty: []byte("stty size; exit 5\n")}}})); err != nil {
		t.Fatal(err)
	}
	var out []byte
	var end *pb.ProcessEvent_EndEvent
	for ptyS.Receive() {
		out = append(out, ptyS.Msg().GetEvent().GetData().GetPty()...)
		if e := ptyS.Msg().GetEvent().GetEnd(); e != nil {
			end = e
		}
	}
	if !bytes.Contains(out, []byte("50 120")) || end == nil || end.ExitCode != 5 {
		t.Fatalf("pty output %q, end %v", out, end)
	}

	// A pipe process: resize is refused, stdin by unary and streaming input.
	yes := true
	s, err := e.proc.Start(ctx, connect.NewRequest(&pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "cat"}, Stdin: &yes}))
	if err != nil {
		t.Fatal(err)
	}
	s.Receive()
	pid := s.Msg().GetEvent().GetStart().GetPid()
	_, err = e.proc.Update(ctx, connect.NewRequest(&pb.UpdateRequest{Process: selPid(pid), Pty: &pb.PTY{Size: &pb.PTY_Size{Cols: 1, Rows: 1}}}))
	if code(err) != connect.CodeInternal {
		t.Errorf("resize without pty: %v", err)
	}
	if _, err := e.proc.SendInput(ctx, connect.NewRequest(&pb.SendInputRequest{Process: selPid(pid), Input: &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: []byte("one\n")}}})); err != nil {
		t.Fatal(err)
	}
	in := e.proc.StreamInput(ctx)
	for _, m := range []*pb.StreamInputRequest{
		{Event: &pb.StreamInputRequest_Start{Start: &pb.StreamInputRequest_StartEvent{Process: selPid(pid)}}},
		{Event: &pb.StreamInputRequest_Data{Data: &pb.StreamInputRequest_DataEvent{Input: &pb.ProcessInput{Input: &pb.ProcessInput_Stdin{Stdin: []byte("two\n")}}}}},
		{Event: &pb.StreamInputRequest_Keepalive{Keepalive: &pb.StreamInputRequest_KeepAlive{}}},
	} {
		if err := in.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := in.CloseAndReceive(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.proc.CloseStdin(ctx, connect.NewRequest(&pb.CloseStdinRequest{Process: selPid(pid)})); err != nil {
		t.Fatal(err)
	}
	var stdout []byte
	for s.Receive() {
		stdout = append(stdout, s.Msg().GetEvent().GetData().GetStdout()...)
	}
	if string(stdout) != "one\ntwo\n" {
		t.Fatalf("cat echoed %q", stdout)
	}
}

func TestManyFollowersSeeSameOutput(t *testing.T) {
	e := startEnvd(t)
	ctx := context.Background()
	s, err := e.proc.Start(ctx, connect.NewRequest(bash("sleep 0.5; seq 1 50000")))
	if err != nil {
		t.Fatal(err)
	}
	s.Receive()
	pid := s.Msg().GetEvent().GetStart().GetPid()
	results := make(chan []byte, 3)
	for range 3 {
		c, err := e.proc.Connect(ctx, connect.NewRequest(&pb.ConnectRequest{Process: selPid(pid)}))
		if err != nil {
			t.Fatal(err)
		}
		c.Receive() // start: subscribed from here on
		go func() {
			var out []byte
			for c.Receive() {
				out = append(out, c.Msg().GetEvent().GetData().GetStdout()...)
			}
			results <- out
		}()
	}
	var first []byte
	for s.Receive() {
		first = append(first, s.Msg().GetEvent().GetData().GetStdout()...)
	}
	want, _ := exec.Command("seq", "1", "50000").Output()
	if !bytes.Equal(first, want) {
		t.Fatalf("starter got %d bytes, want %d", len(first), len(want))
	}
	for range 3 {
		if got := <-results; !bytes.Equal(got, want) {
			t.Fatalf("follower got %d bytes, want %d", len(got), len(want))
		}
	}
}

// --- filesystem ---

func TestFilesystemService(t *testing.T) {
	e := startEnvd(t)
	ctx := context.Background()
	dir := t.TempDir()
	code := connect.CodeOf

	mk, err := e.fs.MakeDir(ctx, connect.NewRequest(&fspb.MakeDirRequest{Path: filepath.Join(dir, "a", "b")}))
	if err != nil || mk.Msg.Entry.Type != fspb.FileType_FILE_TYPE_DIRECTORY {
		t.Fatalf("makedir: %v %v", mk, err)
	}
	if _, err := e.fs.MakeDir(ctx, connect.NewRequest(&fspb.MakeDirRequest{Path: filepath.Join(dir, "a", "b")})); code(err) != connect.CodeAlreadyExists {
		t.Errorf("makedir existing: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "a", "f.txt"), []byte("hello"), 0o640)
	if _, err := e.fs.MakeDir(ctx, connect.NewRequest(&fspb.MakeDirRequest{Path: filepath.Join(dir, "a", "f.txt")})); code(err) != connect.CodeInvalidArgument {
		t.Errorf("makedir over a file: %v", err)
	}
	os.Symlink(filepath.Join(dir, "a", "f.txt"), filepath.Join(dir, "link"))
	os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "dangling"))

	st, err := e.fs.Stat(ctx, connect.NewRequest(&fspb.StatRequest{Path: filepath.Join(dir, "a", "f.txt")}))
	if err != nil {
		t.Fatal(err)
	}
	if en := st.Msg.Entry; en.Size != 5 || en.Mode != 0o640 || en.Permissions != "-rw-r-----" || en.Type != fspb.FileType_FILE_TYPE_FILE || en.ModifiedTime == nil || en.Owner == "" {
		t.Errorf("stat file: %v", en)
	}
	st, err = e.fs.Stat(ctx, connect.NewRequest(&fspb.StatRequest{Path: filepath.Join(dir, "link")}))
	if err != nil {
		t.Fatal(err)
	}
	if en := st.Msg.Entry; en.Type != fspb.FileType_FILE_TYPE_FILE || en.GetSymlinkTarget() != filepath.Join(dir, "a", "f.txt") || !strings.HasPrefix(en.Permissions, "L") {
		t.Errorf("stat symlink: %v", en)
	}
	st, err = e.fs.Stat(ctx, connect.NewRequest(&fspb.StatRequest{Path: filepath.Join(dir, "dangling")}))
	if err != nil || st.Msg.Entry.Type != fspb.FileType_FILE_TYPE_UNSPECIFIED {
		t.Errorf("stat dangling symlink: %v %v", st, err)
	}
	if _, err := e.fs.Stat(ctx, connect.NewRequest(&fspb.StatRequest{Path: filepath.Join(dir, "missing")})); code(err) != connect.CodeNotFound {
		t.Errorf("stat missing: %v", err)
	}

	ls, err := e.fs.ListDir(ctx, connect.NewRequest(&fspb.ListDirRequest{Path: dir, Depth: 3}))
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, en := range ls.Msg.Entries {
		paths = append(paths, strings.TrimPrefix(en.Path, dir))
	}
	if got := strings.Join(paths, ","); got != "/a,/a/b,/a/f.txt,/dangling,/link" {
		t.Errorf("listdir depth 3: %s", got)
	}
	ls, err = e.fs.ListDir(ctx, connect.NewRequest(&fspb.ListDirRequest{Path: dir}))
	if err != nil || len(ls.Msg.Entries) != 3 {
		t.Errorf("listdir depth 0 (=1): %v %v", ls, err)
	}
	if _, err := e.fs.ListDir(ctx, connect.NewRequest(&fspb.ListDirRequest{Path: filepath.Join(dir, "a", "f.txt")})); code(err) != connect.CodeInvalidArgument {
		t.Errorf("listdir of a file: %v", err)
	}
	if _, err := e.fs.ListDir(ctx, connect.NewRequest(&fspb.ListDirRequest{Path: filepath.Join(dir, "missing")})); code(err) != connect.CodeNotFound {
		t.Errorf("listdir missing: %v", err)
	}
	os.Symlink(filepath.Join(dir, "loop2"), filepath.Join(dir, "loop1"))
	os.Symlink(filepath.Join(dir, "loop1"), filepath.Join(dir, "loop2"))
	if _, err := e.fs.ListDir(ctx, connect.NewRequest(&fspb.ListDirRequest{Path: filepath.Join(dir, "loop1")})); code(err) != connect.CodeFailedPrecondition {
		t.Errorf("listdir symlink loop: %v", err)
	}

	mv, err := e.fs.Move(ctx, connect.NewRequest(&fspb.MoveRequest{Source: filepath.Join(dir, "a", "f.txt"), Destination: filepath.Join(dir, "new", "deep", "g.txt")}))
	if err != nil || mv.Msg.Entry.Path != filepath.Join(dir, "new", "deep", "g.txt") {
		t.Fatalf("move: %v %v", mv, err)
	}
	if _, err := e.fs.Move(ctx, connect.NewRequest(&fspb.MoveRequest{Source: filepath.Join(dir, "missing"), Destination: filepath.Join(dir, "x")})); code(err) != connect.CodeNotFound {
		t.Errorf("move missing: %v", err)
	}
	if _, err := e.fs.Remove(ctx, connect.NewRequest(&fspb.RemoveRequest{Path: filepath.Join(dir, "new")})); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); !os.IsNotExist(err) {
		t.Errorf("remove left %v", err)
	}
	if _, err := e.fs.Remove(ctx, connect.NewRequest(&fspb.RemoveRequest{Path: filepath.Join(dir, "new")})); err != nil {
		t.Errorf("removing a missing path is not an error: %v", err)
	}
}

func TestWatchers(t *testing.T) {
	e := startEnvd(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)

	s, err := e.fs.WatchDir(ctx, connect.NewRequest(&fspb.WatchDirRequest{Path: dir, Recursive: true, IncludeEntry: true}))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Receive() || s.Msg().GetStart() == nil {
		t.Fatalf("first watch event: %v %v", s.Msg(), s.Err())
	}
	os.WriteFile(filepath.Join(dir, "sub", "x.txt"), []byte("1"), 0o644)
	got := map[string]bool{}
	for s.Receive() {
		fe := s.Msg().GetFilesystem()
		if fe == nil {
			continue
		}
		got[fe.Type.String()+" "+fe.Name] = true
		if fe.Type == fspb.EventType_EVENT_TYPE_CREATE && fe.Entry == nil {
			t.Error("create event without the requested entry")
		}
		if got["EVENT_TYPE_CREATE sub/x.txt"] && got["EVENT_TYPE_WRITE sub/x.txt"] {
			break
		}
	}
	cancel()

	missing, err := e.fs.WatchDir(context.Background(), connect.NewRequest(&fspb.WatchDirRequest{Path: filepath.Join(dir, "nope")}))
	if err == nil {
		for missing.Receive() {
		}
		err = missing.Err()
	}
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("watching a missing dir: %v", err)
	}

	bg := context.Background()
	w, err := e.fs.CreateWatcher(bg, connect.NewRequest(&fspb.CreateWatcherRequest{Path: dir}))
	if err != nil {
		t.Fatal(err)
	}
	id := w.Msg.WatcherId
	if !strings.HasPrefix(id, "w") || strings.ToLower(id) != id {
		t.Errorf("watcher id %q", id)
	}
	os.WriteFile(filepath.Join(dir, "y.txt"), []byte("2"), 0o644)
	var events []*fspb.FilesystemEvent
	waitfor.True(t, 20*time.Second, "polled events", func() bool {
		r, err := e.fs.GetWatcherEvents(bg, connect.NewRequest(&fspb.GetWatcherEventsRequest{WatcherId: id}))
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, r.Msg.Events...)
		return len(events) > 0
	})
	if events[0].Name != "y.txt" || events[0].Type != fspb.EventType_EVENT_TYPE_CREATE {
		t.Errorf("first polled event %v", events[0])
	}
	if _, err := e.fs.RemoveWatcher(bg, connect.NewRequest(&fspb.RemoveWatcherRequest{WatcherId: id})); err != nil {
		t.Fatal(err)
	}
	if _, err := e.fs.GetWatcherEvents(bg, connect.NewRequest(&fspb.GetWatcherEventsRequest{WatcherId: id})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("events of removed watcher: %v", err)
	}
}

// --- HTTP endpoints ---

func do(t *testing.T, method, u string, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func filesURL(base, path string, extra ...string) string {
	q := url.Values{"path": {path}}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	return base + "/files?" + q.Encode()
}

func TestFilesUploadDownload(t *testing.T) {
	e := startEnvd(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "x", "y", "data.bin")
	payload := bytes.Repeat([]byte("0123456789"), 100000)

	resp, body := do(t, "POST", filesURL(e.url, target), bytes.NewReader(payload), map[string]string{"Content-Type": "application/octet-stream", "X-Metadata-Owner-Team": "blue"})
	if resp.StatusCode != 200 {
		t.Fatalf("upload: %d %s", resp.StatusCode, body)
	}
	var entries []files.EntryInfo
	if err := json.Unmarshal(body, &entries); err != nil || len(entries) != 1 || entries[0].Path != target || entries[0].Type != "file" {
		t.Fatalf("upload answer %s (%v)", body, err)
	}
	resp, body = do(t, "GET", filesURL(e.url, target), nil, nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, payload) {
		t.Fatalf("download: %d, %d bytes", resp.StatusCode, len(body))
	}
	if resp.Header.Get("Content-Disposition") != `inline; filename=data.bin` {
		t.Errorf("content-disposition %q", resp.Header.Get("Content-Disposition"))
	}
	resp, body = do(t, "GET", filesURL(e.url, target), nil, map[string]string{"Range": "bytes=10-19"})
	if resp.StatusCode != 206 || string(body) != "0123456789" {
		t.Errorf("range: %d %q", resp.StatusCode, body)
	}
	st, err := e.fs.Stat(context.Background(), connect.NewRequest(&fspb.StatRequest{Path: target}))
	if err != nil {
		t.Fatal(err)
	}
	if st.Msg.Entry.Metadata["owner-team"] != "blue" {
		t.Errorf("metadata %v", st.Msg.Entry.Metadata)
	}

	// Multipart: every "file" part, each to the full path in its filename.
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	for _, name := range []string{filepath.Join(dir, "m", "one.txt"), filepath.Join(dir, "m", "two.txt")} {
		fw, _ := mw.CreateFormFile("file", name)
		fw.Write([]byte("content of " + filepath.Base(name)))
	}
	fw, _ := mw.CreateFormFile("other", filepath.Join(dir, "m", "ignored.txt"))
	fw.Write([]byte("ignored"))
	mw.Close()
	resp, body = do(t, "POST", e.url+"/files", &mp, map[string]string{"Content-Type": mw.FormDataContentType()})
	if resp.StatusCode != 200 {
		t.Fatalf("multipart: %d %s", resp.StatusCode, body)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "m", "two.txt")); string(b) != "content of two.txt" {
		t.Errorf("multipart file two: %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "m", "ignored.txt")); !os.IsNotExist(err) {
		t.Error("a part not named file was written")
	}

	mp.Reset()
	mw = multipart.NewWriter(&mp)
	for range 2 {
		fw, _ := mw.CreateFormFile("file", filepath.Join(dir, "dup.txt"))
		fw.Write([]byte("x"))
	}
	mw.Close()
	resp, _ = do(t, "POST", e.url+"/files", &mp, map[string]string{"Content-Type": mw.FormDataContentType()})
	if resp.StatusCode != 400 {
		t.Errorf("duplicate multipart targets: %d", resp.StatusCode)
	}

	checks := []struct {
		name, method, url string
		hdr               map[string]string
		want              int
	}{
		{"missing file", "GET", filesURL(e.url, filepath.Join(dir, "nope")), nil, 404},
		{"directory", "GET", filesURL(e.url, dir), nil, 400},
		{"device", "GET", filesURL(e.url, "/dev/zero"), nil, 400},
		{"urandom", "GET", filesURL(e.url, "/dev/urandom"), nil, 400},
		{"upload onto a directory", "POST", filesURL(e.url, dir), map[string]string{"Content-Type": "application/octet-stream"}, 400},
		{"octet-stream without path", "POST", e.url + "/files", map[string]string{"Content-Type": "application/octet-stream"}, 400},
		{"unknown content type", "POST", filesURL(e.url, filepath.Join(dir, "z")), map[string]string{"Content-Type": "text/plain"}, 400},
		{"unknown encoding", "POST", filesURL(e.url, filepath.Join(dir, "z")), map[string]string{"Content-Type": "application/octet-stream", "Content-Encoding": "br"}, 400},
		{"bad metadata", "POST", filesURL(e.url, filepath.Join(dir, "z")), map[string]string{"Content-Type": "application/octet-stream", "X-Metadata-K": "caf\xc3\xa9"}, 400},
		{"unknown user", "GET", filesURL(e.url, target, "username", "no-such-user-xyz"), nil, 401},
		{"other user's home", "GET", filesURL(e.url, "~root/x"), nil, 400},
	}
	for _, c := range checks {
		resp, body := do(t, c.method, c.url, strings.NewReader(""), c.hdr)
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, body, c.want)
			continue
		}
		var eb struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(body, &eb); err != nil || eb.Code != c.want || eb.Message == "" {
			t.Errorf("%s: error body %q", c.name, body)
		}
	}
}

// A client that goes away mid-upload leaves the old file as it was and no
// temporary file behind.
func TestUploadInterruptedKeepsOldContent(t *testing.T) {
	e := startEnvd(t)
	dir := t.TempDir()
	target := filepath.Join(dir, "keep.txt")
	os.WriteFile(target, []byte("original"), 0o644)

	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /files?path=%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n", url.QueryEscape(target))
	conn.Write(bytes.Repeat([]byte("n"), 5000))
	waitfor.True(t, 20*time.Second, "envd to take the upload", func() bool { return activeConns(e) == 1 })
	// Half of the body is in: readers still see the old file whole.
	if b, _ := os.ReadFile(target); string(b) != "original" {
		t.Fatalf("mid-upload the file reads %q", b)
	}
	conn.Close()
	waitfor.True(t, 20*time.Second, "the upload's temporary file to go", func() bool {
		ents, _ := os.ReadDir(dir)
		return len(ents) == 1
	})
	if b, _ := os.ReadFile(target); string(b) != "original" {
		t.Fatalf("file is now %q", b)
	}
}

func TestUploadDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	e := startEnvd(t)
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	defer syscall.Unmount(dir, syscall.MNT_DETACH)
	target := filepath.Join(dir, "big.bin")
	os.WriteFile(target, []byte("before"), 0o644)
	resp, body := do(t, "POST", filesURL(e.url, target), bytes.NewReader(make([]byte, 4<<20)), map[string]string{"Content-Type": "application/octet-stream"})
	if resp.StatusCode != http.StatusInsufficientStorage || !strings.Contains(string(body), "not enough disk space") {
		t.Fatalf("disk full: %d %s", resp.StatusCode, body)
	}
	if b, _ := os.ReadFile(target); string(b) != "before" {
		t.Fatalf("file after failed upload: %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
}

// Files and directories written for a user belong to that user.
func TestOwnershipFollowsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as another user")
	}
	e := startEnvd(t)
	dir := sharedDir(t)
	target := filepath.Join(dir, "n", "owned.txt")
	resp, body := do(t, "POST", filesURL(e.url, target, "username", "nobody"), strings.NewReader("x"), map[string]string{"Content-Type": "application/octet-stream"})
	if resp.StatusCode != 200 {
		t.Fatalf("upload as nobody: %d %s", resp.StatusCode, body)
	}
	for _, p := range []string{target, filepath.Dir(target)} {
		st, err := e.fs.Stat(context.Background(), connect.NewRequest(&fspb.StatRequest{Path: p}))
		if err != nil {
			t.Fatal(err)
		}
		if st.Msg.Entry.Owner != "nobody" {
			t.Errorf("%s owned by %s", p, st.Msg.Entry.Owner)
		}
	}
	req := connect.NewRequest(bash("id -un; echo $HOME $USER"))
	req.Header().Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("nobody:")))
	s, err := e.proc.Start(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	r := collect(t, s)
	if !strings.HasPrefix(string(r.stdout), "nobody\n") || !strings.Contains(string(r.stdout), " nobody") {
		t.Fatalf("process as nobody: %q", r.stdout)
	}
	mreq := connect.NewRequest(&fspb.MakeDirRequest{Path: filepath.Join(dir, "d1", "d2")})
	mreq.Header().Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("nobody:")))
	mk, err := e.fs.MakeDir(context.Background(), mreq)
	if err != nil || mk.Msg.Entry.Owner != "nobody" {
		t.Fatalf("makedir as nobody: %v %v", mk, err)
	}
}

func TestInitAuthAndSignedURLs(t *testing.T) {
	e := startEnvd(t)
	token := strings.Repeat("ab", 32)
	dir := t.TempDir()
	target := filepath.Join(dir, "s.txt")
	os.WriteFile(target, []byte("secret"), 0o644)

	initBody := fmt.Sprintf(`{"accessToken":%q,"envVars":{"GREETING":"hi"},"defaultWorkdir":%q,"timestamp":%q}`, token, dir, time.Now().Format(time.RFC3339Nano))
	resp, body := do(t, "POST", e.url+"/init", strings.NewReader(initBody), map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != 204 || resp.Header.Get(envdapi.VersionHeader) != envdapi.Version {
		t.Fatalf("init: %d %s", resp.StatusCode, body)
	}

	// Everything but the public routes needs the token now.
	listReq := `{}`
	hdrs := map[string]string{"Content-Type": "application/json", "Connect-Protocol-Version": "1"}
	if resp, _ := do(t, "POST", e.url+"/process.Process/List", strings.NewReader(listReq), hdrs); resp.StatusCode != 401 {
		t.Errorf("list without token: %d", resp.StatusCode)
	}
	hdrs["X-Access-Token"] = token
	if resp, body := do(t, "POST", e.url+"/process.Process/List", strings.NewReader(listReq), hdrs); resp.StatusCode != 200 {
		t.Errorf("list with token: %d %s", resp.StatusCode, body)
	}
	hdrs["X-Access-Token"] = token[:63] + "0"
	if resp, _ := do(t, "POST", e.url+"/process.Process/List", strings.NewReader(listReq), hdrs); resp.StatusCode != 401 {
		t.Errorf("list with wrong token: %d", resp.StatusCode)
	}
	for _, p := range []string{"/envs", "/metrics"} {
		if resp, _ := do(t, "GET", e.url+p, nil, nil); resp.StatusCode != 401 {
			t.Errorf("%s without token: %d", p, resp.StatusCode)
		}
	}
	if resp, _ := do(t, "POST", e.url+"/snapshot/prepare", nil, nil); resp.StatusCode != 401 {
		t.Errorf("snapshot/prepare without token: %d", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", e.url+"/health", nil, nil); resp.StatusCode != 204 {
		t.Errorf("health: %d", resp.StatusCode)
	}
	resp, body = do(t, "GET", e.url+"/envs", nil, map[string]string{"X-Access-Token": token})
	var envs map[string]string
	json.Unmarshal(body, &envs)
	if resp.StatusCode != 200 || envs["GREETING"] != "hi" || envs["E2B_SANDBOX"] != "true" {
		t.Errorf("envs: %d %s", resp.StatusCode, body)
	}

	// /files: token, or a signature over path, operation, user and expiry.
	if resp, _ := do(t, "GET", filesURL(e.url, target), nil, nil); resp.StatusCode != 401 {
		t.Errorf("files without auth: %d", resp.StatusCode)
	}
	if resp, body := do(t, "GET", filesURL(e.url, target), nil, map[string]string{"X-Access-Token": token}); resp.StatusCode != 200 || string(body) != "secret" {
		t.Errorf("files with token: %d", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", filesURL(e.url, target), nil, map[string]string{"X-Access-Token": "nope"}); resp.StatusCode != 401 {
		t.Errorf("files with a wrong token: %d", resp.StatusCode)
	}
	sig := files.Signature(target, "read", "", token, 0)
	if resp, body := do(t, "GET", filesURL(e.url, target, "signature", sig), nil, nil); resp.StatusCode != 200 || string(body) != "secret" {
		t.Errorf("signed read: %d %s", resp.StatusCode, body)
	}
	if resp, _ := do(t, "POST", filesURL(e.url, target, "signature", sig), strings.NewReader("x"), map[string]string{"Content-Type": "application/octet-stream"}); resp.StatusCode != 401 {
		t.Errorf("read signature used to write: %d", resp.StatusCode)
	}
	past := time.Now().Add(-time.Minute).Unix()
	expired := files.Signature(target, "read", "", token, past)
	if resp, body := do(t, "GET", filesURL(e.url, target, "signature", expired, "signature_expiration", fmt.Sprint(past)), nil, nil); resp.StatusCode != 401 || !strings.Contains(string(body), "expired") {
		t.Errorf("expired signature: %d %s", resp.StatusCode, body)
	}
	future := time.Now().Add(time.Minute).Unix()
	valid := files.Signature("s.txt", "write", "", token, future)
	if resp, body := do(t, "POST", e.url+"/files?"+url.Values{"path": {"s.txt"}, "signature": {valid}, "signature_expiration": {fmt.Sprint(future)}}.Encode(), strings.NewReader("new"), map[string]string{"Content-Type": "application/octet-stream"}); resp.StatusCode != 200 {
		t.Errorf("signed write of a path relative to the workdir: %d %s", resp.StatusCode, body)
	}
	if b, _ := os.ReadFile(target); string(b) != "new" {
		t.Errorf("signed write wrote %q", b)
	}

	// Processes see /init's env and workdir.
	c := processconnect.NewProcessClient(&http.Client{Transport: withHeader{"X-Access-Token", token}}, e.url)
	r := run(t, c, bash("echo $GREETING; pwd"))
	if string(r.stdout) != "hi\n"+dir+"\n" {
		t.Errorf("env/workdir: %q", r.stdout)
	}

	// /init: a wrong token is refused; the same token again is fine;
	// an unknown default user is a 400; bad JSON is a 400.
	if resp, _ := do(t, "POST", e.url+"/init", strings.NewReader(`{"accessToken":"other"}`), nil); resp.StatusCode != 401 {
		t.Errorf("init with another token: %d", resp.StatusCode)
	}
	if resp, _ := do(t, "POST", e.url+"/init", strings.NewReader(`{}`), nil); resp.StatusCode != 401 {
		t.Errorf("init without the token: %d", resp.StatusCode)
	}
	if resp, _ := do(t, "POST", e.url+"/init", strings.NewReader(fmt.Sprintf(`{"accessToken":%q,"defaultUser":"no-such-user-xyz"}`, token)), nil); resp.StatusCode != 400 {
		t.Errorf("init with unknown user: %d", resp.StatusCode)
	}
	if resp, _ := do(t, "POST", e.url+"/init", strings.NewReader(`{"accessToken":`), nil); resp.StatusCode != 400 {
		t.Errorf("init with bad JSON: %d", resp.StatusCode)
	}
	stale := fmt.Sprintf(`{"accessToken":%q,"envVars":{"GREETING":"stale"},"timestamp":%q}`, token, time.Now().Add(-time.Hour).Format(time.RFC3339))
	if resp, _ := do(t, "POST", e.url+"/init", strings.NewReader(stale), nil); resp.StatusCode != 204 {
		t.Errorf("stale init: %d", resp.StatusCode)
	}
	if resp, body := do(t, "GET", e.url+"/envs", nil, map[string]string{"X-Access-Token": token}); !strings.Contains(string(body), `"GREETING":"hi"`) {
		t.Errorf("a stale /init changed the env: %d %s", resp.StatusCode, body)
	}
	// A clone replaces the token frozen in its snapshot by presenting the
	// current one in X-Access-Token; a wrong header token does not.
	if resp, _ := do(t, "POST", e.url+"/init", strings.NewReader(`{"accessToken":"clone-token"}`), map[string]string{"X-Access-Token": "wrong"}); resp.StatusCode != 401 {
		t.Errorf("init with a wrong header token: %d", resp.StatusCode)
	}
	if resp, _ := do(t, "POST", e.url+"/init", strings.NewReader(`{"accessToken":"clone-token"}`), map[string]string{"X-Access-Token": token}); resp.StatusCode != 204 {
		t.Errorf("init replacing the token: %d", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", e.url+"/envs", nil, map[string]string{"X-Access-Token": token}); resp.StatusCode != 401 {
		t.Errorf("the replaced token still works: %d", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", e.url+"/envs", nil, map[string]string{"X-Access-Token": "clone-token"}); resp.StatusCode != 200 {
		t.Errorf("the new token: %d", resp.StatusCode)
	}
}

// withHeader adds one header to every request, streams included.
type withHeader struct{ key, value string }

func (h withHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.key, h.value)
	return http.DefaultTransport.RoundTrip(r)
}

func TestMetrics(t *testing.T) {
	e := startEnvd(t)
	resp, body := do(t, "GET", e.url+"/metrics", nil, nil)
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil || resp.StatusCode != 200 {
		t.Fatalf("metrics: %d %s", resp.StatusCode, body)
	}
	for _, k := range []string{"ts", "cpu_count", "cpu_used_pct", "mem_total_mib", "mem_used_mib", "mem_total", "mem_used", "mem_cache", "disk_used", "disk_total"} {
		if _, ok := m[k]; !ok {
			t.Errorf("metrics lack %s", k)
		}
	}
	if m["mem_total"].(float64) <= 0 || m["disk_total"].(float64) <= 0 || int(m["cpu_count"].(float64)) != runtime.NumCPU() {
		t.Errorf("metrics values %v", m)
	}
}

// /snapshot/prepare closes idle connections; the /init after a restore
// closes the ones that were open across the snapshot and keeps newer ones.
func TestSnapshotConnectionHandling(t *testing.T) {
	e := startEnvd(t)
	addr := strings.TrimPrefix(e.url, "http://")

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	fmt.Fprintf(idle, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 204 {
		t.Fatalf("health on idle conn: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	busyClient := &http.Client{Transport: &http.Transport{}}
	defer busyClient.CloseIdleConnections()
	watch := filesystemconnect.NewFilesystemClient(busyClient, e.url)
	ws, err := watch.WatchDir(ctx, connect.NewRequest(&fspb.WatchDirRequest{Path: t.TempDir()}))
	if err != nil {
		t.Fatal(err)
	}
	if !ws.Receive() {
		t.Fatal(ws.Err())
	}

	if resp, body := do(t, "POST", e.url+"/snapshot/prepare", nil, nil); resp.StatusCode != 204 {
		t.Fatalf("prepare: %d %s", resp.StatusCode, body)
	}
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("idle connection still open after prepare: %v", err)
	}

	if resp, _ := do(t, "POST", e.url+"/init", strings.NewReader(`{}`), nil); resp.StatusCode != 204 {
		t.Fatal("init after prepare")
	}
	done := make(chan bool)
	go func() {
		for ws.Receive() {
		}
		done <- true
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a stream from before the snapshot survived the restore's /init")
	}
	// Keep-alives work again after the restore.
	if resp, _ := do(t, "GET", e.url+"/health", nil, nil); resp.StatusCode != 204 {
		t.Fatal("health after restore")
	}
}

// Nothing envd started survives its shutdown: goroutines included.
func TestShutdownLeavesNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		srv, err := New(Config{Local: true, Log: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ln) }()
		u := "http://" + ln.Addr().String()
		client := &http.Client{Transport: &http.Transport{}}
		defer client.CloseIdleConnections()
		pc := processconnect.NewProcessClient(client, u)
		fc := filesystemconnect.NewFilesystemClient(client, u)
		ctx := context.Background()
		s, err := pc.Start(ctx, connect.NewRequest(bash("sleep 60")))
		if err != nil {
			t.Fatal(err)
		}
		s.Receive()
		pid := s.Msg().GetEvent().GetStart().GetPid()
		if _, err := fc.CreateWatcher(ctx, connect.NewRequest(&fspb.CreateWatcherRequest{Path: t.TempDir()})); err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Fatal(err)
		}
		<-done
		for s.Receive() {
		}
		if err := syscall.Kill(int(pid), 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d survived shutdown: %v", pid, err)
		}
	}()
	waitfor.True(t, 20*time.Second, "goroutines to end", func() bool {
		http.DefaultClient.CloseIdleConnections()
		return runtime.NumGoroutine() <= before
	})
}

// Every upload shows a directory watcher a write on the target's own name
// and nothing of the temporary file it is written through (issue 15, bug 4),
// for a new file, an overwrite, an empty body and a multipart upload, on
// the streaming and the polling watcher.
func TestUploadShowsWriteToWatchers(t *testing.T) {
	e := startEnvd(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := e.fs.WatchDir(ctx, connect.NewRequest(&fspb.WatchDirRequest{Path: dir, IncludeEntry: true}))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Receive() || s.Msg().GetStart() == nil {
		t.Fatalf("first watch event: %v %v", s.Msg(), s.Err())
	}
	pw, err := e.fs.CreateWatcher(ctx, connect.NewRequest(&fspb.CreateWatcherRequest{Path: dir}))
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan *fspb.FilesystemEvent, 100)
	go func() {
		for s.Receive() {
			if fe := s.Msg().GetFilesystem(); fe != nil {
				events <- fe
			}
		}
		close(events)
	}()
	var polled []*fspb.FilesystemEvent
	octet := map[string]string{"Content-Type": "application/octet-stream"}
	uploads := []struct {
		name string
		body func() (io.Reader, map[string]string)
	}{
		{"new.txt", func() (io.Reader, map[string]string) { return strings.NewReader("first"), octet }},
		{"new.txt", func() (io.Reader, map[string]string) { return strings.NewReader("second, longer"), octet }},
		{"empty.txt", func() (io.Reader, map[string]string) { return strings.NewReader(""), octet }},
		{"multi.txt", func() (io.Reader, map[string]string) {
			var b bytes.Buffer
			mw := multipart.NewWriter(&b)
			fw, _ := mw.CreateFormFile("file", "multi.txt")
			fw.Write([]byte("from a form"))
			mw.Close()
			return &b, map[string]string{"Content-Type": mw.FormDataContentType()}
		}},
	}
	for _, up := range uploads {
		body, hdr := up.body()
		target := filepath.Join(dir, up.name)
		if resp, b := do(t, "POST", filesURL(e.url, target), body, hdr); resp.StatusCode != 200 {
			t.Fatalf("upload %s: %d %s", up.name, resp.StatusCode, b)
		}
		var seen []string
		for wrote := false; !wrote; {
			select {
			case fe := <-events:
				seen = append(seen, fe.Type.String()+" "+fe.Name)
				if files.IsTempName(fe.Name) {
					t.Fatalf("the watcher saw the temporary file: %v", seen)
				}
				if fe.Name == up.name && fe.Type == fspb.EventType_EVENT_TYPE_WRITE {
					wrote = true
					want, _ := os.ReadFile(target)
					if fe.Entry == nil || fe.Entry.Size != int64(len(want)) {
						t.Errorf("write event's entry %v, want size %d", fe.Entry, len(want))
					}
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no write event for the upload of %s; saw %v", up.name, seen)
			}
		}
	}
	waitfor.True(t, 20*time.Second, "polled write events", func() bool {
		r, err := e.fs.GetWatcherEvents(ctx, connect.NewRequest(&fspb.GetWatcherEventsRequest{WatcherId: pw.Msg.WatcherId}))
		if err != nil {
			t.Fatal(err)
		}
		polled = append(polled, r.Msg.Events...)
		writes := 0
		for _, fe := range polled {
			if fe.Type == fspb.EventType_EVENT_TYPE_WRITE {
				writes++
			}
		}
		return writes >= len(uploads)
	})
	for _, fe := range polled {
		if files.IsTempName(fe.Name) {
			t.Fatalf("the polling watcher saw the temporary file: %v", polled)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 3 {
		t.Errorf("directory holds %v", ents)
	}
}
