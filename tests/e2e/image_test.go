package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/internal/guestimage"

	pb "git.omukk.dev/wrenn/sandbox/proto/envd/process"
	"git.omukk.dev/wrenn/sandbox/proto/envd/process/processconnect"
)

// runIn runs a shell command in the guest through envd and returns stdout.
func runIn(t *testing.T, g *guest, script string) string {
	t.Helper()
	c := processconnect.NewProcessClient(g.client, g.baseURL)
	f := false
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := c.Start(ctx, connect.NewRequest(&pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "/bin/bash", Args: []string{"-l", "-c", script}}, Stdin: &f}))
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	var end *pb.ProcessEvent_EndEvent
	for s.Receive() {
		ev := s.Msg().GetEvent()
		out.Write(ev.GetData().GetStdout())
		errOut.Write(ev.GetData().GetStderr())
		if e := ev.GetEnd(); e != nil {
			end = e
		}
	}
	if err := s.Err(); err != nil {
		t.Fatalf("run %q: %v", script, err)
	}
	if end == nil || end.ExitCode != 0 {
		t.Fatalf("run %q: end %v, stderr %q", script, end, errOut.String())
	}
	return out.String()
}

func TestMinimalImageBoots(t *testing.T) {
	requireVMs(t)
	g := boot(t, "minimal")

	t.Run("health", func(t *testing.T) {
		resp, err := g.client.Get(g.baseURL + "/health")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("health: %d", resp.StatusCode)
		}
	})

	t.Run("command", func(t *testing.T) {
		out := runIn(t, g, "echo hello from $(hostname); id -un; ip addr show eth0 | grep -o 'inet [0-9./]*'; cat /proc/1/comm")
		want := "hello from e2e-guest\nroot\ninet " + guestIP + "/30\ninit\n"
		if out != want {
			t.Fatalf("output %q, want %q", out, want)
		}
	})

	t.Run("mounts", func(t *testing.T) {
		out := runIn(t, g, "awk '{print $2, $3}' /proc/mounts | sort")
		for _, m := range []string{"/ ext4", "/proc proc", "/sys sysfs", "/dev devtmpfs", "/dev/pts devpts", "/sys/fs/cgroup cgroup2", "/tmp tmpfs", "/run tmpfs"} {
			if !strings.Contains(out, m+"\n") {
				t.Errorf("no %q mount in\n%s", m, out)
			}
		}
	})

	t.Run("file round trip", func(t *testing.T) {
		payload := bytes.Repeat([]byte("wrenn-guest-file\n"), 4096)
		u := g.baseURL + "/files?" + url.Values{"path": {"/home/user/data/test.txt"}, "username": {"user"}}.Encode()
		resp, err := g.client.Post(u, "application/octet-stream", bytes.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("upload: %d %s", resp.StatusCode, body)
		}
		resp, err = g.client.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(got, payload) {
			t.Fatalf("read back %d bytes, want %d", len(got), len(payload))
		}
		if owner := runIn(t, g, "stat -c %U:%G /home/user/data/test.txt /home/user/data"); owner != "user:user\nuser:user\n" {
			t.Fatalf("owners %q", owner)
		}
	})

	t.Run("envd is restarted when it dies", func(t *testing.T) {
		before := strings.TrimSpace(runIn(t, g, "pidof envd"))
		if before == "" {
			t.Fatal("no envd pid")
		}
		// envd dies mid-request: the stream breaks; that is the point.
		c := processconnect.NewProcessClient(g.client, g.baseURL)
		f := false
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s, err := c.Start(ctx, connect.NewRequest(&pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "/bin/kill", Args: []string{"-9", before}}, Stdin: &f}))
		if err == nil {
			for s.Receive() {
			}
		}
		cancel()
		g.client.CloseIdleConnections()
		// The stream broke because envd died: what answers now is the new one.
		g.waitHealthy(t, 30*time.Second)
		after := strings.TrimSpace(runIn(t, g, "pidof envd"))
		if after == before || after == "" {
			t.Fatalf("envd pid %q after kill, was %q", after, before)
		}
	})

	t.Run("clock follows /init", func(t *testing.T) {
		runIn(t, g, "date -s @1000000000 >/dev/null")
		body := fmt.Sprintf(`{"timestamp":%q}`, time.Now().UTC().Format(time.RFC3339Nano))
		resp, err := g.client.Post(g.baseURL+"/init", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("init: %d", resp.StatusCode)
		}
		before := time.Now()
		out := strings.TrimSpace(runIn(t, g, "date +%s")) // busybox date: whole seconds
		after := time.Now()
		guestSec, err := strconv.ParseInt(out, 10, 64)
		if err != nil {
			t.Fatalf("guest date %q: %v", out, err)
		}
		guest := time.Unix(guestSec, 0)
		if guest.Before(before.Truncate(time.Second).Add(-2*time.Second)) || guest.After(after.Add(2*time.Second)) {
			t.Fatalf("guest clock %s, host %s..%s: more than 2s apart", guest, before, after)
		}
	})

	t.Run("clean shutdown on request", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := g.vm.QMP.Execute(ctx, "system_powerdown", nil); err != nil {
			t.Fatal(err)
		}
		select {
		case <-g.vm.Done():
			if err := g.vm.Err(); err != nil {
				t.Fatalf("qemu exited with %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("the guest did not power off within 60s of the power button")
		}
		console, _ := os.ReadFile(g.vm.VM.ConsoleLog)
		if !bytes.Contains(console, []byte("reboot: Power down")) {
			t.Fatalf("no clean power-down on the console:\n%s", console)
		}
	})
}

func TestBaseImage(t *testing.T) {
	requireBase(t)
	g := boot(t, "base")
	m, err := guestimage.Verify(filepath.Join(imagesDir, "base"))
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"defaultUser":%q,"timestamp":%q}`, m.DefaultUser, time.Now().UTC().Format(time.RFC3339Nano))
	resp, err := g.client.Post(g.baseURL+"/init", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	out := runIn(t, g, "whoami; sudo -n whoami; python3 -c 'print(6*7)'; git --version | cut -d' ' -f1-2; curl --version | head -c 4; echo; command -v socat pip3 ps; ls /usr/sbin/chronyd")
	want := "user\nroot\n42\ngit version\ncurl\n/usr/bin/socat\n/usr/bin/pip3\n/usr/bin/ps\n/usr/sbin/chronyd\n"
	if out != want {
		t.Fatalf("base image tools:\n%s\nwant:\n%s", out, want)
	}
}
