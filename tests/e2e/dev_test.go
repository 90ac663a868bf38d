package e2e

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/waitfor"
)

// devStack is a `wrenn dev` process.
type devStack struct {
	cmd    *exec.Cmd
	out    *bytes.Buffer
	exited chan error
	env    []string // the E2B_* lines it printed
	tlsEnv []string // the lines for its proxy by host name over TLS
}

func startDevStack(t *testing.T, dataDir string) *devStack {
	t.Helper()
	return startDevStackFrom(t, filepath.Join(binDir, "wrenn"), dataDir)
}

// startDevStackFrom runs `wrenn dev` from the binary wrenn.
func startDevStackFrom(t *testing.T, wrenn, dataDir string) *devStack {
	t.Helper()
	return startDevStackRuntime(t, wrenn, dataDir, "gvisor")
}

// startDevStackRuntime runs `wrenn dev` with an agent on runtime.
func startDevStackRuntime(t *testing.T, wrenn, dataDir, runtime string) *devStack {
	t.Helper()
	d := &devStack{out: &bytes.Buffer{}, exited: make(chan error, 1)}
	d.cmd = exec.Command(wrenn, "dev", "--data-dir", dataDir, "--images-dir", imagesDir, "--runtime", runtime,
		"--listen", freeAddr(t), "--proxy-listen", freeAddr(t), "--agent-listen", freeAddr(t), "--verbose",
		"--proxy-tls-port", strings.TrimPrefix(freeAddr(t), "127.0.0.1:"))
	w := &syncWriter{w: d.out}
	d.cmd.Stdout, d.cmd.Stderr = w, w
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("wrenn dev output:\n%s", d.output())
		}
	})
	waitfor.True(t, 3*time.Minute, "wrenn dev to say it is running", func() bool {
		select {
		case err := <-d.exited:
			d.exited <- err
			t.Fatalf("wrenn dev exited: %v\n%s", err, d.output())
		default:
		}
		return strings.Contains(d.output(), "Wrenn is running")
	})
	sc := bufio.NewScanner(strings.NewReader(d.output()))
	byName := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Or by host name over TLS"):
			byName = true
		case byName && (strings.HasPrefix(line, "E2B_") || strings.HasPrefix(line, "NODE_EXTRA_CA_CERTS=")):
			d.tlsEnv = append(d.tlsEnv, line)
		case strings.HasPrefix(line, "E2B_"):
			d.env = append(d.env, line)
		}
	}
	return d
}

func (d *devStack) output() string {
	w := d.cmd.Stdout.(*syncWriter)
	w.mu.Lock()
	defer w.mu.Unlock()
	return d.out.String()
}

// stop sends Ctrl-C and waits for everything to stop.
func (d *devStack) stop(t *testing.T) {
	select {
	case err := <-d.exited:
		d.exited <- err
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-d.exited:
		d.exited <- err
		if err != nil {
			t.Errorf("wrenn dev exited with %v after Ctrl-C", err)
		}
	case <-time.After(90 * time.Second):
		_ = d.cmd.Process.Kill()
		t.Errorf("wrenn dev did not stop within 90 s of Ctrl-C")
	}
}

// TestDevStackWithE2BSDK starts `wrenn dev` as a user would and runs the
// official E2B SDK against it configured by the environment variables it
// prints; Ctrl-C must leave nothing behind, and a second run reuses the
// data (same admin and key).
func TestDevStackWithE2BSDK(t *testing.T) {
	requireVMs(t)
	requireRunsc(t)
	sdkDir := requireSDK(t)
	// PostgreSQL runs as its own user, which must reach the data directory.
	parent, err := os.MkdirTemp("", "wrenn-dev-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o711); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(parent, "wrenn-dev")
	d := startDevStack(t, dataDir)
	if len(d.env) != 3 {
		t.Fatalf("printed E2B variables: %q", d.env)
	}
	cmd := exec.Command("node", "--test", "--test-concurrency=1", "platform.test.mjs")
	cmd.Dir = sdkDir
	cmd.Env = append(os.Environ(), d.env...)
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("# fail 0")) || !bytes.Contains(out, []byte("# skipped 0")) {
		t.Fatalf("E2B SDK against wrenn dev: %v\n%s", err, out)
	}
	// The same stack by host name over TLS, as e2b-tls.env configures it
	// (the file and the printed lines agree).
	if len(d.tlsEnv) != 4 || readFile(t, filepath.Join(dataDir, "e2b-tls.env")) != strings.Join(d.tlsEnv, "\n")+"\n" {
		t.Fatalf("printed TLS variables: %q", d.tlsEnv)
	}
	cmd = exec.Command("node", "--test", "hostname.test.mjs")
	cmd.Dir = sdkDir
	cmd.Env = append(withoutE2B(os.Environ()), d.tlsEnv...)
	out, err = cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("# fail 0")) || !bytes.Contains(out, []byte("# skipped 0")) {
		t.Fatalf("E2B SDK against wrenn dev by host name over TLS: %v\n%s", err, out)
	}
	// Sandboxes the suite left are kept, paused, for the next run; nothing
	// of them runs.
	d.stop(t)
	assertNothingRunning(t, filepath.Join(dataDir, "agent"))
	if out, _ := exec.Command("pgrep", "-f", dataDir).Output(); len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("processes left: %s", out)
	}

	again := startDevStack(t, dataDir)
	if len(again.env) != 3 || again.env[2] != d.env[2] || !strings.HasPrefix(d.env[2], "E2B_API_KEY=e2b_") {
		t.Errorf("the second run has another key:\n%q\n%q", again.env, d.env)
	}
	again.stop(t)
	assertNothingRunning(t, filepath.Join(dataDir, "agent"))
}

// withoutE2B is env without the E2B_* variables a developer's shell may
// carry.
func withoutE2B(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "E2B_") && !strings.HasPrefix(kv, "NODE_EXTRA_CA_CERTS=") {
			out = append(out, kv)
		}
	}
	return out
}
