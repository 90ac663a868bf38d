package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/cptest"
	"git.omukk.dev/wrenn/sandbox/pkg/sdk"
)

// sdkStack is a control plane with one gVisor agent, an admin and an API
// key: what the SDK and CLI tests run against.
type sdkStack struct {
	cp       *cptest.CP
	admin    cptest.Account
	key      string
	agent    *cpAgent
	password string
}

func startSDKStack(t *testing.T) *sdkStack {
	t.Helper()
	return startSDKStackOn(t, "gvisor")
}

// startSDKStackOn is startSDKStack with an agent of runtime rt.
func startSDKStackOn(t *testing.T, rt string) *sdkStack {
	t.Helper()
	requireVMs(t)
	if _, err := exec.LookPath("runsc"); err != nil {
		t.Skip("runsc is not installed (scripts/setup builds it)")
	}
	pg := requirePostgres(t)
	cp, err := pg.Start(context.Background(), cptest.Options{Tune: fastClocks})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	s := &sdkStack{cp: cp, password: "correct horse battery"}
	s.admin = cp.Admin(t, "admin@example.com")
	// Registered first, so it runs once the agent has stopped.
	t.Cleanup(func() {
		if s.agent != nil {
			assertNothingRunning(t, s.agent.stateDir)
		}
	})
	s.agent = startCPAgent(t, cp, s.admin.Token, 7, rt)
	s.key = cp.APIKey(t, s.admin)
	return s
}

func (s *sdkStack) client(t *testing.T, opts ...sdk.Option) *sdk.Client {
	t.Helper()
	c, err := sdk.New(append([]sdk.Option{sdk.WithoutEnv(), sdk.WithAPIURL(s.cp.URL), sdk.WithAPIKey(s.key), sdk.WithSandboxURL(s.cp.ProxyURL)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sdkProcesses lists the commands running in a sandbox (envd's own
// process list), for checks that the SDK left nothing behind.
func sdkProcesses(t *testing.T, sb *sdk.Sandbox) string {
	t.Helper()
	ps, err := sb.Commands.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "%d %s %q\n", p.PID, p.Cmd, p.Args)
	}
	return b.String()
}

// stallingReader gives n random bytes, then blocks until its context
// ends, as a slow source would.
type stallingReader struct {
	n    int
	sent chan struct{}
	ctx  context.Context
}

func (r *stallingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		select {
		case <-r.sent:
		default:
			close(r.sent)
		}
		<-r.ctx.Done()
		return 0, r.ctx.Err()
	}
	n := min(len(p), r.n)
	rand.Read(p[:n])
	r.n -= n
	return n, nil
}

// TestSDK drives every method of pkg/sdk against a real control plane,
// sandbox proxy and gVisor agent, through Wrenn's /v1 API and through its
// E2B-compatible API.
func TestSDK(t *testing.T) {
	s := startSDKStack(t)
	c := s.client(t)
	ctx := context.Background()

	sb, err := c.Create(ctx, sdk.CreateOptions{Template: "minimal", Timeout: 10 * time.Minute, Metadata: map[string]string{"suite": "sdk"}, Env: map[string]string{"FROM_CREATE": "yes"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Kill(ctx)
	if sb.State != sdk.StateRunning || sb.Template != "minimal" || sb.Metadata["suite"] != "sdk" {
		t.Fatalf("created: %+v", sb.SandboxInfo)
	}

	t.Run("lifecycle", func(t *testing.T) {
		info, err := c.Get(ctx, sb.ID)
		if err != nil || info.ID != sb.ID || info.State != sdk.StateRunning {
			t.Fatalf("get: %+v %v", info, err)
		}
		before := info.ExpiresAt
		if err := sb.SetTimeout(ctx, time.Hour); err != nil {
			t.Fatal(err)
		}
		if info, _ = sb.Info(ctx); !info.ExpiresAt.After(before) {
			t.Errorf("timeout not extended: %v → %v", before, info.ExpiresAt)
		}
		if err := c.SetTimeout(ctx, sb.ID, 0); !errors.Is(err, sdk.ErrInvalid) {
			t.Errorf("zero timeout: %v", err)
		}
		_, err = c.Get(ctx, "sb-00000000000000000000000000000000")
		var ae *sdk.APIError
		if !errors.Is(err, sdk.ErrNotFound) || !errors.As(err, &ae) || ae.Status != 404 {
			t.Errorf("unknown sandbox: %v", err)
		}
		ms, err := sb.Metrics(ctx)
		if err != nil || len(ms) == 0 || ms[len(ms)-1].MemTotal == 0 {
			t.Errorf("metrics: %+v %v", ms, err)
		}
		// Listing pages through every sandbox: two more, one per page.
		var more []*sdk.Sandbox
		for range 2 {
			o, err := c.Create(ctx, sdk.CreateOptions{Metadata: map[string]string{"suite": "sdk"}})
			if err != nil {
				t.Fatal(err)
			}
			more = append(more, o)
		}
		seen := map[string]bool{}
		for info, err := range c.List(ctx, sdk.ListOptions{Metadata: map[string]string{"suite": "sdk"}, PageSize: 1}) {
			if err != nil {
				t.Fatal(err)
			}
			seen[info.ID] = true
		}
		if len(seen) != 3 || !seen[sb.ID] || !seen[more[0].ID] || !seen[more[1].ID] {
			t.Errorf("listed %v", seen)
		}
		for info, err := range c.List(ctx, sdk.ListOptions{Metadata: map[string]string{"suite": "other"}}) {
			t.Errorf("metadata filter matched %+v %v", info, err)
		}
		for _, o := range more {
			if err := o.Kill(ctx); err != nil {
				t.Error(err)
			}
		}
		if err := c.Kill(ctx, more[0].ID); err == nil {
			t.Errorf("second kill succeeded")
		}
		if info, err := c.Get(ctx, more[0].ID); err != nil || info.State != sdk.StateStopped {
			t.Errorf("killed sandbox: %+v %v", info, err)
		}
	})

	t.Run("commands", func(t *testing.T) {
		res, err := sb.Commands.Run(ctx, "echo $FROM_CREATE; echo oops >&2; exit 3")
		var exit *sdk.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 3 || exit.Result.Stdout != "yes\n" || exit.Result.Stderr != "oops\n" || res.ExitCode != 3 {
			t.Fatalf("run: %+v %v", res, err)
		}
		var out bytes.Buffer
		var errChunks []string
		res, err = sb.Commands.Run(ctx, "pwd; echo $X; echo e >&2", sdk.WithCwd("/tmp"), sdk.WithEnv(map[string]string{"X": "x"}), sdk.WithStdout(&out),
			sdk.OnStderr(func(b []byte) { errChunks = append(errChunks, string(b)) }))
		if err != nil || out.String() != "/tmp\nx\n" || strings.Join(errChunks, "") != "e\n" || res.Stdout != "" {
			t.Fatalf("streamed run: %q %q %+v %v", out.String(), errChunks, res, err)
		}
		res, err = sb.Commands.Run(ctx, "/bin/echo", sdk.WithArgs("a b", "$HOME"))
		if err != nil || res.Stdout != "a b $HOME\n" {
			t.Fatalf("direct run: %+v %v", res, err)
		}
		if _, err := sb.Commands.Run(ctx, "/no/such/binary", sdk.WithArgs()); !errors.Is(err, sdk.ErrInvalid) {
			t.Errorf("missing binary: %v", err)
		}
		if _, err := sb.Commands.Run(ctx, "sleep 30", sdk.WithTimeout(time.Second)); err == nil {
			t.Errorf("a command past its timeout succeeded")
		}

		// Background: stdin, list, connect, kill.
		cat, err := sb.Commands.Start(ctx, "cat", sdk.WithStdin(), sdk.WithTag("the-cat"))
		if err != nil {
			t.Fatal(err)
		}
		if err := cat.SendStdin(ctx, []byte("through stdin\n")); err != nil {
			t.Fatal(err)
		}
		if err := cat.CloseStdin(ctx); err != nil {
			t.Fatal(err)
		}
		if res, err := cat.Wait(ctx); err != nil || res.Stdout != "through stdin\n" {
			t.Fatalf("cat: %+v %v", res, err)
		}
		sleeper, err := sb.Commands.Start(ctx, "sleep 600; echo never")
		if err != nil {
			t.Fatal(err)
		}
		if ps := sdkProcesses(t, sb); !strings.Contains(ps, fmt.Sprint(sleeper.PID)) {
			t.Fatalf("list lacks %d:\n%s", sleeper.PID, ps)
		}
		sleeper.Disconnect()
		if _, err := sleeper.Wait(ctx); !errors.Is(err, sdk.ErrDisconnected) {
			t.Errorf("wait after disconnect: %v", err)
		}
		again, err := sb.Commands.Connect(ctx, sleeper.PID)
		if err != nil {
			t.Fatal(err)
		}
		if err := again.Kill(ctx); err != nil {
			t.Fatal(err)
		}
		res, err = again.Wait(ctx)
		if !errors.As(err, &exit) || res.ExitCode != -1 || !strings.Contains(res.Error, "killed") {
			t.Errorf("killed: %+v %v", res, err)
		}
		if _, err := sb.Commands.Connect(ctx, 999999); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("connect to no process: %v", err)
		}
		if err := sb.Commands.Kill(ctx, 999999); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("kill no process: %v", err)
		}

		// A context that ends mid-run kills the command.
		cctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		_, err = sb.Commands.Run(cctx, "sleep 600; echo marker-cancelled")
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("cancelled run: %v", err)
		}
		if ps := sdkProcesses(t, sb); strings.Contains(ps, "marker-cancelled") {
			t.Errorf("the cancelled command still runs:\n%s", ps)
		}

		// Another user.
		res, err = sb.AsUser("user").Commands.Run(ctx, "id -un; cd; pwd")
		if err != nil || res.Stdout != "user\n/home/user\n" {
			t.Errorf("as user: %+v %v", res, err)
		}
	})

	t.Run("files", func(t *testing.T) {
		if _, err := sb.Files.WriteFile(ctx, "/tmp/sdk/hello.txt", []byte("hello")); err != nil {
			t.Fatal(err)
		}
		if b, err := sb.Files.ReadFile(ctx, "/tmp/sdk/hello.txt"); err != nil || string(b) != "hello" {
			t.Fatalf("read: %q %v", b, err)
		}
		// 32 MiB streamed both ways.
		big := make([]byte, 32<<20)
		rand.Read(big)
		w := sb.Files.Create(ctx, "/tmp/sdk/big.bin")
		for chunk := range slices.Chunk(big, 1<<20) {
			if _, err := w.Write(chunk); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		rc, err := sb.Files.Read(ctx, "/tmp/sdk/big.bin")
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		if _, err := io.Copy(h, rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
		if want := sha256.Sum256(big); !bytes.Equal(h.Sum(nil), want[:]) {
			t.Fatal("the streamed file differs")
		}
		if _, err := sb.Files.ReadFile(ctx, "/tmp/sdk/missing"); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("missing file: %v", err)
		}
		st, err := sb.Files.Stat(ctx, "/tmp/sdk/big.bin")
		if err != nil || st.Size != int64(len(big)) || st.Type != sdk.TypeFile || st.Name != "big.bin" {
			t.Errorf("stat: %+v %v", st, err)
		}
		if ok, err := sb.Files.Exists(ctx, "/tmp/sdk/hello.txt"); !ok || err != nil {
			t.Errorf("exists: %v %v", ok, err)
		}
		if ok, err := sb.Files.Exists(ctx, "/tmp/sdk/nope"); ok || err != nil {
			t.Errorf("exists (missing): %v %v", ok, err)
		}
		if made, err := sb.Files.MakeDir(ctx, "/tmp/sdk/d/e"); !made || err != nil {
			t.Errorf("mkdir: %v %v", made, err)
		}
		if made, err := sb.Files.MakeDir(ctx, "/tmp/sdk/d/e"); made || err != nil {
			t.Errorf("mkdir again: %v %v", made, err)
		}
		if e, err := sb.Files.Rename(ctx, "/tmp/sdk/hello.txt", "/tmp/sdk/d/hi.txt"); err != nil || e.Path != "/tmp/sdk/d/hi.txt" {
			t.Errorf("rename: %+v %v", e, err)
		}
		entries, err := sb.Files.List(ctx, "/tmp/sdk", 2)
		names := map[string]sdk.EntryType{}
		for _, e := range entries {
			names[strings.TrimPrefix(e.Path, "/tmp/sdk/")] = e.Type
		}
		if err != nil || names["big.bin"] != sdk.TypeFile || names["d"] != sdk.TypeDir || names["d/hi.txt"] != sdk.TypeFile || names["d/e"] != sdk.TypeDir {
			t.Errorf("list: %v %v", names, err)
		}
		if err := sb.Files.Remove(ctx, "/tmp/sdk/d"); err != nil {
			t.Error(err)
		}
		if ok, _ := sb.Files.Exists(ctx, "/tmp/sdk/d/hi.txt"); ok {
			t.Error("removed directory still has its file")
		}

		// Watch a directory.
		watcher, err := sb.Files.Watch(ctx, "/tmp/sdk", false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sb.Files.WriteFile(ctx, "/tmp/sdk/watched.txt", []byte("x")); err != nil {
			t.Fatal(err)
		}
		// envd writes through a temporary file renamed into place.
		timeout := time.After(10 * time.Second)
	events:
		for {
			select {
			case ev := <-watcher.Events():
				if ev.Name == "watched.txt" {
					break events
				}
			case <-timeout:
				t.Error("no event for a written file")
				break events
			}
		}
		watcher.Close()
		if err := watcher.Err(); err != nil {
			t.Errorf("closed watcher: %v", err)
		}

		// Signed URLs work with no token, through the proxy's headers.
		for _, u := range []struct{ method, url string }{
			{"POST", sb.Files.UploadURL("/tmp/sdk/signed.txt", sdk.URLOptions{Expires: time.Minute})},
			{"GET", sb.Files.DownloadURL("/tmp/sdk/signed.txt", sdk.URLOptions{})},
		} {
			var body io.Reader
			if u.method == "POST" {
				body = strings.NewReader("signed")
			}
			req, _ := http.NewRequest(u.method, u.url, body)
			req.Header.Set("E2b-Sandbox-Id", sb.ID)
			req.Header.Set("E2b-Sandbox-Port", "49983")
			req.Header.Set("Content-Type", "application/octet-stream")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || u.method == "GET" && string(got) != "signed" {
				t.Errorf("%s signed URL: %d %s", u.method, res.StatusCode, got)
			}
		}
		req, _ := http.NewRequest("GET", strings.Replace(sb.Files.DownloadURL("/tmp/sdk/signed.txt", sdk.URLOptions{}), "signature=v1_", "signature=v1_x", 1), nil)
		req.Header.Set("E2b-Sandbox-Id", sb.ID)
		req.Header.Set("E2b-Sandbox-Port", "49983")
		if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 401 {
			t.Errorf("a forged signature: %v %v", res.StatusCode, err)
		} else {
			res.Body.Close()
		}

		// A write cancelled in the middle leaves the old file and no
		// partial one; a read cancelled in the middle ends with the
		// context's error.
		cctx, cancel := context.WithCancel(ctx)
		r := &stallingReader{n: 4 << 20, sent: make(chan struct{}), ctx: cctx}
		go func() { <-r.sent; cancel() }()
		_, err = sb.Files.Write(cctx, "/tmp/sdk/big.bin", r)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled write: %v", err)
		}
		if st, err := sb.Files.Stat(ctx, "/tmp/sdk/big.bin"); err != nil || st.Size != int64(len(big)) {
			t.Errorf("the file after a cancelled write: %+v %v", st, err)
		}
		// envd removes its temporary file once it sees the request end.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			entries, _ = sb.Files.List(ctx, "/tmp/sdk", 1)
			if len(entries) == 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("a cancelled write left files: %+v", entries)
				break
			}
		}
		cctx, cancel = context.WithCancel(ctx)
		rc, err = sb.Files.Read(cctx, "/tmp/sdk/big.bin")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(rc, make([]byte, 1<<20)); err != nil {
			t.Fatal(err)
		}
		cancel()
		if _, err := io.Copy(io.Discard, rc); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled read: %v", err)
		}
		rc.Close()
	})

	t.Run("pty", func(t *testing.T) {
		term, err := sb.PTY.Create(ctx, sdk.PTYOptions{Cols: 80, Rows: 24})
		if err != nil {
			t.Fatal(err)
		}
		if err := term.Resize(ctx, 120, 40); err != nil {
			t.Fatal(err)
		}
		if err := term.SendInput(ctx, []byte("stty size; echo pty-$((6*7)); exit 5\n")); err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(term)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(out, []byte("40 120")) || !bytes.Contains(out, []byte("pty-42")) {
			t.Errorf("terminal output: %q", out)
		}
		if res, err := term.Wait(ctx); res.ExitCode != 5 || err == nil {
			t.Errorf("terminal exit: %+v %v", res, err)
		}
		term, err = sb.PTY.Create(ctx, sdk.PTYOptions{Cols: 80, Rows: 24, Cmd: "/bin/sleep", Args: []string{"600"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := term.Kill(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(term); err != nil {
			t.Errorf("killed terminal: %v", err)
		}
	})

	t.Run("pause and snapshots", func(t *testing.T) {
		if err := sb.Pause(ctx); err != nil {
			t.Fatal(err)
		}
		if info, _ := sb.Info(ctx); info.State != sdk.StatePaused {
			t.Fatalf("paused: %+v", info)
		}
		back, err := c.Connect(ctx, sb.ID, sdk.ConnectOptions{Timeout: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if b, err := back.Files.ReadFile(ctx, "/tmp/sdk/watched.txt"); err != nil || string(b) != "x" {
			t.Fatalf("after connect: %q %v", b, err)
		}
		if err := c.Pause(ctx, sb.ID); err != nil {
			t.Fatal(err)
		}
		if info, err := c.Resume(ctx, sb.ID, 0); err != nil || info.State != sdk.StateRunning {
			t.Fatalf("resume: %+v %v", info, err)
		}
		snap, err := sb.CreateSnapshot(ctx, "sdk-snap")
		if err != nil || snap.Name != "sdk-snap" || snap.ID == "" {
			t.Fatalf("snapshot: %+v %v", snap, err)
		}
		snaps, err := c.ListSnapshots(ctx)
		if err != nil || len(snaps) != 1 || snaps[0].ID != snap.ID {
			t.Fatalf("snapshots: %+v %v", snaps, err)
		}
		clone, err := c.Create(ctx, sdk.CreateOptions{Snapshot: snap.ID})
		if err != nil {
			t.Fatal(err)
		}
		if b, err := clone.Files.ReadFile(ctx, "/tmp/sdk/watched.txt"); err != nil || string(b) != "x" {
			t.Errorf("clone: %q %v", b, err)
		}
		if err := c.DeleteSnapshot(ctx, snap.ID); !errors.Is(err, sdk.ErrConflict) {
			t.Errorf("deleting a snapshot in use: %v", err)
		}
		if err := clone.Kill(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.DeleteSnapshot(ctx, snap.ID); err != nil {
			t.Errorf("delete snapshot: %v", err)
		}
	})

	t.Run("stream cut by a killed sandbox", func(t *testing.T) {
		victim, err := c.Create(ctx, sdk.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		h, err := victim.Commands.Start(ctx, "while true; do echo tick; sleep 0.2; done")
		if err != nil {
			t.Fatal(err)
		}
		watcher, err := victim.Files.Watch(ctx, "/tmp", true)
		if err != nil {
			t.Fatal(err)
		}
		if err := victim.Kill(ctx); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := h.Wait(wctx); !errors.Is(err, sdk.ErrUnavailable) {
			t.Errorf("wait on a killed sandbox: %v", err)
		}
		for range watcher.Events() {
		}
		if err := watcher.Err(); !errors.Is(err, sdk.ErrUnavailable) {
			t.Errorf("watch on a killed sandbox: %v", err)
		}
		if _, err := victim.Commands.Run(ctx, "true"); err == nil {
			t.Errorf("a command in a killed sandbox succeeded")
		}
	})

	t.Run("accounts, keys and hosts", func(t *testing.T) {
		tok, err := c.Login(ctx, s.admin.Email, s.password)
		if err != nil || tok == "" {
			t.Fatalf("login: %v", err)
		}
		if _, err := c.Login(ctx, s.admin.Email, "wrong"); !errors.Is(err, sdk.ErrAuth) {
			t.Errorf("bad password: %v", err)
		}
		session := s.client(t, sdk.WithAPIKey(tok))
		me, err := session.Whoami(ctx)
		if err != nil || me.User.Email != s.admin.Email || !me.User.Admin || me.ActiveTeamID == "" {
			t.Errorf("whoami: %+v %v", me, err)
		}
		k, err := session.CreateAPIKey(ctx, "from the sdk")
		if err != nil || !strings.HasPrefix(k.Key, "e2b_") {
			t.Fatalf("create key: %+v %v", k, err)
		}
		keys, err := session.ListAPIKeys(ctx)
		found := false
		for _, x := range keys {
			found = found || x.ID == k.ID && x.Key == ""
		}
		if err != nil || !found {
			t.Errorf("keys: %+v %v", keys, err)
		}
		if err := session.RevokeAPIKey(ctx, k.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.client(t, sdk.WithAPIKey(k.Key)).Whoami(ctx); !errors.Is(err, sdk.ErrAuth) {
			t.Errorf("a revoked key: %v", err)
		}
		hosts, err := session.ListHosts(ctx)
		if err != nil || len(hosts) != 1 || hosts[0].ID != s.agent.hostID || hosts[0].Status != "ready" {
			t.Fatalf("hosts: %+v %v", hosts, err)
		}
		ht, err := session.CreateHostToken(ctx)
		if err != nil || ht.Token == "" || !ht.ExpiresAt.After(time.Now()) {
			t.Errorf("host token: %+v %v", ht, err)
		}
		if err := session.Logout(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := session.Whoami(ctx); !errors.Is(err, sdk.ErrAuth) {
			t.Errorf("after logout: %v", err)
		}
	})

	t.Run("E2B protocol", func(t *testing.T) {
		e, err := sdk.New(sdk.WithoutEnv(), sdk.WithProtocol(sdk.ProtocolE2B), sdk.WithAPIURL(s.cp.URL+"/e2b"), sdk.WithAPIKey(s.key), sdk.WithSandboxURL(s.cp.ProxyURL))
		if err != nil {
			t.Fatal(err)
		}
		esb, err := e.Create(ctx, sdk.CreateOptions{Metadata: map[string]string{"via": "e2b"}})
		if err != nil {
			t.Fatal(err)
		}
		defer esb.Kill(ctx)
		if res, err := esb.Commands.Run(ctx, "echo via-e2b"); err != nil || res.Stdout != "via-e2b\n" {
			t.Fatalf("run: %+v %v", res, err)
		}
		if _, err := e.Create(ctx, sdk.CreateOptions{VCPUs: 2}); !errors.Is(err, sdk.ErrUnsupported) || !strings.Contains(err.Error(), "VCPUs") {
			t.Errorf("VCPUs against E2B: %v", err)
		}
		n := 0
		for info, err := range e.List(ctx, sdk.ListOptions{Metadata: map[string]string{"via": "e2b"}}) {
			if err != nil || info.ID != esb.ID {
				t.Errorf("list: %+v %v", info, err)
			}
			n++
		}
		if n != 1 {
			t.Errorf("listed %d", n)
		}
		if ms, err := esb.Metrics(ctx); err != nil || len(ms) == 0 {
			t.Errorf("metrics: %v %v", ms, err)
		}
		if err := esb.SetTimeout(ctx, time.Hour); err != nil {
			t.Error(err)
		}
		if err := esb.Pause(ctx); err != nil {
			t.Fatal(err)
		}
		back, err := e.Connect(ctx, esb.ID, sdk.ConnectOptions{})
		if err != nil || back.State != sdk.StateRunning {
			t.Fatalf("connect: %+v %v", back, err)
		}
		if _, err := e.Whoami(ctx); !errors.Is(err, sdk.ErrUnsupported) {
			t.Errorf("whoami against E2B: %v", err)
		}
		if err := esb.Kill(ctx); err != nil {
			t.Error(err)
		}
		if _, err := e.Get(ctx, esb.ID); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("a killed sandbox: %v", err)
		}
	})

	if err := sb.Kill(ctx); err != nil {
		t.Error(err)
	}
	if _, err := c.DrainHost(ctx, s.agent.hostID); !errors.Is(err, sdk.ErrAuth) {
		t.Errorf("drain with a member's key: %v", err)
	}
	if _, err := s.client(t, sdk.WithAPIKey(s.admin.Token)).DrainHost(ctx, s.agent.hostID); err != nil {
		t.Errorf("drain: %v", err)
	}
	if _, err := c.Create(ctx, sdk.CreateOptions{}); !errors.Is(err, sdk.ErrCapacity) {
		t.Errorf("create on a drained platform: %v", err)
	}
}

// TestSDKExamples runs pkg/sdk's examples (whose output is checked)
// against a real stack: what pkg.go.dev shows works as shown.
func TestSDKExamples(t *testing.T) {
	s := startSDKStack(t)
	cmd := exec.Command("go", "test", "-count=1", "-run", "^Example", "-v", "git.omukk.dev/wrenn/sandbox/pkg/sdk")
	cmd.Env = append(os.Environ(), "WRENN_API_URL="+s.cp.URL, "WRENN_API_KEY="+s.key, "WRENN_SANDBOX_URL="+s.cp.ProxyURL)
	out, err := cmd.CombinedOutput()
	if err != nil || bytes.Count(out, []byte("--- PASS: Example")) < 10 || bytes.Contains(out, []byte("FAIL")) {
		t.Fatalf("examples: %v\n%s", err, out)
	}
	for info, err := range s.client(t).List(context.Background(), sdk.ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if info.State != sdk.StateStopped {
			t.Errorf("an example left sandbox %s %s", info.ID, info.State)
		}
	}
}
