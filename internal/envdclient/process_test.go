package envdclient

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/envd"
	"git.omukk.dev/wrenn/sandbox/pkg/fault"
)

// startEnvd runs a real envd in local mode on loopback.
func startEnvd(t *testing.T) *Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := envd.New(envd.Config{Local: true, Log: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	c := New("http://"+ln.Addr().String(), "")
	t.Cleanup(func() {
		c.CloseIdle()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return c
}

// A command with stdin runs to its end: every kind of event arrives once
// translated, in order.
func TestProcessEvents(t *testing.T) {
	c := startEnvd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := c.Start(ctx, ProcessSpec{Cmd: "/bin/sh", Args: []string{"-c", `read x; echo "out:$x:$V:$(pwd)"; echo err >&2; exit 3`},
		Envs: map[string]string{"V": "v1"}, Cwd: t.TempDir(), Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var kinds []EventKind
	var stdout, stderr string
	var end Event
	for ev := range p.Events() {
		kinds = append(kinds, ev.Kind)
		switch ev.Kind {
		case Started:
			if ev.PID == 0 {
				t.Error("started without a pid")
			}
			if err := c.SendStdin(ctx, ev.PID, []byte("hi\n")); err != nil {
				t.Fatal(err)
			}
			if err := c.CloseStdin(ctx, ev.PID); err != nil {
				t.Fatal(err)
			}
		case Stdout:
			stdout += string(ev.Data)
		case Stderr:
			stderr += string(ev.Data)
		case Ended:
			end = ev
		}
	}
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	if kinds[0] != Started || kinds[len(kinds)-1] != Ended {
		t.Errorf("events %v: want Started first and Ended last", kinds)
	}
	if !strings.HasPrefix(stdout, "out:hi:v1:") || stderr != "err\n" || end.ExitCode != 3 {
		t.Errorf("stdout %q stderr %q end %+v", stdout, stderr, end)
	}
}

// A terminal: output, resize, a second follower by Attach, kill.
func TestTerminal(t *testing.T) {
	c := startEnvd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := c.Start(ctx, ProcessSpec{Cmd: "/bin/sh", Envs: map[string]string{"PS1": "$ "}, PTY: &TermSize{Cols: 80, Rows: 24}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	next, stop := iterPull(p)
	defer stop()
	started := next()
	if started.Kind != Started {
		t.Fatalf("first event %+v", started)
	}
	pid := started.PID
	if err := c.Resize(ctx, pid, TermSize{Cols: 100, Rows: 30}); err != nil {
		t.Fatal(err)
	}
	second, err := c.Attach(ctx, pid, false)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if err := c.SendTerminal(ctx, pid, []byte("stty size; echo hi-$((6*7))\n")); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for !strings.Contains(out.String(), "hi-42") || !strings.Contains(out.String(), "30 100") {
		ev := next()
		if ev.Kind != Output {
			t.Fatalf("event %+v before the output; so far %q (%v)", ev, out.String(), p.Err())
		}
		out.Write(ev.Data)
	}
	var seen strings.Builder
	for ev := range second.Events() {
		if ev.Kind == Output {
			seen.Write(ev.Data)
		}
		if strings.Contains(seen.String(), "hi-42") {
			break
		}
	}
	if !strings.Contains(seen.String(), "hi-42") {
		t.Errorf("the attached follower saw %q (%v)", seen.String(), second.Err())
	}
	if err := c.Kill(ctx, pid); err != nil {
		t.Fatal(err)
	}
	for {
		ev := next()
		if ev.Kind == Ended {
			break
		}
		if ev.Kind == 0 {
			t.Fatalf("no end after kill: %v", p.Err())
		}
	}
}

// iterPull reads a process's events one at a time; a zero Event means
// they stopped.
func iterPull(p *Process) (func() Event, func()) {
	ch := make(chan Event)
	done := make(chan struct{})
	go func() {
		defer close(ch)
		for ev := range p.Events() {
			select {
			case ch <- ev:
			case <-done:
				return
			}
		}
	}()
	return func() Event { return <-ch }, func() { close(done) }
}

func TestFilesAndProcesses(t *testing.T) {
	c := startEnvd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	e, err := c.MakeDir(ctx, filepath.Join(dir, "a", "b"), "")
	if err != nil || !e.IsDir || e.Name != "b" {
		t.Fatalf("make dir: %+v %v", e, err)
	}
	if err := c.WriteFile(ctx, filepath.Join(dir, "a", "f.txt"), "", strings.NewReader("hello"), 5); err != nil {
		t.Fatal(err)
	}
	entries, err := c.ListDir(ctx, dir, "", 2)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name)
		if e.Name == "f.txt" && (e.Size != 5 || e.IsDir || e.Modified.IsZero()) {
			t.Errorf("file entry %+v", e)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"a", "b", "f.txt"}) {
		t.Errorf("listed %v", names)
	}
	if err := c.Remove(ctx, filepath.Join(dir, "a"), ""); err != nil {
		t.Fatal(err)
	}
	// envd's errors keep their kind, over Connect and over /files.
	if _, err := c.ListDir(ctx, filepath.Join(dir, "a"), "", 1); fault.KindOf(err) != fault.NotFound {
		t.Errorf("list a removed directory: %v (%s)", err, fault.KindOf(err))
	}
	if _, _, err := c.ReadFile(ctx, filepath.Join(dir, "gone"), ""); !errors.Is(err, fault.NotFound) {
		t.Errorf("read a missing file: %v (%s)", err, fault.KindOf(err))
	}

	p, err := c.Start(ctx, ProcessSpec{Cmd: "sleep", Args: []string{"30"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	next, stop := iterPull(p)
	defer stop()
	pid := next().PID
	procs, err := c.Processes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(procs, func(pi ProcessInfo) bool {
		return pi.PID == pid && pi.Cmd == "sleep" && slices.Equal(pi.Args, []string{"30"})
	}) {
		t.Errorf("sleep %d not in %+v", pid, procs)
	}
	if err := c.Kill(ctx, pid); err != nil {
		t.Fatal(err)
	}
	if ev := next(); ev.Kind != Ended {
		t.Errorf("after kill: %+v", ev)
	}
}
