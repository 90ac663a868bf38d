package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// cliEnv runs the built wrenn binary with a private config directory and
// none of the caller's WRENN_/E2B_ variables.
type cliEnv struct {
	t    *testing.T
	bin  string
	home string
	env  []string
}

func newCLIEnv(t *testing.T) *cliEnv {
	home := t.TempDir()
	e := &cliEnv{t: t, bin: filepath.Join(binDir, "wrenn"), home: home}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WRENN_") && !strings.HasPrefix(kv, "E2B_") && !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_CONFIG_HOME=") && !strings.HasPrefix(kv, "NO_COLOR=") {
			e.env = append(e.env, kv)
		}
	}
	e.env = append(e.env, "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, "config"))
	return e
}

type cliResult struct {
	code           int
	stdout, stderr string
}

// run runs wrenn with args and stdin, and returns its exit code and output.
func (e *cliEnv) run(stdin string, args ...string) cliResult {
	e.t.Helper()
	cmd := exec.Command(e.bin, args...)
	cmd.Env = e.env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("wrenn %q: %v", args, err)
	}
	return cliResult{code, out.String(), errb.String()}
}

// ok runs wrenn and fails the test unless it exits 0.
func (e *cliEnv) ok(args ...string) string {
	e.t.Helper()
	r := e.run("", args...)
	if r.code != 0 {
		e.t.Fatalf("wrenn %q: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func sha256File(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// ptyRun runs wrenn on a pseudo-terminal and collects what it shows.
type ptyRun struct {
	cmd    *exec.Cmd
	master *os.File
	tty    *os.File
	// before is the terminal's state before wrenn started.
	before *unix.Termios
	mu     sync.Mutex
	out    bytes.Buffer
	done   chan struct{}
}

func (e *cliEnv) startPTY(extraEnv []string, args ...string) *ptyRun {
	e.t.Helper()
	master, tty, err := pty.Open()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := pty.Setsize(master, &pty.Winsize{Rows: 24, Cols: 80}); err != nil {
		e.t.Fatal(err)
	}
	p := &ptyRun{master: master, tty: tty, done: make(chan struct{})}
	if p.before, err = unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS); err != nil {
		e.t.Fatal(err)
	}
	p.cmd = exec.Command(e.bin, args...)
	p.cmd.Env = append(append([]string{}, e.env...), extraEnv...)
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = tty, tty, tty
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			p.mu.Lock()
			p.out.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	e.t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		master.Close()
		tty.Close()
	})
	return p
}

func (p *ptyRun) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *ptyRun) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.output(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the terminal never showed %q:\n%q", s, p.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *ptyRun) wait(t *testing.T) int {
	t.Helper()
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(60 * time.Second):
		t.Fatalf("wrenn did not exit:\n%q", p.output())
		return -1
	}
}

// TestCLI drives the built wrenn binary against a real control plane,
// proxy and gVisor agent: profiles, every sandbox command, exec exit
// codes and stdin, a shell on a pseudo-terminal (raw mode, Ctrl-C,
// resize, the terminal restored), cp of a 100 MiB file and of a
// directory both ways, snapshots, keys, hosts, output formats and errors.
func TestCLI(t *testing.T) {
	s := startSDKStack(t)
	e := newCLIEnv(t)

	// Profiles: an API key in the default one, a session in another.
	r := e.run(s.key+"\n", "login", "--api-url", s.cp.URL, "--sandbox-url", s.cp.ProxyURL, "--api-key-stdin")
	if r.code != 0 || !strings.Contains(r.stdout, s.admin.TeamID) {
		t.Fatalf("login: %+v", r)
	}
	cfgPath := filepath.Join(e.home, "config", "wrenn", "config.toml")
	if st, err := os.Stat(cfgPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v %v", st, err)
	}
	var me struct {
		TeamID  string `json:"team_id"`
		Profile string
	}
	if err := json.Unmarshal([]byte(e.ok("whoami", "--json")), &me); err != nil || me.TeamID != s.admin.TeamID || me.Profile != "default" {
		t.Fatalf("whoami: %+v %v", me, err)
	}
	r = e.run(s.password+"\n", "login", "--profile", "admin", "--api-url", s.cp.URL, "--sandbox-url", s.cp.ProxyURL, "--email", "admin@example.com", "--password-stdin")
	if r.code != 0 {
		t.Fatalf("login with a password: %+v", r)
	}
	if r = e.run("wrong\n", "login", "--profile", "bad", "--api-url", s.cp.URL, "--email", "admin@example.com", "--password-stdin"); r.code != 1 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("a wrong password: %+v", r)
	}
	if cfg, _ := os.ReadFile(cfgPath); !bytes.Contains(cfg, []byte(`[profiles.admin]`)) || bytes.Contains(cfg, []byte(`[profiles.bad]`)) || !bytes.Contains(cfg, []byte(`current = "admin"`)) {
		t.Errorf("config:\n%s", cfg)
	}

	// Sandboxes.
	id := strings.TrimSpace(e.ok("--profile", "default", "sandbox", "create", "--template", "minimal", "--timeout", "10m", "--metadata", "suite=cli", "-e", "GREETING=hi"))
	if !strings.HasPrefix(id, "sb-") {
		t.Fatalf("create printed %q", id)
	}
	defer e.run("", "sb", "kill", id)
	if out := e.ok("sb", "list"); !strings.Contains(out, id) || !strings.HasPrefix(out, "ID ") || strings.Contains(out, "\x1b[") {
		t.Errorf("list:\n%s", out)
	}
	var list []struct {
		ID, State string
		Metadata  map[string]string
	}
	if err := json.Unmarshal([]byte(e.ok("sb", "ls", "--metadata", "suite=cli", "-o", "json")), &list); err != nil || len(list) != 1 || list[0].ID != id || list[0].State != "running" {
		t.Errorf("list --json: %+v %v", list, err)
	}
	if out := e.ok("sb", "get", id, "-o", "yaml"); !strings.Contains(out, "id: "+id) || !strings.Contains(out, "suite: cli") {
		t.Errorf("get -o yaml:\n%s", out)
	}
	if out := e.ok("sb", "get", id); !strings.Contains(out, "state:") || !strings.Contains(out, "suite=cli") {
		t.Errorf("get:\n%s", out)
	}
	e.ok("sb", "timeout", id, "1h")
	if out := e.ok("sb", "metrics", id); !strings.Contains(out, "MEMORY") || !strings.Contains(out, "MiB") {
		t.Errorf("metrics:\n%s", out)
	}
	if r = e.run("", "sb", "get", "sb-00000000000000000000000000000000"); r.code != 1 || !strings.HasPrefix(r.stderr, "wrenn: ") || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("an unknown sandbox: %+v", r)
	}

	// exec: output streams, the exit code is the command's, -i sends stdin.
	r = e.run("", "exec", id, "--", "sh", "-c", "echo out $GREETING; echo err >&2; exit 7")
	if r.code != 7 || r.stdout != "out hi\n" || r.stderr != "err\n" {
		t.Errorf("exec: %+v", r)
	}
	if r = e.run("", "exec", id, "--", "true"); r.code != 0 {
		t.Errorf("exec true: %+v", r)
	}
	if r = e.run("through stdin\n", "exec", "-i", id, "--", "cat"); r.code != 0 || r.stdout != "through stdin\n" {
		t.Errorf("exec -i: %+v", r)
	}
	if r = e.run("", "exec", "-w", "/tmp", "-u", "user", id, "--", "sh", "-c", "pwd; id -un"); r.stdout != "/tmp\nuser\n" {
		t.Errorf("exec as user in /tmp: %+v", r)
	}
	if r = e.run("", "exec", id, "--", "/no/such/program"); r.code != 1 || !strings.HasPrefix(r.stderr, "wrenn: ") {
		t.Errorf("exec of a missing program: %+v", r)
	}

	// cp: a 100 MiB file both ways, and a directory both ways.
	dir := t.TempDir()
	big := filepath.Join(dir, "big.bin")
	f, _ := os.Create(big)
	if _, err := io.CopyN(f, rand.Reader, 100<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// On the sandbox's disk (its /tmp is memory), in the default user's home.
	e.ok("cp", big, id+":/home/user/")
	r = e.run("", "exec", id, "--", "sha256sum", "/home/user/big.bin")
	want := sha256File(t, big)
	if !strings.HasPrefix(r.stdout, hex.EncodeToString(want[:])) {
		t.Fatalf("uploaded checksum: %+v", r)
	}
	back := filepath.Join(dir, "back.bin")
	e.ok("cp", id+":/home/user/big.bin", back)
	if sha256File(t, back) != want {
		t.Fatal("downloaded file differs")
	}
	tree := filepath.Join(dir, "tree")
	for _, p := range []string{"a/b", "c"} {
		if err := os.MkdirAll(filepath.Join(tree, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(tree, "a/b/deep.txt"), []byte("deep"), 0o640)
	os.WriteFile(filepath.Join(tree, "top.sh"), []byte("#!/bin/sh\necho run\n"), 0o755)
	os.Symlink("a/b/deep.txt", filepath.Join(tree, "link"))
	e.ok("cp", tree, id+":/tmp/up")
	if r = e.run("", "exec", id, "--", "sh", "-c", "cat /tmp/up/a/b/deep.txt /tmp/up/link; /tmp/up/top.sh; ls -a /tmp/ | grep -c wrenn-cp"); r.stdout != "deepdeeprun\n0\n" {
		t.Errorf("uploaded tree: %+v", r)
	}
	e.ok("cp", id+":/tmp/up", filepath.Join(dir, "down"))
	if b, _ := os.ReadFile(filepath.Join(dir, "down/a/b/deep.txt")); string(b) != "deep" {
		t.Errorf("downloaded tree: %q", b)
	}
	if l, _ := os.Readlink(filepath.Join(dir, "down/link")); l != "a/b/deep.txt" {
		t.Errorf("downloaded link: %q", l)
	}
	if st, err := os.Stat(filepath.Join(dir, "down/top.sh")); err != nil || st.Mode().Perm()&0o100 == 0 {
		t.Errorf("downloaded script mode: %v %v", st, err)
	}
	if r = e.run("", "cp", id+":/no/such", dir); r.code != 1 || !strings.Contains(r.stderr, "does not exist (not_found)") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("cp of a missing file: %+v", r)
	}
	if out := e.ok("cp", id+":/tmp/up/a/b/deep.txt", "-"); out != "deep" {
		t.Errorf("cp to stdout: %q", out)
	}

	// shell on a pseudo-terminal: raw mode, Ctrl-C to the sandbox, resize,
	// exit code, terminal restored.
	t.Run("shell", func(t *testing.T) {
		p := e.startPTY(nil, "shell", id)
		before := p.before
		p.master.Write([]byte("echo ready-$((6*7))\n"))
		p.waitFor(t, "ready-42")
		p.master.Write([]byte("sleep 100; echo slept\n"))
		time.Sleep(500 * time.Millisecond)
		p.master.Write([]byte{3}) // Ctrl-C: interrupts sleep in the sandbox, not wrenn
		p.master.Write([]byte("echo after-$((1+1))\n"))
		p.waitFor(t, "after-2")
		if strings.Contains(p.output(), "\nslept\r\n") { // the output, not the echoed command
			t.Errorf("Ctrl-C did not interrupt the command:\n%q", p.output())
		}
		if err := pty.Setsize(p.master, &pty.Winsize{Rows: 33, Cols: 101}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(p.output(), "size-33-101") {
			p.master.Write([]byte("echo size-$(stty size | tr ' ' -)\n"))
			time.Sleep(300 * time.Millisecond)
			if time.Now().After(deadline) {
				t.Fatalf("the resize did not reach the sandbox:\n%q", p.output())
			}
		}
		p.master.Write([]byte("exit 3\n"))
		if code := p.wait(t); code != 3 {
			t.Errorf("shell exit code %d", code)
		}
		after, err := unix.IoctlGetTermios(int(p.tty.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		if before.Lflag&unix.ICANON == 0 || *after != *before {
			t.Errorf("terminal not restored: before %+v after %+v", before, after)
		}
		// Killing the sandbox's shell from outside still restores it.
		p = e.startPTY(nil, "shell", id)
		p.master.Write([]byte("echo second-$((2*2))\n"))
		p.waitFor(t, "second-4")
		p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.wait(t); code == 0 {
			t.Errorf("a terminated shell exited 0")
		}
		if after, _ := unix.IoctlGetTermios(int(p.tty.Fd()), unix.TCGETS); *after != *p.before {
			t.Errorf("terminal not restored after SIGTERM")
		}
		if ps := e.ok("exec", id, "--", "sh", "-c", `for p in /proc/[0-9]*; do tr '\0' ' ' < $p/cmdline; echo; done`); strings.Contains(ps, "bash -i -l") {
			t.Errorf("the shell's bash still runs after wrenn was terminated:\n%s", ps)
		}
	})

	t.Run("colour", func(t *testing.T) {
		// The slave stays open here, so the output is read until the
		// table's last column shows up.
		p := e.startPTY(nil, "sb", "list")
		p.wait(t)
		p.waitFor(t, "METADATA")
		if !strings.Contains(p.output(), "\x1b[1m") {
			t.Errorf("no colour on a terminal: %q", p.output())
		}
		p = e.startPTY([]string{"NO_COLOR=1"}, "sb", "list")
		p.wait(t)
		p.waitFor(t, "METADATA")
		if strings.Contains(p.output(), "\x1b[") {
			t.Errorf("colour with NO_COLOR: %q", p.output())
		}
	})

	// Pause, resume, snapshots.
	e.ok("sb", "pause", id)
	if out := e.ok("sb", "get", id, "--json"); !strings.Contains(out, `"state": "paused"`) {
		t.Errorf("paused: %s", out)
	}
	e.ok("sb", "resume", id)
	snap := strings.Fields(e.ok("snapshot", "create", id, "cli-snap"))[0]
	if out := e.ok("snapshot", "list"); !strings.Contains(out, snap) || !strings.Contains(out, "cli-snap") {
		t.Errorf("snapshot list:\n%s", out)
	}
	clone := strings.TrimSpace(e.ok("sb", "create", "--snapshot", snap))
	if out := e.ok("exec", clone, "--", "cat", "/tmp/up/a/b/deep.txt"); out != "deep" {
		t.Errorf("clone: %q", out)
	}
	e.ok("sb", "kill", clone)
	e.ok("snapshot", "rm", snap)

	// Keys and hosts (the admin profile holds a session).
	keyOut := e.run("", "--profile", "admin", "key", "create", "ci")
	if keyOut.code != 0 || !strings.HasPrefix(keyOut.stdout, "e2b_") {
		t.Fatalf("key create: %+v", keyOut)
	}
	var keys []struct{ ID, Name string }
	json.Unmarshal([]byte(e.ok("--profile", "admin", "key", "list", "--json")), &keys)
	kid := ""
	for _, k := range keys {
		if k.Name == "ci" {
			kid = k.ID
		}
	}
	if kid == "" {
		t.Fatalf("key list: %+v", keys)
	}
	e.ok("--profile", "admin", "key", "revoke", kid)
	if out := e.ok("--profile", "admin", "host", "list"); !strings.Contains(out, s.agent.hostID) || !strings.Contains(out, "ready") {
		t.Errorf("host list:\n%s", out)
	}
	if out := e.ok("--profile", "admin", "host", "token"); len(strings.TrimSpace(out)) < 20 {
		t.Errorf("host token: %q", out)
	}

	// Generated help, completion and man page.
	if r = e.run("", "image", "-h"); r.code != 0 || !strings.Contains(r.stdout, "build") || !strings.Contains(r.stdout, "verify") {
		t.Errorf("image -h: %+v", r)
	}
	if r = e.run("", "image", "verify", "-h"); r.code != 0 || !strings.Contains(r.stdout, "wrenn image verify NAME") {
		t.Errorf("image verify -h: %+v", r)
	}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		if out := e.ok("completion", sh); !strings.Contains(out, "wrenn") || len(out) < 1000 {
			t.Errorf("completion %s: %d bytes", sh, len(out))
		}
	}
	if out := e.ok("man"); !strings.Contains(out, ".TH \"WRENN\" \"1\"") {
		t.Errorf("man: %.200q", out)
	}
	if r = e.run("", "sb", "bogus"); r.code != 2 || !strings.Contains(r.stderr, "unknown command") {
		t.Errorf("unknown subcommand: %+v", r)
	}

	e.ok("sb", "kill", id)
	e.ok("--profile", "admin", "host", "drain", s.agent.hostID)
	if r = e.run("", "logout", "--profile", "admin"); r.code != 0 {
		t.Errorf("logout: %+v", r)
	}
	if r = e.run("", "--profile", "admin", "whoami"); r.code != 1 || !strings.Contains(r.stderr, "no profile") {
		t.Errorf("whoami after logout: %+v", r)
	}
}
