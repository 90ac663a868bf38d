package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"

	"git.omukk.dev/wrenn/sandbox/internal/agentclient"
	"git.omukk.dev/wrenn/sandbox/internal/network"
	"git.omukk.dev/wrenn/sandbox/internal/runtime"
	"git.omukk.dev/wrenn/sandbox/internal/waitfor"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
	"git.omukk.dev/wrenn/sandbox/proto/hostagent/v1/hostagentv1connect"
)

const agentSecret = "e2e-secret-0123456789abcdef"

// forEachRuntime runs an agent test against every runtime this host has:
// qemu always, gvisor where runsc is installed (scripts/setup builds it).
func forEachRuntime(t *testing.T, f func(t *testing.T, rt string)) {
	t.Run("qemu", func(t *testing.T) { f(t, "qemu") })
	t.Run("gvisor", func(t *testing.T) {
		requireRunsc(t)
		f(t, "gvisor")
	})
}

type agent struct {
	cmd      *exec.Cmd
	stateDir string
	addr     string
	client   hostagentv1connect.HostAgentServiceClient
	log      *bytes.Buffer
	logw     *syncWriter
	exited   chan error
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startAgent runs the host-agent binary on stateDir ("" for a new one).
func startAgent(t *testing.T, stateDir string, extraArgs ...string) *agent {
	t.Helper()
	a := launchAgent(t, stateDir, []string{"WRENN_AGENT_SECRET=" + agentSecret}, extraArgs...)
	a.waitReady(t, agentSecret)
	return a
}

// launchAgent starts the agent binary; the caller waits for it to serve.
func launchAgent(t *testing.T, stateDir string, env []string, extraArgs ...string) *agent {
	t.Helper()
	if stateDir == "" {
		stateDir = t.TempDir()
	}
	a := &agent{stateDir: stateDir, addr: freeAddr(t), log: &bytes.Buffer{}, exited: make(chan error, 1)}
	args := append([]string{"--listen", a.addr, "--state-dir", stateDir, "--images-dir", imagesDir, "--accel", accel}, extraArgs...)
	if !slices.Contains(extraArgs, "--on-stop") {
		// Tests check that a stopped agent leaves nothing; the default
		// (pause, keep) has its own test.
		args = append(args, "--on-stop", "destroy")
	}
	a.cmd = exec.Command(filepath.Join(binDir, "host-agent"), args...)
	a.cmd.Env = append(os.Environ(), env...)
	a.logw = &syncWriter{w: a.log}
	a.cmd.Stderr = a.logw
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.exited <- a.cmd.Wait() }()
	t.Cleanup(func() {
		a.stop(t, syscall.SIGTERM)
		if t.Failed() {
			t.Logf("agent log:\n%s", a.log.String())
		}
	})
	return a
}

// waitReady waits until the agent answers calls authenticated with secret.
func (a *agent) waitReady(t *testing.T, secret string) {
	t.Helper()
	a.waitServing(t, agentclient.New(a.addr, secret))
}

// waitServing waits until the agent answers calls made through client.
func (a *agent) waitServing(t *testing.T, client hostagentv1connect.HostAgentServiceClient) {
	t.Helper()
	a.client = client
	waitfor.NoError(t, 30*time.Second, "the agent to serve", func() error {
		select {
		case err := <-a.exited:
			a.exited <- err
			t.Fatalf("agent exited: %v\n%s", err, a.log.String())
		default:
		}
		_, err := a.client.HostInfo(context.Background(), connect.NewRequest(&pb.HostInfoRequest{}))
		return err
	})
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// logged tells whether the agent has logged text so far.
func (a *agent) logged(text string) bool {
	a.logw.mu.Lock()
	defer a.logw.mu.Unlock()
	return strings.Contains(a.log.String(), text)
}

func (a *agent) stop(t *testing.T, sig syscall.Signal) {
	select {
	case <-a.exited:
		a.exited <- nil
		return
	default:
	}
	_ = a.cmd.Process.Signal(sig)
	select {
	case <-a.exited:
		a.exited <- nil
	case <-time.After(60 * time.Second):
		a.cmd.Process.Kill()
		t.Errorf("agent did not stop within 60s of %s", sig)
	}
}

func create(t *testing.T, a *agent, id string, mod func(*pb.CreateSandboxRequest)) *pb.Sandbox {
	t.Helper()
	req := &pb.CreateSandboxRequest{SandboxId: id, Template: "minimal", TimeoutSeconds: 600, EnvVars: map[string]string{"FROM_CREATE": "yes"}}
	if mod != nil {
		mod(req)
	}
	resp, err := a.client.CreateSandbox(context.Background(), connect.NewRequest(req))
	if err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	return resp.Msg.Sandbox
}

func execIn(t *testing.T, a *agent, id, script string) *pb.ExecResponse {
	t.Helper()
	resp, err := a.client.Exec(context.Background(), connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "/bin/bash", Args: []string{"-c", script}, User: "root", TimeoutSeconds: 60}))
	if err != nil {
		t.Fatalf("exec in %s: %v", id, err)
	}
	return resp.Msg
}

// assertNoLeftovers checks that no host resource of a sandbox remains.
func assertNoLeftovers(t *testing.T, stateDir string) {
	t.Helper()
	assertNothingRunning(t, stateDir)
	if entries, _ := os.ReadDir(filepath.Join(stateDir, "sandboxes")); len(entries) > 0 {
		t.Errorf("sandbox directories left: %v", entries)
	}
}

// assertNothingRunning checks that no process, namespace, network device,
// iptables rule, mount or cgroup of the agent's sandboxes is left; paused
// sandboxes' files may be.
func assertNothingRunning(t *testing.T, stateDir string) {
	t.Helper()
	if ns, _ := filepath.Glob("/run/netns/wrenn-*ns-*"); len(ns) > 0 {
		t.Errorf("namespaces left: %v", ns)
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(mi), stateDir+"/") {
		t.Errorf("mounts left under %s", stateDir)
	}
	links, _ := netlink.LinkList()
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, "wrenn-v") {
			t.Errorf("veth left: %s", l.Attrs().Name)
		}
	}
	ipt, err := iptables.New()
	if err == nil {
		for _, table := range []string{"filter", "nat"} {
			rules, _ := ipt.List(table, map[string]string{"filter": "FORWARD", "nat": "POSTROUTING"}[table])
			for _, r := range rules {
				if strings.Contains(r, "WRENN") {
					t.Errorf("iptables jump left in %s: %s", table, r)
				}
			}
			for _, chain := range []string{"WRENN-FORWARD", "WRENN-INPUT", "WRENN-POSTROUTING"} {
				if ok, _ := ipt.ChainExists(table, chain); ok {
					t.Errorf("iptables chain %s/%s left", table, chain)
				}
			}
		}
	}
	if out, _ := exec.Command("pgrep", "-f", stateDir).Output(); len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("processes left: %s", out)
	}
	for _, dir := range []string{"/sys/fs/cgroup/wrenn", "/sys/fs/cgroup/memory/wrenn", "/sys/fs/cgroup/cpu/wrenn"} {
		if entries, err := os.ReadDir(dir); err == nil {
			for _, e := range entries {
				if e.IsDir() {
					t.Errorf("cgroup left: %s/%s", dir, e.Name())
				}
			}
		}
	}
}

func TestAgentSandboxLifecycle(t *testing.T) {
	requireVMs(t)
	forEachRuntime(t, func(t *testing.T, rt string) {
		a := startAgent(t, "", "--runtime", rt)
		ctx := context.Background()
		sb := create(t, a, "life1", nil)
		if sb.State != pb.SandboxState_SANDBOX_STATE_RUNNING || sb.HostAddress == "" || !strings.HasPrefix(sb.Runtime, rt+"/") {
			t.Fatalf("created %v", sb)
		}

		// vCPU and memory limits hold on the host too, not only in the guest.
		quota, mem := cgroupLimits(t, "sb-life1")
		wantMem := map[string]int64{"qemu": (256 + 192) << 20, "gvisor": 256 << 20}[rt]
		if quota != 100000 || mem != wantMem {
			t.Errorf("cgroup limits: cpu quota %d (want 100000 for 1 vCPU), memory %d (want %d)", quota, mem, wantMem)
		}

		r := execIn(t, a, "life1", "echo $FROM_CREATE; whoami; echo oops >&2; exit 3")
		if string(r.Stdout) != "yes\nroot\n" || string(r.Stderr) != "oops\n" || r.ExitCode != 3 {
			t.Fatalf("exec: %q %q %d", r.Stdout, r.Stderr, r.ExitCode)
		}
		st, err := a.client.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "life1", Cmd: "cat", Stdin: []byte("piped in")}))
		if err != nil || string(st.Msg.Stdout) != "piped in" {
			t.Fatalf("exec with stdin: %v %v", st, err)
		}
		def, _ := a.client.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "life1", Cmd: "whoami"}))
		if string(def.Msg.Stdout) != "user\n" {
			t.Errorf("default user: %q", def.Msg.Stdout)
		}
		_, err = a.client.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "life1", Cmd: "sleep", Args: []string{"30"}, TimeoutSeconds: 1}))
		if connect.CodeOf(err) != connect.CodeDeadlineExceeded {
			t.Errorf("exec past its timeout: %v", err)
		}

		es, err := a.client.ExecStream(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "life1", Cmd: "/bin/sh", Args: []string{"-c", "for i in 1 2 3; do echo $i; done"}}))
		if err != nil {
			t.Fatal(err)
		}
		var streamed bytes.Buffer
		var end *pb.ExecEnd
		for es.Receive() {
			streamed.Write(es.Msg().GetStdout())
			if e := es.Msg().GetEnd(); e != nil {
				end = e
			}
		}
		if streamed.String() != "1\n2\n3\n" || end == nil || end.ExitCode != 0 {
			t.Fatalf("exec stream: %q %v %v", streamed.String(), end, es.Err())
		}

		// Files: unary, streaming, listing.
		if _, err := a.client.WriteFile(ctx, connect.NewRequest(&pb.WriteFileRequest{SandboxId: "life1", Path: "/home/user/notes/a.txt", Content: []byte("alpha")})); err != nil {
			t.Fatal(err)
		}
		rf, err := a.client.ReadFile(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: "life1", Path: "/home/user/notes/a.txt"}))
		if err != nil || string(rf.Msg.Content) != "alpha" {
			t.Fatalf("read file: %v %v", rf, err)
		}
		big := bytes.Repeat([]byte("0123456789abcdef"), 3<<16) // 3 MiB
		ws := a.client.WriteFileStream(ctx)
		ws.Send(&pb.WriteFileStreamRequest{Part: &pb.WriteFileStreamRequest_Header{Header: &pb.WriteFileRequest{SandboxId: "life1", Path: "/tmp/big.bin"}}})
		for off := 0; off < len(big); off += 1 << 20 {
			ws.Send(&pb.WriteFileStreamRequest{Part: &pb.WriteFileStreamRequest_Chunk{Chunk: big[off:min(off+1<<20, len(big))]}})
		}
		wr, err := ws.CloseAndReceive()
		if err != nil || wr.Msg.Size != uint64(len(big)) {
			t.Fatalf("write stream: %v %v", wr, err)
		}
		rs, err := a.client.ReadFileStream(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: "life1", Path: "/tmp/big.bin"}))
		if err != nil {
			t.Fatal(err)
		}
		var back bytes.Buffer
		for rs.Receive() {
			back.Write(rs.Msg().Chunk)
		}
		if !bytes.Equal(back.Bytes(), big) {
			t.Fatalf("read stream: %d bytes back of %d (%v)", back.Len(), len(big), rs.Err())
		}
		if _, err := a.client.MakeDir(ctx, connect.NewRequest(&pb.MakeDirRequest{SandboxId: "life1", Path: "/home/user/notes/sub"})); err != nil {
			t.Fatal(err)
		}
		ls, err := a.client.ListDir(ctx, connect.NewRequest(&pb.ListDirRequest{SandboxId: "life1", Path: "/home/user/notes", Depth: 2}))
		if err != nil || len(ls.Msg.Entries) != 2 {
			t.Fatalf("list: %v %v", ls, err)
		}
		if _, err := a.client.RemovePath(ctx, connect.NewRequest(&pb.RemovePathRequest{SandboxId: "life1", Path: "/home/user/notes"})); err != nil {
			t.Fatal(err)
		}
		if _, err := a.client.ReadFile(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: "life1", Path: "/home/user/notes/a.txt"})); connect.CodeOf(err) != connect.CodeNotFound {
			t.Errorf("read a removed file: %v", err)
		}
		if _, err := a.client.ReadFile(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: "life1", Path: "/dev/zero"})); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("read /dev/zero: %v", err)
		}

		// PTY round trip: start, type, resize, see the answer, kill.
		pctx, pcancel := context.WithCancel(ctx)
		defer pcancel()
		pty, err := a.client.PtyAttach(pctx, connect.NewRequest(&pb.PtyAttachRequest{SandboxId: "life1", Cols: 80, Rows: 24}))
		if err != nil {
			t.Fatal(err)
		}
		if !pty.Receive() || pty.Msg().GetStartedPid() == 0 {
			t.Fatalf("pty start: %v", pty.Err())
		}
		pid := pty.Msg().GetStartedPid()
		output := make(chan string, 1)
		go func() {
			var seen strings.Builder
			for pty.Receive() {
				seen.Write(pty.Msg().GetOutput())
				if strings.Contains(seen.String(), "50 132") {
					output <- seen.String()
					return
				}
			}
			output <- seen.String()
		}()
		if _, err := a.client.PtyResize(ctx, connect.NewRequest(&pb.PtyResizeRequest{SandboxId: "life1", Pid: pid, Cols: 132, Rows: 50})); err != nil {
			t.Fatal(err)
		}
		if _, err := a.client.PtySendInput(ctx, connect.NewRequest(&pb.PtySendInputRequest{SandboxId: "life1", Pid: pid, Data: []byte("stty size\n")})); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-output:
			if !strings.Contains(got, "50 132") {
				t.Fatalf("pty output: %q", got)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no pty output")
		}
		if _, err := a.client.PtyKill(ctx, connect.NewRequest(&pb.PtyKillRequest{SandboxId: "life1", Pid: pid})); err != nil {
			t.Fatal(err)
		}

		met, err := a.client.GetSandboxMetrics(ctx, connect.NewRequest(&pb.GetSandboxMetricsRequest{SandboxId: "life1"}))
		if err != nil || met.Msg.Latest == nil || met.Msg.Latest.MemTotalBytes == 0 || met.Msg.Latest.HostRssBytes == 0 {
			t.Fatalf("metrics: %v %v", met, err)
		}
		before := sb.ExpiresAtUnixMs
		to, err := a.client.SetSandboxTimeout(ctx, connect.NewRequest(&pb.SetSandboxTimeoutRequest{SandboxId: "life1", TimeoutSeconds: 3600}))
		if err != nil || to.Msg.Sandbox.ExpiresAtUnixMs <= before {
			t.Fatalf("extend timeout: %v %v", to, err)
		}
		info, err := a.client.HostInfo(ctx, connect.NewRequest(&pb.HostInfoRequest{}))
		wantAccel := map[string]string{"qemu": accel, "gvisor": "systrap"}[rt]
		if err != nil || info.Msg.Sandboxes != 1 || info.Msg.Accelerator != wantAccel || info.Msg.CommittedVcpus != 1 {
			t.Fatalf("host info: %v %v", info, err)
		}

		if _, err := a.client.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: "life1"})); err != nil {
			t.Fatal(err)
		}
		if _, err := a.client.GetSandbox(ctx, connect.NewRequest(&pb.GetSandboxRequest{SandboxId: "life1"})); connect.CodeOf(err) != connect.CodeNotFound {
			t.Errorf("get after destroy: %v", err)
		}
		a.stop(t, syscall.SIGTERM)
		assertNoLeftovers(t, a.stateDir)
	})
}

func TestAgentTimeoutReapsSandbox(t *testing.T) {
	requireVMs(t)
	forEachRuntime(t, func(t *testing.T, rt string) {
		a := startAgent(t, "", "--runtime", rt)
		create(t, a, "ttl1", func(r *pb.CreateSandboxRequest) { r.TimeoutSeconds = 2 })
		waitfor.True(t, 30*time.Second, "the expired sandbox to be reaped", func() bool {
			_, err := a.client.GetSandbox(context.Background(), connect.NewRequest(&pb.GetSandboxRequest{SandboxId: "ttl1"}))
			return connect.CodeOf(err) == connect.CodeNotFound
		})
		a.stop(t, syscall.SIGTERM)
		assertNoLeftovers(t, a.stateDir)
	})
}

func TestAgentBadInput(t *testing.T) {
	requireVMs(t)
	forEachRuntime(t, func(t *testing.T, rt string) {
		a := startAgent(t, "", "--runtime", rt)
		ctx := context.Background()
		for name, c := range map[string]hostagentv1connect.HostAgentServiceClient{"no secret": agentclient.New(a.addr, ""), "wrong secret": agentclient.New(a.addr, "wrong-secret-0123456789")} {
			if _, err := c.ListSandboxes(ctx, connect.NewRequest(&pb.ListSandboxesRequest{})); connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Errorf("%s: %v", name, err)
			}
		}
		bad := map[string]struct {
			req  *pb.CreateSandboxRequest
			code connect.Code
		}{
			"unknown template": {&pb.CreateSandboxRequest{SandboxId: "b1", Template: "nope"}, connect.CodeNotFound},
			"template path":    {&pb.CreateSandboxRequest{SandboxId: "b1", Template: "../minimal"}, connect.CodeInvalidArgument},
			"absurd vcpus":     {&pb.CreateSandboxRequest{SandboxId: "b1", Template: "minimal", Vcpus: 4096}, connect.CodeInvalidArgument},
			"absurd memory":    {&pb.CreateSandboxRequest{SandboxId: "b1", Template: "minimal", MemoryMib: 1 << 30}, connect.CodeInvalidArgument},
			"tiny memory":      {&pb.CreateSandboxRequest{SandboxId: "b1", Template: "minimal", MemoryMib: 16}, connect.CodeInvalidArgument},
			"tiny disk":        {&pb.CreateSandboxRequest{SandboxId: "b1", Template: "minimal", DiskMib: 1}, connect.CodeInvalidArgument},
			"bad id":           {&pb.CreateSandboxRequest{SandboxId: "../etc", Template: "minimal"}, connect.CodeInvalidArgument},
			"empty id":         {&pb.CreateSandboxRequest{Template: "minimal"}, connect.CodeInvalidArgument},
		}
		for name, c := range bad {
			if _, err := a.client.CreateSandbox(ctx, connect.NewRequest(c.req)); connect.CodeOf(err) != c.code {
				t.Errorf("%s: %v, want %s", name, err, c.code)
			}
		}
		if _, err := a.client.GetSandbox(ctx, connect.NewRequest(&pb.GetSandboxRequest{SandboxId: "ghost"})); connect.CodeOf(err) != connect.CodeNotFound {
			t.Errorf("get unknown: %v", err)
		}
		if _, err := a.client.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: "ghost"})); connect.CodeOf(err) != connect.CodeNotFound {
			t.Errorf("destroy unknown: %v", err)
		}
		if _, err := a.client.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "ghost", Cmd: "true"})); connect.CodeOf(err) != connect.CodeNotFound {
			t.Errorf("exec in unknown: %v", err)
		}

		create(t, a, "dup1", nil)
		if _, err := a.client.CreateSandbox(ctx, connect.NewRequest(&pb.CreateSandboxRequest{SandboxId: "dup1", Template: "minimal"})); connect.CodeOf(err) != connect.CodeAlreadyExists {
			t.Errorf("duplicate id: %v", err)
		}
		// A client that goes away mid-stream leaves the agent and sandbox fine.
		sctx, cancel := context.WithCancel(ctx)
		es, err := a.client.ExecStream(sctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "dup1", Cmd: "/bin/sh", Args: []string{"-c", "while true; do echo tick; sleep 0.1; done"}}))
		if err != nil {
			t.Fatal(err)
		}
		es.Receive()
		es.Receive()
		cancel()
		for es.Receive() {
		}
		if r := execIn(t, a, "dup1", "echo still here"); string(r.Stdout) != "still here\n" {
			t.Fatalf("after a disconnect: %q", r.Stdout)
		}
		a.stop(t, syscall.SIGTERM)
		assertNoLeftovers(t, a.stateDir)
	})
}

// outsideNS is the namespace outside makes.
const outsideNS = "wrenn-e2e-outside"

// outside is a stand-in for the internet: a namespace routed from the host,
// serving HTTP on 10.99.0.2:8080.
func outside(t *testing.T) string {
	t.Helper()
	ns := outsideNS
	_ = network.DeleteNamespace(ns)
	if err := network.CreateNamespace(ns); err != nil {
		t.Fatal(err)
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "wrenn-e2e-o"}, PeerName: "wrenn-e2e-op"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName("wrenn-e2e-o"); err == nil {
			netlink.LinkDel(l)
		}
		network.DeleteNamespace(ns)
	})
	host, _ := netlink.LinkByName("wrenn-e2e-o")
	peer, _ := netlink.LinkByName("wrenn-e2e-op")
	addr, _ := netlink.ParseAddr("10.99.0.1/30")
	netlink.AddrAdd(host, addr)
	netlink.LinkSetUp(host)
	nsh, err := netlinkNs(ns)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetNsFd(peer, nsh); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	err = network.InNamespace(ns, func() error {
		p, err := netlink.LinkByName("wrenn-e2e-op")
		if err != nil {
			return err
		}
		a, _ := netlink.ParseAddr("10.99.0.2/30")
		if err := netlink.AddrAdd(p, a); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(p); err != nil {
			return err
		}
		ln, err = net.Listen("tcp", "10.99.0.2:8080")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "outside-ok") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "10.99.0.2:8080"
}

func netlinkNs(name string) (int, error) {
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		return 0, err
	}
	// Kept open for the test's life: the fd is only read by LinkSetNsFd.
	return int(f.Fd()), nil
}

// Four sandboxes created at once: none reaches another or the host's own
// services; egress follows each sandbox's setting.
func TestAgentConcurrentIsolation(t *testing.T) {
	requireVMs(t)
	forEachRuntime(t, func(t *testing.T, rt string) {
		// The stand-in for the internet is a private address, which
		// sandboxes reach only where the operator allows it.
		a := startAgent(t, "", "--runtime", rt, "--egress-allow", "10.99.0.0/30")
		outsideAddr := outside(t)
		hostSvc, err := net.Listen("tcp", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		defer hostSvc.Close()
		go func() {
			for {
				c, err := hostSvc.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("HTTP/1.0 200 OK\r\n\r\nhost-service"))
				c.Close()
			}
		}()
		hostPort := hostSvc.Addr().(*net.TCPAddr).Port

		ids := []string{"iso0", "iso1", "iso2", "iso3"}
		boxes := make([]*pb.Sandbox, len(ids))
		var wg sync.WaitGroup
		errs := make([]error, len(ids))
		for i, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := a.client.CreateSandbox(context.Background(), connect.NewRequest(&pb.CreateSandboxRequest{SandboxId: id, Template: "minimal", TimeoutSeconds: 600, AllowInternet: i%2 == 0}))
				if err != nil {
					errs[i] = err
					return
				}
				boxes[i] = resp.Msg.Sandbox
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		// bash's /dev/tcp rather than a client from the image: what is measured
		// is the network, and a failing client must not pass for a blocked path.
		fetch := func(id, hostPort string) string {
			host, port, _ := net.SplitHostPort(hostPort)
			script := fmt.Sprintf(`out=$(timeout 3 bash -c 'exec 3<>/dev/tcp/%s/%s && printf "GET / HTTP/1.0\r\n\r\n" >&3 && cat <&3' 2>/dev/null); if [ -n "$out" ]; then echo "$out"; else echo BLOCKED; fi`, host, port)
			r, err := a.client.Exec(context.Background(), connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "/bin/bash", Args: []string{"-c", script}, User: "root", TimeoutSeconds: 30}))
			if err != nil {
				return "exec failed: " + err.Error()
			}
			return strings.TrimSpace(string(r.Msg.Stdout))
		}
		// The probe itself works: each guest reaches its own envd this way.
		for _, id := range ids {
			if got := fetch(id, "127.0.0.1:49983"); !strings.Contains(got, "404 page not found") {
				t.Fatalf("%s cannot reach its own envd with the probe: %q", id, got)
			}
		}
		// Each sandbox's probes run at once; a blocked probe waits out its timeout.
		var pw sync.WaitGroup
		for i, id := range ids {
			pw.Add(1)
			go func() {
				defer pw.Done()
				other := boxes[(i+1)%len(ids)]
				otherSlot := network.SlotFor(hostIndex(other.HostAddress))
				own := network.SlotFor(hostIndex(boxes[i].HostAddress))
				for what, target := range map[string]string{
					"another sandbox's host address": other.HostAddress + ":49983",
					"another sandbox's namespace":    otherSlot.NsIP.String() + ":49983",
					"a service of the host":          own.HostIP.String() + ":" + strconv.Itoa(hostPort),
				} {
					if got := fetch(id, target); got != "BLOCKED" {
						t.Errorf("%s reached %s (%s): %q", id, what, target, got)
					}
				}
				got := fetch(id, outsideAddr)
				if (i%2 == 0) != strings.HasSuffix(got, "outside-ok") || (i%2 != 0 && got != "BLOCKED") {
					t.Errorf("%s (internet %v) fetching outside: %q", id, i%2 == 0, got)
				}
			}()
		}
		pw.Wait()
		a.stop(t, syscall.SIGTERM)
		assertNoLeftovers(t, a.stateDir)
	})
}

func hostIndex(hostAddr string) int {
	var a, b, c, d int
	fmt.Sscanf(hostAddr, "%d.%d.%d.%d", &a, &b, &c, &d)
	return c<<8 + d - 1
}

// A guest whose VMM dies goes to error and gives back all it held.
func TestAgentGuestDies(t *testing.T) {
	requireVMs(t)
	forEachRuntime(t, func(t *testing.T, rt string) {
		a := startAgent(t, "", "--runtime", rt)
		create(t, a, "dies1", nil)
		pid := guestPID(t, filepath.Join(a.stateDir, "sandboxes", "dies1"))
		syscall.Kill(pid, syscall.SIGKILL)
		var sb *pb.Sandbox
		waitfor.True(t, 30*time.Second, "the sandbox of the dead VMM to go to error", func() bool {
			sb = sandboxState(t, a, "dies1")
			return sb.State == pb.SandboxState_SANDBOX_STATE_ERROR
		})
		if sb.State != pb.SandboxState_SANDBOX_STATE_ERROR || !strings.Contains(sb.Error, "exited unexpectedly") {
			t.Fatalf("after the VMM died: %v", sb)
		}
		if _, err := a.client.Exec(context.Background(), connect.NewRequest(&pb.ExecRequest{SandboxId: "dies1", Cmd: "true"})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
			t.Errorf("exec in a dead sandbox: %v", err)
		}
		if ns, _ := filepath.Glob("/run/netns/wrenn-ns-*"); len(ns) > 0 {
			t.Errorf("the dead sandbox's namespace remains: %v", ns)
		}
		if _, err := a.client.DestroySandbox(context.Background(), connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: "dies1"})); err != nil {
			t.Errorf("destroying a dead sandbox: %v", err)
		}
		a.stop(t, syscall.SIGTERM)
		assertNoLeftovers(t, a.stateDir)
	})
}

// guestPID is the guest's process on the host, as the agent recorded it.
func guestPID(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "sandbox.json"))
	if err != nil {
		t.Fatalf("no record of the guest in %s: %v", dir, err)
	}
	var rec struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.PID <= 0 {
		t.Fatalf("record %s: %v", b, err)
	}
	return rec.PID
}

// An agent killed with sandboxes running leaves them behind; the next
// agent on the same state directory saves them (paused, their guest
// processes and network gone), and they resume or go as asked.
func TestAgentCrashRecovery(t *testing.T) {
	requireVMs(t)
	forEachRuntime(t, func(t *testing.T, rt string) {
		a := startAgent(t, "", "--runtime", rt)
		create(t, a, "crash1", nil)
		create(t, a, "crash2", func(r *pb.CreateSandboxRequest) { r.AllowInternet = true })
		pids := []int{guestPID(t, filepath.Join(a.stateDir, "sandboxes", "crash1")), guestPID(t, filepath.Join(a.stateDir, "sandboxes", "crash2"))}
		a.stop(t, syscall.SIGKILL)

		b := startAgent(t, a.stateDir, "--runtime", rt)
		for _, pid := range pids {
			waitfor.True(t, 10*time.Second, fmt.Sprintf("guest %d of the crashed agent to stop", pid), func() bool { return !runtime.ProcessAlive(pid) })
		}
		list, err := b.client.ListSandboxes(context.Background(), connect.NewRequest(&pb.ListSandboxesRequest{}))
		if err != nil || len(list.Msg.Sandboxes) != 2 {
			t.Fatalf("after recovery: %v %v", list, err)
		}
		for _, sb := range list.Msg.Sandboxes {
			if sb.State != pb.SandboxState_SANDBOX_STATE_PAUSED {
				t.Errorf("%s after recovery: %s", sb.Id, sb.State)
			}
		}
		if ns, _ := filepath.Glob("/run/netns/wrenn-ns-*"); len(ns) > 0 {
			t.Errorf("namespaces of the crashed agent remain: %v", ns)
		}
		if _, err := b.client.DestroySandbox(context.Background(), connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: "crash2"})); err != nil {
			t.Fatal(err)
		}
		if _, err := b.client.ResumeSandbox(context.Background(), connect.NewRequest(&pb.ResumeSandboxRequest{SandboxId: "crash1"})); err != nil {
			t.Fatalf("resume after recovery: %v", err)
		}
		if r := execIn(t, b, "crash1", "echo back"); string(r.Stdout) != "back\n" {
			t.Fatalf("resumed sandbox after recovery: %q", r.Stdout)
		}
		create(t, b, "crash3", nil)
		if r := execIn(t, b, "crash3", "echo fresh"); string(r.Stdout) != "fresh\n" {
			t.Fatalf("new sandbox after recovery: %q", r.Stdout)
		}
		b.stop(t, syscall.SIGTERM)
		assertNoLeftovers(t, a.stateDir)
	})
}

// startBackground starts script in sandbox id through envd, as a process
// whose client then goes away, and returns its pid.
func startBackground(t *testing.T, a *agent, id, script string) uint32 {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	es, err := a.client.ExecStream(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: id, Cmd: "/bin/sh", Args: []string{"-c", script}}))
	if err != nil {
		t.Fatal(err)
	}
	if !es.Receive() || es.Msg().GetStartedPid() == 0 {
		t.Fatalf("background start in %s: %v", id, es.Err())
	}
	pid := es.Msg().GetStartedPid()
	cancel()
	for es.Receive() {
	}
	return pid
}

// An agent stopped gracefully (an upgrade, a restart) keeps its sandboxes:
// running ones are paused, paused ones stay, and the next start takes both
// back, resumable with their files and processes; nothing runs meanwhile.
func TestAgentRestartKeepsSandboxes(t *testing.T) {
	requireVMs(t)
	forEachRuntime(t, func(t *testing.T, rt string) {
		ctx := context.Background()
		a := startAgent(t, "", "--runtime", rt, "--on-stop", "pause")
		create(t, a, "keep1", nil)
		create(t, a, "keep2", nil)
		for _, id := range []string{"keep1", "keep2"} {
			if _, err := a.client.WriteFile(ctx, connect.NewRequest(&pb.WriteFileRequest{SandboxId: id, Path: "/home/user/kept.txt", Content: []byte(id)})); err != nil {
				t.Fatal(err)
			}
		}
		startBackground(t, a, "keep1", "while :; do date +%s%N > /tmp/beat; sleep 0.2; done")
		if _, err := a.client.PauseSandbox(ctx, connect.NewRequest(&pb.PauseSandboxRequest{SandboxId: "keep2"})); err != nil {
			t.Fatal(err)
		}
		a.stop(t, syscall.SIGTERM)
		assertNothingRunning(t, a.stateDir)

		b := startAgent(t, a.stateDir, "--runtime", rt, "--on-stop", "pause")
		list, err := b.client.ListSandboxes(ctx, connect.NewRequest(&pb.ListSandboxesRequest{}))
		if err != nil || len(list.Msg.Sandboxes) != 2 {
			t.Fatalf("after the restart: %v %v", list, err)
		}
		for _, sb := range list.Msg.Sandboxes {
			if sb.State != pb.SandboxState_SANDBOX_STATE_PAUSED {
				t.Errorf("%s after the restart: %s", sb.Id, sb.State)
			}
		}
		for _, id := range []string{"keep1", "keep2"} {
			if _, err := b.client.ResumeSandbox(ctx, connect.NewRequest(&pb.ResumeSandboxRequest{SandboxId: id})); err != nil {
				t.Fatalf("resume %s: %v", id, err)
			}
			got, err := b.client.ReadFile(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: id, Path: "/home/user/kept.txt"}))
			if err != nil || string(got.Msg.Content) != id {
				t.Fatalf("%s's file after the restart: %q %v", id, got.Msg.GetContent(), err)
			}
		}
		// The loop started before the stop still beats.
		first := execIn(t, b, "keep1", "cat /tmp/beat").Stdout
		waitfor.True(t, 10*time.Second, "the background loop started before the stop to beat again", func() bool {
			again := execIn(t, b, "keep1", "cat /tmp/beat").Stdout
			return !bytes.Equal(first, again) && len(again) > 0
		})
		for _, id := range []string{"keep1", "keep2"} {
			if _, err := b.client.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id})); err != nil {
				t.Fatal(err)
			}
		}
		b.stop(t, syscall.SIGTERM)
		assertNoLeftovers(t, a.stateDir)
	})
}

// The Firecracker driver end to end, where Firecracker can run.
func TestAgentFirecracker(t *testing.T) {
	requireVMs(t)
	if _, err := exec.LookPath("firecracker"); err != nil {
		t.Skip("no firecracker binary: Firecracker is not in Debian or the reachable registries")
	}
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		t.Skip("this host's KVM is PVM-only and cannot boot a standard guest, which Firecracker needs")
	}
	a := startAgent(t, "", "--runtime", "firecracker")
	sb := create(t, a, "fc1", nil)
	if !strings.HasPrefix(sb.Runtime, "firecracker/") {
		t.Fatalf("runtime %q", sb.Runtime)
	}
	if r := execIn(t, a, "fc1", "echo $FROM_CREATE; cat /proc/cmdline"); !strings.HasPrefix(string(r.Stdout), "yes\n") {
		t.Fatalf("exec: %q", r.Stdout)
	}
	if _, err := a.client.DestroySandbox(context.Background(), connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: "fc1"})); err != nil {
		t.Fatal(err)
	}
	a.stop(t, syscall.SIGTERM)
	assertNoLeftovers(t, a.stateDir)
}

// The official E2B SDK's envd suite, against envd inside a real guest.
func TestE2BSDKAgainstGuestEnvd(t *testing.T) {
	requireVMs(t)
	sdkDir := requireSDK(t)
	forEachRuntime(t, func(t *testing.T, rt string) {
		a := startAgent(t, "", "--runtime", rt)
		sb := create(t, a, "sdk1", nil)
		cmd := exec.Command("node", "--test", "--test-concurrency=1", "envd.test.mjs")
		cmd.Dir = sdkDir
		cmd.Env = append(os.Environ(), "WRENN_E2B_SANDBOX_URL=http://"+sb.HostAddress+":49983")
		out, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("# fail 0")) {
			t.Fatalf("E2B SDK suite against %s guest envd: %v\n%s", rt, err, out)
		}
		a.stop(t, syscall.SIGTERM)
		assertNoLeftovers(t, a.stateDir)
	})
}

// cgroupLimits reads a sandbox cgroup's CPU quota (per 100 ms period) and
// memory limit, on cgroup v2 or v1.
func cgroupLimits(t *testing.T, name string) (quota, mem int64) {
	t.Helper()
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("cgroup: %v", err)
		}
		return strings.TrimSpace(string(b))
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		f := strings.Fields(read("/sys/fs/cgroup/wrenn/" + name + "/cpu.max"))
		quota, _ = strconv.ParseInt(f[0], 10, 64)
		mem, _ = strconv.ParseInt(read("/sys/fs/cgroup/wrenn/"+name+"/memory.max"), 10, 64)
		return quota, mem
	}
	quota, _ = strconv.ParseInt(read("/sys/fs/cgroup/cpu/wrenn/"+name+"/cpu.cfs_quota_us"), 10, 64)
	mem, _ = strconv.ParseInt(read("/sys/fs/cgroup/memory/wrenn/"+name+"/memory.limit_in_bytes"), 10, 64)
	return quota, mem
}

// A sandbox's disk size is a hard limit: writing past it fails in the
// guest, and the sandbox stays usable.
func TestAgentDiskLimit(t *testing.T) {
	requireVMs(t)
	forEachRuntime(t, func(t *testing.T, rt string) {
		a := startAgent(t, "", "--runtime", rt)
		create(t, a, "disk1", func(r *pb.CreateSandboxRequest) { r.DiskMib = 96 })
		r := execIn(t, a, "disk1", "dd if=/dev/zero of=/home/user/fill bs=1M count=160 2>&1; echo rc=$?")
		if !strings.Contains(string(r.Stdout), "No space left") || strings.Contains(string(r.Stdout), "rc=0") {
			t.Fatalf("writing 160 MiB into a 96 MiB disk: %q", r.Stdout)
		}
		if r := execIn(t, a, "disk1", "rm /home/user/fill && echo freed"); string(r.Stdout) != "freed\n" {
			t.Fatalf("after the disk filled: %q", r.Stdout)
		}
		a.stop(t, syscall.SIGTERM)
		assertNoLeftovers(t, a.stateDir)
	})
}
