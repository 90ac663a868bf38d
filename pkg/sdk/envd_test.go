package sdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// localSandbox starts a real envd (cmd/envd --local, on loopback, as this
// user) and returns a Sandbox that reaches it as it would reach one
// through the proxy: commands, files and terminals are tested here
// without VMs; tests/e2e does the same through the whole platform.
func localSandbox(t *testing.T) *Sandbox {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: builds and starts envd")
	}
	bin := filepath.Join(t.TempDir(), "envd")
	build := exec.Command("go", "build", "-o", bin, "git.omukk.dev/wrenn/sandbox/cmd/envd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build envd: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "--local", "--port", fmt.Sprint(port))
	var log bytes.Buffer
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("envd log:\n%s", log.String())
		}
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get(base + "/health")
		if err == nil {
			res.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("envd did not start: %v\n%s", err, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, err := New(WithoutEnv(), WithAPIURL("http://unused.invalid"), WithSandboxURL(base))
	if err != nil {
		t.Fatal(err)
	}
	sb, err := c.sandbox(SandboxInfo{ID: "sb-local"}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return sb
}

func TestLocalEnvd(t *testing.T) {
	sb := localSandbox(t)
	ctx := context.Background()
	dir := t.TempDir()

	res, err := sb.Commands.Run(ctx, "echo out; echo err >&2; exit 4")
	var exit *ExitError
	if !errors.As(err, &exit) || res.ExitCode != 4 || res.Stdout != "out\n" || res.Stderr != "err\n" {
		t.Fatalf("run: %+v %v", res, err)
	}
	h, err := sb.Commands.Start(ctx, "cat", WithStdin())
	if err != nil {
		t.Fatal(err)
	}
	_ = h.SendStdin(ctx, []byte("in\n"))
	_ = h.CloseStdin(ctx)
	if res, err := h.Wait(ctx); err != nil || res.Stdout != "in\n" {
		t.Fatalf("stdin: %+v %v", res, err)
	}

	// A cancelled Run kills its command.
	marker := filepath.Join(dir, "marker")
	cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = sb.Commands.Run(cctx, "sleep 5; touch "+marker)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled run: %v", err)
	}
	ps, _ := sb.Commands.List(ctx)
	for _, p := range ps {
		if strings.Contains(strings.Join(p.Args, " "), marker) {
			t.Errorf("the cancelled command still runs: %+v", p)
		}
	}

	// Files, streamed.
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<18)
	w := sb.Files.Create(ctx, filepath.Join(dir, "f"))
	if _, err := io.Copy(w, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := sb.Files.ReadFile(ctx, filepath.Join(dir, "f"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes: %v", len(got), err)
	}
	// A cancelled write leaves nothing.
	cctx, cancel = context.WithCancel(ctx)
	pr, pw := io.Pipe()
	go func() {
		pw.Write(make([]byte, 1<<20))
		cancel()
	}()
	if _, err := sb.Files.Write(cctx, filepath.Join(dir, "g"), pr); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled write: %v", err)
	}
	pw.Close()
	// envd removes its temporary file once it sees the request end.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		entries, _ := os.ReadDir(dir)
		if len(entries) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("left after a cancelled write: %v", entries)
			break
		}
	}

	// A terminal.
	term, err := sb.PTY.Create(ctx, PTYOptions{Cols: 90, Rows: 30, Cmd: "/bin/sh"})
	if err != nil {
		t.Fatal(err)
	}
	_ = term.SendInput(ctx, []byte("stty size; exit 2\n"))
	out, err := io.ReadAll(term)
	if err != nil || !bytes.Contains(out, []byte("30 90")) {
		t.Errorf("terminal: %q %v", out, err)
	}
	if res, err := term.Wait(ctx); res.ExitCode != 2 || !errors.As(err, &exit) {
		t.Errorf("terminal exit: %+v %v", res, err)
	}

	// Watch.
	wt, err := sb.Files.Watch(ctx, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "h"), nil, 0o644)
	select {
	case ev := <-wt.Events():
		if ev.Name != "h" || ev.Type != EventCreate {
			t.Errorf("event: %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Error("no event")
	}
	wt.Close()
}
