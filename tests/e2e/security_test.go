package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"git.omukk.dev/wrenn/sandbox/internal/cptest"
	"git.omukk.dev/wrenn/sandbox/internal/network"
	"git.omukk.dev/wrenn/sandbox/internal/waitfor"
	"git.omukk.dev/wrenn/sandbox/pkg/config"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

// secStack is a control plane with one gVisor agent, for the attacks of
// issue 21 that need real sandboxes.
type secStack struct {
	cp    *cptest.CP
	admin cptest.Account
	host  *cpAgent
	log   *syncWriter
}

func startSecStack(t *testing.T, tune func(*config.Config), agentArgs ...string) *secStack {
	t.Helper()
	requireVMs(t)
	requireRunsc(t)
	pg := requirePostgres(t)
	secret := make([]byte, 32)
	rand.Read(secret)
	s := &secStack{log: &syncWriter{w: &bytes.Buffer{}}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("control plane log:\n%s", s.log.w.String())
		}
	})
	cp, err := pg.Start(context.Background(), cptest.Options{Secret: secret, Log: slog.New(slog.NewTextHandler(s.log, nil)), Tune: func(c *config.Config) {
		fastClocks(c)
		if tune != nil {
			tune(c)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	s.cp = cp
	s.admin = cp.Admin(t, "admin@example.com")
	s.host = startCPAgent(t, cp, s.admin.Token, 3, "gvisor", agentArgs...)
	return s
}

// sandbox creates a sandbox with key and removes it at the end.
func (s *secStack) sandbox(t *testing.T, key string, body map[string]any) sbView {
	t.Helper()
	sb := sandboxOf(t, s.cp.Must(t, 201, "POST", "/v1/sandboxes", key, body))
	t.Cleanup(func() { _, _ = s.cp.Do("DELETE", "/v1/sandboxes/"+sb.ID, key, nil) })
	return sb
}

func (s *secStack) exec(t *testing.T, key, sandboxID, script string) map[string]any {
	t.Helper()
	return s.cp.Must(t, 200, "POST", "/v1/sandboxes/"+sandboxID+"/exec", key, map[string]any{"cmd": "/bin/sh", "args": []string{"-c", script}, "user": "root"}).Map()
}

// proxied calls port of a sandbox through the sandbox proxy.
func (s *secStack) proxied(t *testing.T, sandboxID string, port int, header map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", s.cp.ProxyURL+"/", nil)
	req.Header.Set("E2b-Sandbox-Id", sandboxID)
	req.Header.Set("E2b-Sandbox-Port", fmt.Sprint(port))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestSecurityControlPlane performs, against a control plane and a real
// agent, the attacks of issue 21 that need a running sandbox, and checks
// that each fails now.
func TestSecurityControlPlane(t *testing.T) {
	s := startSecStack(t, func(c *config.Config) {
		c.StreamAuthInterval = 300 * time.Millisecond
		c.ProxyMaxPerSandbox, c.ProxyMaxPerClient, c.ProxyHeaderTimeout = 5, 8, time.Second
		c.ExecMaxOutput = 1 << 20
	})
	cp := s.cp
	alice := cp.Signup(t, "alice@example.com")
	ka := cp.APIKey(t, alice)

	// Item 12 (and 4, 11): a terminal kept running commands after the key
	// or session that opened it was revoked, or its user deactivated.
	t.Run("streams end with their credential", func(t *testing.T) {
		sb := s.sandbox(t, ka, map[string]any{"timeout_seconds": 600})
		wsURL := "ws" + strings.TrimPrefix(cp.URL, "http") + "/v1/ws/sandboxes/" + sb.ID
		// openPty opens a terminal with cred and checks it answers.
		openPty := func(cred string) *websocket.Conn {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, _, err := websocket.Dial(ctx, wsURL+"/pty?token="+url.QueryEscape(cred), nil)
			if err != nil {
				t.Fatal(err)
			}
			var started map[string]any
			if err := wsjson.Read(ctx, c, &started); err != nil || started["type"] != "started" {
				t.Fatalf("terminal: %v %v", started, err)
			}
			return c
		}
		// ended waits for the server to close c, typing into it meanwhile.
		ended := func(c *websocket.Conn, what string) {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			go func() {
				for ctx.Err() == nil {
					_ = c.Write(ctx, websocket.MessageBinary, []byte("echo still-here\n"))
					time.Sleep(100 * time.Millisecond)
				}
			}()
			for {
				if _, _, err := c.Read(ctx); err != nil {
					if ctx.Err() != nil {
						t.Fatalf("the terminal outlived %s", what)
					}
					if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
						t.Errorf("terminal after %s ended with %v", what, err)
					}
					return
				}
			}
		}
		// A revoked API key.
		key := cp.Must(t, 201, "POST", "/v1/api-keys", alice.Token, map[string]string{"name": "short-lived"}).Map()
		c := openPty(key["key"].(string))
		cp.Must(t, 204, "DELETE", "/v1/api-keys/"+key["id"].(string), alice.Token, nil)
		ended(c, "its key's revocation")
		// A session that logged out.
		login, err := cp.Login(alice.Email)
		if err != nil {
			t.Fatal(err)
		}
		c = openPty(login.Token)
		cp.Must(t, 204, "POST", "/v1/auth/logout", login.Token, nil)
		ended(c, "its session's logout")
		// A user deactivated: their key's exec stream ends too.
		bob := cp.Signup(t, "bob@example.com")
		kb := cp.APIKey(t, bob)
		bsb := s.sandbox(t, kb, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ec, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(cp.URL, "http")+"/v1/ws/sandboxes/"+bsb.ID+"/exec?"+url.Values{"cmd": {"/bin/sh"}, "arg": {"-c", "while :; do echo tick; sleep 0.2; done"}, "token": {kb}}.Encode(), nil)
		if err != nil {
			t.Fatal(err)
		}
		var ev map[string]any
		if err := wsjson.Read(ctx, ec, &ev); err != nil || ev["type"] != "start" {
			t.Fatalf("exec stream: %v %v", ev, err)
		}
		cp.Must(t, 200, "POST", "/v1/admin/users/"+bob.UserID+"/deactivate", s.admin.Token, nil)
		deadline := time.Now().Add(10 * time.Second)
		for {
			if err := wsjson.Read(ctx, ec, &ev); err != nil {
				if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
					t.Errorf("exec stream after deactivation ended with %v", err)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the exec stream outlived its user's deactivation")
			}
		}
		cp.Must(t, 200, "POST", "/v1/admin/users/"+bob.UserID+"/activate", s.admin.Token, nil)
		// Item 11: the sessions were audited when they opened.
		var entries []struct{ Action, Detail string }
		_ = cp.Must(t, 200, "GET", "/v1/audit?resource_id="+sb.ID, alice.Token, nil).JSON(&entries)
		n := 0
		for _, e := range entries {
			if e.Action == "sandbox.pty" {
				n++
			}
		}
		if n != 2 {
			t.Errorf("%d terminal sessions audited, want 2: %+v", n, entries)
		}
	})

	// Item 8: the sandbox proxy had no limits; 1,200 requests held by a
	// slow server in a sandbox took 4,800 descriptors of the control
	// plane, and ~5,000 unauthenticated requests exhausted it.
	t.Run("proxy limits", func(t *testing.T) {
		slow := s.sandbox(t, ka, map[string]any{"timeout_seconds": 600})
		other := s.sandbox(t, ka, map[string]any{"timeout_seconds": 600})
		for _, sb := range []sbView{slow, other} {
			// A server that takes every connection and never answers.
			s.exec(t, ka, sb.ID, "setsid busybox nc -ll -p 9002 -e sleep 600 </dev/null >/dev/null 2>&1 &")
			s.exec(t, ka, sb.ID, "mkdir -p /tmp/www && echo fast > /tmp/www/index.html && busybox httpd -p 8000 -h /tmp/www")
		}
		held := func(sandboxID string) int {
			out := s.exec(t, ka, sandboxID, "busybox netstat -tn | grep ':9002 ' | grep -c ESTABLISHED || true")["stdout"]
			n := 0
			fmt.Sscan(fmt.Sprint(out), &n)
			return n
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		hold := func(sandboxID string) {
			go func() {
				req, _ := http.NewRequestWithContext(ctx, "GET", cp.ProxyURL+"/", nil)
				req.Header.Set("E2b-Sandbox-Id", sandboxID)
				req.Header.Set("E2b-Sandbox-Port", "9002")
				if res, err := http.DefaultClient.Do(req); err == nil {
					res.Body.Close()
				}
			}()
		}
		for range 5 {
			hold(slow.ID)
		}
		waitfor.True(t, 20*time.Second, "5 requests held in the sandbox", func() bool { return held(slow.ID) == 5 })
		if st, body := s.proxied(t, slow.ID, 8000, nil); st != 503 || !strings.Contains(body, "sandbox_busy") {
			t.Errorf("a sixth request to a sandbox with 5 in flight: %d %s", st, body)
		}
		if st, body := s.proxied(t, other.ID, 8000, nil); st != 200 || !strings.Contains(body, "fast") {
			t.Errorf("another sandbox while one is full: %d %s", st, body)
		}
		for range 3 {
			hold(other.ID)
		}
		waitfor.True(t, 20*time.Second, "3 more requests held", func() bool { return held(other.ID) == 3 })
		if st, body := s.proxied(t, other.ID, 8000, nil); st != 429 || !strings.Contains(body, "too_many_requests") {
			t.Errorf("a ninth request from a client with 8 in flight: %d %s", st, body)
		}
		cancel()
		waitfor.True(t, 20*time.Second, "the held requests to end", func() bool { return held(slow.ID)+held(other.ID) == 0 })
		waitfor.True(t, 10*time.Second, "the proxy to take requests again", func() bool {
			st, _ := s.proxied(t, slow.ID, 8000, nil)
			return st == 200
		})

		// Connections that send nothing: each client holds at most twice
		// its request limit, and each is closed after the header timeout.
		addr := strings.TrimPrefix(cp.ProxyURL, "http://")
		http.DefaultClient.CloseIdleConnections()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for range 16 {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		extra, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		extra.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := extra.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("a 17th idle connection from one client was kept: %v", err)
		}
		extra.Close()
		conns[0].SetReadDeadline(time.Now().Add(5 * time.Second))
		t0 := time.Now()
		if _, err := io.ReadAll(conns[0]); err != nil || time.Since(t0) > 4*time.Second {
			t.Errorf("an idle connection without headers: %v after %s", err, time.Since(t0))
		}
	})

	// Item 2: one exec buffered all its output (head -c 300M /dev/zero gave
	// a 1.9 GB answer and 9 GB resident in the control plane). Each
	// stream is cut at the bound, and the answer says so, with the exit
	// code of the command, which ran to its end.
	t.Run("exec output is bounded", func(t *testing.T) {
		sb := s.sandbox(t, ka, nil)
		r := cp.Must(t, 200, "POST", "/v1/sandboxes/"+sb.ID+"/exec", ka, map[string]any{"cmd": "/bin/sh", "args": []string{"-c", "head -c 50000000 /dev/zero; echo done >&2; exit 3"}, "timeout_seconds": 120})
		if len(r.Body) > 8<<20 {
			t.Errorf("the answer is %d bytes", len(r.Body))
		}
		var x struct {
			Stdout          string
			Stderr          string
			ExitCode        int  `json:"exit_code"`
			StdoutTruncated bool `json:"stdout_truncated"`
			StderrTruncated bool `json:"stderr_truncated"`
		}
		if err := r.JSON(&x); err != nil {
			t.Fatal(err)
		}
		if len(x.Stdout) != 1<<20 || !x.StdoutTruncated || x.Stderr != "done\n" || x.StderrTruncated || x.ExitCode != 3 {
			t.Errorf("exec of 50 MB: %d bytes of stdout (truncated %v), stderr %q (truncated %v), exit %d", len(x.Stdout), x.StdoutTruncated, x.Stderr, x.StderrTruncated, x.ExitCode)
		}
	})

	// Item 17: an upload larger than the sandbox's disk answered 502
	// "corrupt response"; it is a 507, through the API and through the
	// proxy to envd, and the sandbox carries on.
	t.Run("upload larger than the disk", func(t *testing.T) {
		sb := s.sandbox(t, ka, map[string]any{"disk_mib": 128})
		tok := cp.Must(t, 200, "GET", "/v1/sandboxes/"+sb.ID, ka, nil).Map()["envd_access_token"].(string)
		big := make([]byte, 200<<20)
		r, err := cp.Do("PUT", "/v1/sandboxes/"+sb.ID+"/files?path=/home/user/big", ka, big)
		if err != nil || r.Status != 507 || r.Code() != "insufficient_storage" {
			t.Errorf("a 200 MiB upload into a 128 MiB disk: %v %s", err, r)
		}
		req, _ := http.NewRequest("POST", cp.ProxyURL+"/files?path=/home/user/big2&username=user", bytes.NewReader(big))
		req.Header.Set("E2b-Sandbox-Id", sb.ID)
		req.Header.Set("E2b-Sandbox-Port", "49983")
		req.Header.Set("X-Access-Token", tok)
		req.Header.Set("Content-Type", "application/octet-stream")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("the same through the proxy: %v", err)
		} else {
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 507 {
				t.Errorf("the same through the proxy: %d %s", res.StatusCode, body)
			}
		}
		if x := s.exec(t, ka, sb.ID, "ls /home/user; echo alive"); !strings.HasSuffix(fmt.Sprint(x["stdout"]), "alive\n") || strings.Contains(fmt.Sprint(x["stdout"]), "big") {
			t.Errorf("after the uploads: %v", x)
		}
	})

	// Item 7: there were no per-team limits; one team's idle sandboxes
	// took the whole host and every other team's create answered 503.
	t.Run("team quotas", func(t *testing.T) {
		dave := cp.Signup(t, "dave@example.com")
		kd := cp.APIKey(t, dave)
		cp.Must(t, 200, "PUT", "/v1/admin/teams/"+dave.TeamID+"/quota", s.admin.Token, map[string]any{"sandboxes": 1})
		held := s.sandbox(t, kd, nil)
		if r, _ := cp.Do("POST", "/v1/sandboxes", kd, map[string]any{}); r.Status != 429 || !strings.Contains(r.String(), "sandboxes") {
			t.Errorf("a second sandbox past a quota of one: %s", r)
		}
		// Another team is not held back by it.
		s.sandbox(t, ka, nil)
		// A paused sandbox holds no memory; resuming it needs room again.
		cp.Must(t, 200, "POST", "/v1/sandboxes/"+held.ID+"/pause", kd, nil)
		cp.Must(t, 200, "PUT", "/v1/admin/teams/"+dave.TeamID+"/quota", s.admin.Token, map[string]any{"sandboxes": 1, "memory_mib": 128})
		if r, _ := cp.Do("POST", "/v1/sandboxes/"+held.ID+"/resume", kd, nil); r.Status != 429 || !strings.Contains(r.String(), "memory") {
			t.Errorf("a resume past the memory quota: %s", r)
		}
		if st := sandboxOf(t, cp.Must(t, 200, "GET", "/v1/sandboxes/"+held.ID, kd, nil)).State; st != "paused" {
			t.Errorf("after a refused resume the sandbox is %s", st)
		}
		var team struct {
			Quota struct {
				Sandboxes struct{ Limit, Used int }
				MemoryMiB struct{ Limit, Used int } `json:"memory_mib"`
			}
		}
		_ = cp.Must(t, 200, "GET", "/v1/teams/"+dave.TeamID, kd, nil).JSON(&team)
		if team.Quota.Sandboxes.Used != 1 || team.Quota.MemoryMiB.Used != 0 || team.Quota.MemoryMiB.Limit != 128 {
			t.Errorf("dave's quota: %+v", team.Quota)
		}
	})

	// Item 14: deleting a team left its snapshots' files (memory
	// included) on the host, with no row pointing at them.
	t.Run("team deletion removes snapshot files", func(t *testing.T) {
		carol := cp.Signup(t, "carol@example.com")
		team := cp.Must(t, 201, "POST", "/v1/teams", carol.Token, map[string]string{"name": "doomed"}).Map()["id"].(string)
		cp.Must(t, 200, "POST", "/v1/auth/switch-team", carol.Token, map[string]string{"team_id": team})
		key := cp.Must(t, 201, "POST", "/v1/api-keys", carol.Token, map[string]string{"name": "k"}).Map()["key"].(string)
		sb := s.sandbox(t, key, nil)
		s.exec(t, key, sb.ID, "echo secret > /root/secret")
		snap := cp.Must(t, 201, "POST", "/v1/snapshots", key, map[string]any{"sandbox_id": sb.ID, "name": "keep"}).Map()["id"].(string)
		dir := filepath.Join(s.host.stateDir, "snapshots", snap)
		if _, err := os.Stat(dir); err != nil {
			t.Fatalf("the snapshot's files: %v", err)
		}
		if r, _ := cp.Do("DELETE", "/v1/teams/"+team, carol.Token, nil); r.Status != 409 {
			t.Fatalf("deleting a team with a live sandbox: %s", r)
		}
		cp.Must(t, 204, "DELETE", "/v1/sandboxes/"+sb.ID, key, nil)
		cp.Must(t, 204, "DELETE", "/v1/teams/"+team, carol.Token, nil)
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("the deleted team's snapshot is still on the host: %v", err)
		}
	})

	// Item 13: an unauthenticated request to a private port of a paused
	// sandbox with auto-resume resumed it before the token was checked.
	t.Run("auto-resume checks the token first", func(t *testing.T) {
		sb := s.sandbox(t, ka, map[string]any{"auto_resume": true, "allow_public_traffic": false, "timeout_seconds": 600})
		traffic := cp.Must(t, 200, "GET", "/v1/sandboxes/"+sb.ID, ka, nil).Map()["traffic_access_token"].(string)
		s.exec(t, ka, sb.ID, "mkdir -p /tmp/www && echo hello-private > /tmp/www/index.html && busybox httpd -p 8000 -h /tmp/www")
		cp.Must(t, 200, "POST", "/v1/sandboxes/"+sb.ID+"/pause", ka, nil)
		state := func() string { return sandboxOf(t, cp.Must(t, 200, "GET", "/v1/sandboxes/"+sb.ID, ka, nil)).State }
		for _, h := range []map[string]string{nil, {"E2b-Traffic-Access-Token": "wrong"}} {
			if st, body := s.proxied(t, sb.ID, 8000, h); st != 403 || !strings.Contains(body, "traffic_token_required") {
				t.Errorf("private port of a paused sandbox without its token: %d %s", st, body)
			}
		}
		// envd's port resumes it only with envd's token.
		if st, body := s.proxied(t, sb.ID, 49983, nil); st != 502 || !strings.Contains(body, "sandbox_paused") {
			t.Errorf("envd's port of a paused sandbox without its token: %d %s", st, body)
		}
		if got := state(); got != "paused" {
			t.Fatalf("an unauthenticated request resumed the sandbox: %s", got)
		}
		if st, body := s.proxied(t, sb.ID, 8000, map[string]string{"E2b-Traffic-Access-Token": traffic}); st != 200 || !strings.Contains(body, "hello-private") {
			t.Errorf("with its token: %d %s", st, body)
		}
		if got := state(); got != "running" {
			t.Errorf("the token holder's request did not resume it: %s", got)
		}
	})
}

// deletedFilesOver lists files that processes running from stateDir hold
// open after they were deleted, larger than limit: space taken that no
// one can see or reclaim.
func deletedFilesOver(stateDir string, limit int64) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		cmdline, err := os.ReadFile(filepath.Join(p, "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), stateDir) {
			continue
		}
		fds, _ := filepath.Glob(filepath.Join(p, "fd", "*"))
		for _, fd := range fds {
			target, err := os.Readlink(fd)
			// gVisor's memory is a memfd: no file on the disk.
			if err != nil || !strings.HasSuffix(target, " (deleted)") || strings.HasPrefix(target, "/memfd:") {
				continue
			}
			if st, err := os.Stat(fd); err == nil && st.Mode().IsRegular() && st.Size() > limit {
				out = append(out, fmt.Sprintf("%s %s: %d bytes", strings.ReplaceAll(string(cmdline), "\x00", " ")[:min(60, len(cmdline))], target, st.Size()))
			}
		}
	}
	return out
}

// TestSecurityAgentLimits performs, against a real agent, the attacks on
// the host's disk of issue 21 item 6: a disk larger than the host could
// hold, and console output without end (under gVisor it went to an
// already deleted file, under QEMU to an uncapped console log).
func TestSecurityAgentLimits(t *testing.T) {
	requireVMs(t)
	forEachRuntime(t, func(t *testing.T, rt string) {
		// A small cap: a serial port under TCG carries some 100 KB/s.
		const capBytes = 128 << 10
		a := startAgent(t, "", "--runtime", rt, "--console-max-bytes", fmt.Sprint(capBytes))
		ctx := context.Background()
		free := freeBytes(t, a.stateDir) >> 20
		_, err := a.client.CreateSandbox(ctx, connect.NewRequest(&pb.CreateSandboxRequest{SandboxId: "huge", Template: "minimal", DiskMib: uint32(free + 1024)}))
		if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(fmt.Sprint(err), "disk") {
			t.Errorf("a disk of %d MiB on a host with %d MiB free: %v", free+1024, free, err)
		}
		before, err := a.client.HostInfo(ctx, connect.NewRequest(&pb.HostInfoRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		sb := create(t, a, "loud", func(r *pb.CreateSandboxRequest) { r.DiskMib = 512 })
		after, err := a.client.HostInfo(ctx, connect.NewRequest(&pb.HostInfoRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		// The promised disk is counted before the guest writes it.
		if drop := int64(before.Msg.DiskFreeMib) - int64(after.Msg.DiskFreeMib); drop < 400 {
			t.Errorf("a sandbox with %d MiB of disk took %d MiB of what the host reports it can give", sb.DiskMib, drop)
		}
		// Guest root writes three times the cap to its init's stdout, the
		// console.
		t0 := time.Now()
		execIn(t, a, "loud", fmt.Sprintf("head -c %d /dev/zero | tr '\\0' x > /proc/1/fd/1", 3*capBytes))
		t.Logf("%d KiB to the console in %s", 3*capBytes>>10, time.Since(t0).Round(time.Millisecond))
		dir := filepath.Join(a.stateDir, "sandboxes", "loud")
		waitfor.True(t, 30*time.Second, "the console to rotate", func() bool {
			_, err := os.Stat(filepath.Join(dir, "console.log.1"))
			return err == nil
		})
		var total int64
		for _, f := range []string{"console.log", "console.log.1"} {
			st, err := os.Stat(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() > capBytes+512 {
				t.Errorf("%s is %d bytes, over its cap", f, st.Size())
			}
			total += st.Size()
		}
		if total >= 3*capBytes {
			t.Errorf("the console files hold %d bytes of the %d written: nothing was dropped", total, 3*capBytes)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "console.log")); !strings.Contains(string(b), "console rotated") {
			t.Errorf("the rotation is not marked in the console")
		}
		if held := deletedFilesOver(a.stateDir, capBytes); len(held) > 0 {
			t.Errorf("deleted files held open: %v", held)
		}
		if r := execIn(t, a, "loud", "echo alive"); string(r.Stdout) != "alive\n" {
			t.Errorf("after the console flood: %q", r.Stdout)
		}
		a.stop(t, syscall.SIGTERM)
		assertNoLeftovers(t, a.stateDir)
	})

	// Item 3: guest root can put its own server in envd's place; it
	// answered the agent's /metrics poll without end and the agent took
	// in 500-680 MiB each time. The agent reads a bounded answer now,
	// marks the sandbox and logs it.
	t.Run("hostile envd", func(t *testing.T) {
		requireRunsc(t)
		a := startAgent(t, "", "--runtime", "gvisor")
		ctx := context.Background()
		create(t, a, "hostile", nil)
		endless := "#!/bin/sh\nwhile IFS= read -r l; do l=$(printf '%s' \"$l\" | tr -d '\\r'); [ -z \"$l\" ] && break; done\n" +
			"printf 'HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\n\\r\\n{\"ts\":\"'\nexec tr '\\000' x < /dev/zero\n"
		if _, err := a.client.WriteFile(ctx, connect.NewRequest(&pb.WriteFileRequest{SandboxId: "hostile", Path: "/tmp/endless.sh", Content: []byte(endless), User: "root"})); err != nil {
			t.Fatal(err)
		}
		execIn(t, a, "hostile", `chmod +x /tmp/endless.sh; setsid sh -c 'sleep 1; for i in $(seq 50); do kill $(pidof envd) 2>/dev/null; busybox nc -ll -p 49983 -e /tmp/endless.sh; sleep 0.1; done' </dev/null >/dev/null 2>&1 &`)
		waitfor.True(t, 60*time.Second, "the agent to mark the sandbox", func() bool {
			res, err := a.client.GetSandbox(ctx, connect.NewRequest(&pb.GetSandboxRequest{SandboxId: "hostile"}))
			return err == nil && strings.Contains(res.Msg.Sandbox.GetGuestFault(), "/metrics")
		})
		if !a.logged("the guest misbehaved") {
			t.Error("the agent did not log the misbehaving guest")
		}
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
		var rssKiB int64
		for _, l := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
				fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &rssKiB)
			}
		}
		if rssKiB == 0 || rssKiB > 200<<10 {
			t.Errorf("the agent's peak resident memory is %d KiB", rssKiB)
		}
		if _, err := a.client.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: "hostile"})); err != nil {
			t.Fatal(err)
		}
		a.stop(t, syscall.SIGTERM)
		assertNoLeftovers(t, a.stateDir)
	})

	// On a small filesystem the template's default disk shrinks to what
	// the host can promise instead of promising what it does not have.
	t.Run("default disk fits the host", func(t *testing.T) {
		requireRunsc(t)
		a := startAgent(t, smallFilesystem(t, 192), "--runtime", "gvisor")
		sb := create(t, a, "small", nil)
		if sb.DiskMib >= 1024 || sb.DiskMib < 32 {
			t.Errorf("default disk on a 192 MiB host: %d MiB", sb.DiskMib)
		}
		a.stop(t, syscall.SIGTERM)
		assertNoLeftovers(t, a.stateDir)
	})
}

// destinations is a namespace routed from the host that answers HTTP on
// 8080 at each of addrs: stand-ins for a private network, a cloud's
// metadata service and the internet.
func destinations(t *testing.T, addrs ...string) {
	t.Helper()
	ns := "wrenn-e2e-dest"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	_ = network.DeleteNamespace(ns)
	if err := network.CreateNamespace(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", "wrenn-e2e-d").Run()
		_ = network.DeleteNamespace(ns)
		for _, a := range addrs {
			_ = exec.Command("ip", "route", "del", a+"/32").Run()
		}
	})
	run("ip", "link", "add", "wrenn-e2e-d", "type", "veth", "peer", "name", "wrenn-e2e-dp")
	run("ip", "addr", "add", "10.97.0.1/30", "dev", "wrenn-e2e-d")
	run("ip", "link", "set", "wrenn-e2e-d", "up")
	run("ip", "link", "set", "wrenn-e2e-dp", "netns", ns)
	run("ip", "-n", ns, "addr", "add", "10.97.0.2/30", "dev", "wrenn-e2e-dp")
	run("ip", "-n", ns, "link", "set", "wrenn-e2e-dp", "up")
	run("ip", "-n", ns, "link", "set", "lo", "up")
	run("ip", "-n", ns, "route", "add", "default", "via", "10.97.0.1")
	var lns []net.Listener
	for _, a := range addrs {
		run("ip", "-n", ns, "addr", "add", a+"/32", "dev", "lo")
		run("ip", "route", "replace", a+"/32", "via", "10.97.0.2")
	}
	err := network.InNamespace(ns, func() error {
		for _, a := range addrs {
			ln, err := net.Listen("tcp", a+":8080")
			if err != nil {
				return err
			}
			lns = append(lns, ln)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, ln := range lns {
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "reached") })}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
}

// TestSecuritySandboxEgress (issue 21 item 18): sandbox egress blocked
// link-local addresses only, so private networks, carrier-grade NAT and
// cloud metadata addresses such as 168.63.129.16 and 100.100.100.200
// stayed reachable. From inside real sandboxes: those are refused by
// default, the internet is not, and an operator's allowance opens one.
func TestSecuritySandboxEgress(t *testing.T) {
	requireVMs(t)
	blocked := []string{"10.96.5.5", "172.20.0.9", "192.168.77.2", "100.64.7.2", "100.100.100.200", "168.63.129.16"}
	public := "198.51.100.40" // TEST-NET-2: stands in for the internet
	destinations(t, append(blocked, public)...)
	forEachRuntime(t, func(t *testing.T, rt string) {
		a := startAgent(t, "", "--runtime", rt, "--egress-allow", "192.168.77.0/24")
		create(t, a, "egress", func(r *pb.CreateSandboxRequest) { r.AllowInternet = true })
		// bash's /dev/tcp, as TestAgentConcurrentIsolation probes: what is
		// measured is the network, not a client from the image.
		reach := func(addr string) bool {
			r := execIn(t, a, "egress", fmt.Sprintf(`timeout 3 bash -c 'exec 3<>/dev/tcp/%s/8080 && printf "GET / HTTP/1.0\r\n\r\n" >&3 && cat <&3' 2>/dev/null; true`, addr))
			return strings.Contains(string(r.Stdout), "reached")
		}
		if !reach(public) {
			t.Fatalf("the internet stand-in %s is not reachable: egress is broken, not just filtered", public)
		}
		for _, addr := range blocked {
			want := addr == "192.168.77.2" // allowed by --egress-allow
			if got := reach(addr); got != want {
				t.Errorf("sandbox reaches %s: %v, want %v", addr, got, want)
			}
		}
		a.stop(t, syscall.SIGTERM)
		assertNoLeftovers(t, a.stateDir)
	})
}

// qemuPID finds the QEMU of a sandbox directory.
func qemuPID(t *testing.T, dir string) int {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		b, err := os.ReadFile(filepath.Join(p, "cmdline"))
		if err == nil && strings.HasPrefix(string(b), "/usr/bin/qemu-system") && strings.Contains(string(b), dir+"/") {
			var pid int
			fmt.Sscan(filepath.Base(p), &pid)
			return pid
		}
	}
	t.Fatalf("no QEMU process for %s", dir)
	return 0
}

// TestSecurityQEMUConfined (issue 21 item 9): QEMU ran as root with
// every capability, no seccomp, in the host's mount namespace. It runs
// jailed now: what it can still see and do is checked from outside and
// from inside its jail, and pausing, resuming and cloning still work.
func TestSecurityQEMUConfined(t *testing.T) {
	requireVMs(t)
	a := startAgent(t, "", "--runtime", "qemu")
	ctx := context.Background()
	create(t, a, "jailed", nil)
	create(t, a, "neighbour", nil)
	dir := filepath.Join(a.stateDir, "sandboxes", "jailed")
	pid := qemuPID(t, dir)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CapInh:\t0000000000000000", "CapPrm:\t0000000000000000", "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "CapAmb:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("QEMU's status lacks %q", want)
		}
	}
	if strings.Contains(string(status), "Uid:\t0\t") {
		t.Error("QEMU runs as root")
	}
	for _, ns := range []string{"mnt", "pid", "net", "ipc", "uts"} {
		mine, _ := os.Readlink("/proc/self/ns/" + ns)
		its, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		if its == "" || its == mine {
			t.Errorf("QEMU shares the host's %s namespace (%s)", ns, its)
		}
	}
	limits, _ := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if !strings.Contains(string(limits), "Max open files            4096") || strings.Contains(string(limits), "Max file size             unlimited") {
		t.Errorf("QEMU's limits:\n%s", limits)
	}
	// What it sees: its own directory, its image files, the system's
	// programs; not the host's files, nor another sandbox's.
	root := fmt.Sprintf("/proc/%d/root", pid)
	for _, hidden := range []string{"/etc/shadow", "/root", filepath.Join(a.stateDir, "sandboxes", "neighbour"), filepath.Join(imagesDir, "minimal", "manifest.json"), "/var/lib"} {
		if _, err := os.Stat(root + hidden); err == nil {
			t.Errorf("QEMU sees %s", hidden)
		}
	}
	for _, seen := range []string{dir + "/disk.qcow2", filepath.Join(imagesDir, "minimal", "vmlinux"), "/usr/bin"} {
		if _, err := os.Stat(root + seen); err != nil {
			t.Errorf("QEMU cannot see %s, which it needs: %v", seen, err)
		}
	}
	// What it can do: inside its jail, as its user, with its limits.
	uid := strings.Fields(string(status)[strings.Index(string(status), "Uid:"):])[1]
	script := `touch /usr/pwned 2>/dev/null && echo wrote-usr; touch ` + dir + `/can-write && echo wrote-own; ` +
		`cat /proc/1/cmdline | tr '\0' ' ' | cut -c1-30; ls /proc | grep -c '^[0-9]'; kill -0 1 && echo can-signal-itself`
	out, err := exec.Command("nsenter", "-t", fmt.Sprint(pid), "-m", "-p", "-S", uid, "-G", "2000000", "--", "/bin/sh", "-c", script).CombinedOutput()
	t.Logf("inside QEMU's jail as its user: %s", out)
	if err != nil || strings.Contains(string(out), "wrote-usr") || !strings.Contains(string(out), "wrote-own") || !strings.Contains(string(out), "/usr/bin/qemu-system") {
		t.Errorf("inside the jail: %v: %s", err, out)
	}
	// Pause, resume and a clone still work jailed (under TCG here).
	if _, err := a.client.PauseSandbox(ctx, connect.NewRequest(&pb.PauseSandboxRequest{SandboxId: "jailed"})); err != nil {
		t.Fatalf("pause: %v", err)
	}
	if _, err := a.client.ResumeSandbox(ctx, connect.NewRequest(&pb.ResumeSandboxRequest{SandboxId: "jailed"})); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if r := execIn(t, a, "jailed", "cat /proc/uptime >/dev/null && echo back"); string(r.Stdout) != "back\n" {
		t.Fatalf("after resume: %q", r.Stdout)
	}
	if _, err := a.client.CreateSnapshot(ctx, connect.NewRequest(&pb.CreateSnapshotRequest{SandboxId: "jailed", Name: "jailsnap"})); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	create(t, a, "clone", func(r *pb.CreateSandboxRequest) { r.Snapshot = "jailsnap" })
	if r := execIn(t, a, "clone", "echo cloned"); string(r.Stdout) != "cloned\n" {
		t.Fatalf("clone: %q", r.Stdout)
	}
	if cpid := qemuPID(t, filepath.Join(a.stateDir, "sandboxes", "clone")); cpid != 0 {
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", cpid))
		if !strings.Contains(string(st), "Seccomp:\t2") {
			t.Error("the clone's QEMU is not confined")
		}
	}
	for _, id := range []string{"clone", "jailed", "neighbour"} {
		if _, err := a.client.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id})); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.client.DeleteSnapshot(ctx, connect.NewRequest(&pb.DeleteSnapshotRequest{Name: "jailsnap"})); err != nil {
		t.Fatal(err)
	}
	a.stop(t, syscall.SIGTERM)
	assertNoLeftovers(t, a.stateDir)
}
