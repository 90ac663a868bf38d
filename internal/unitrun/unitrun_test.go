package unitrun

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// The test binary doubles as a service when UNITRUN_HELPER says so.
func TestMain(m *testing.M) {
	switch os.Getenv("UNITRUN_HELPER") {
	case "notify":
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		fmt.Printf("env %s umask %03o\n", os.Getenv("GREETING"), syscall.Umask(0))
		if _, err := daemon.SdNotify(false, "READY=1\nSTATUS=up"); err != nil {
			fmt.Println("notify:", err)
		}
		<-sig
		fmt.Println("stopping on SIGTERM")
		os.Exit(0)
	case "child-notify":
		// READY=1 from a child: NotifyAccess=main must ignore it.
		self, _ := os.Executable()
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), "UNITRUN_HELPER=notify-once")
		_ = cmd.Run()
		time.Sleep(time.Minute)
		os.Exit(0)
	case "notify-once":
		_, _ = daemon.SdNotify(false, "READY=1")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) { b.mu.Lock(); defer b.mu.Unlock(); return b.b.Write(p) }
func (b *buffer) String() string              { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

func writeUnit(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNotifyReadyAndStop(t *testing.T) {
	self, _ := os.Executable()
	dir := t.TempDir()
	envFile := writeUnit(t, dir, "env", "# comment\nGREETING=\"from the file\"\n")
	path := writeUnit(t, dir, "helper.service", `[Service]
Type=notify
ExecStart=`+self+`
Environment=UNITRUN_HELPER=notify
EnvironmentFile=-/nonexistent
EnvironmentFile=`+envFile+`
UMask=0027
KillMode=mixed
TimeoutStartSec=30s
TimeoutStopSec=30s
`)
	// A drop-in overrides the environment file's greeting.
	if err := os.MkdirAll(filepath.Join(dir, "helper.service.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeUnit(t, filepath.Join(dir, "helper.service.d"), "10-greeting.conf", "[Service]\nEnvironment=GREETING=from-the-drop-in\n")
	u, err := Load(path, dir)
	if err != nil {
		t.Fatal(err)
	}
	var out buffer
	p, err := u.Start(Options{Output: &out})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if n := p.Notifications(); len(n) < 2 || n[0] != "READY=1" || n[1] != "STATUS=up" {
		t.Errorf("notifications %q", n)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, out.String())
	}
	if got := out.String(); !strings.Contains(got, "env from-the-drop-in umask 027") || !strings.Contains(got, "stopping on SIGTERM") {
		t.Errorf("output:\n%s", got)
	}
}

func TestReadyFromAChildIsIgnored(t *testing.T) {
	self, _ := os.Executable()
	dir := t.TempDir()
	path := writeUnit(t, dir, "child.service", "[Service]\nType=notify\nExecStart="+self+"\nEnvironment=UNITRUN_HELPER=child-notify\nTimeoutStartSec=3s\nTimeoutStopSec=5s\n")
	u, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := u.Start(Options{Output: os.Stderr})
	if err == nil {
		p.Stop()
	}
	if err == nil || !strings.Contains(err.Error(), "no READY=1") {
		t.Fatalf("READY=1 from a child was accepted: %v", err)
	}
}

func TestUnknownDirectiveIsRefused(t *testing.T) {
	path := writeUnit(t, t.TempDir(), "x.service", "[Service]\nExecStart=/bin/true\nPrivateNetwork=yes\n")
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "PrivateNetwork") {
		t.Fatalf("unknown directive: %v", err)
	}
}
