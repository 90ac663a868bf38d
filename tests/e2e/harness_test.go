// Package e2e holds the end-to-end tests that boot real guests. They share
// the images built once in TestMain, and run as root on a host with QEMU and
// a kernel (scripts/setup installs both); elsewhere they skip and say why.
package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/cptest"
	"git.omukk.dev/wrenn/sandbox/internal/guestimage"
	"git.omukk.dev/wrenn/sandbox/internal/network"
	"git.omukk.dev/wrenn/sandbox/internal/runtime/qemu"
)

var (
	skipReason string
	imagesDir  string
	binDir     string
	accel      string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if reason := prerequisites(); reason != "" {
		skipReason = reason
		return m.Run()
	}
	var err error
	binDir, err = os.MkdirTemp("", "wrenn-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(binDir)
	imagesDir, err = os.MkdirTemp("", "wrenn-e2e-images-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(imagesDir)
	defer stopPostgres()
	for _, name := range []string{"envd", "wrenn-init", "host-agent", "control-plane", "wrenn", "code-interpreter"} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(binDir, name), "git.omukk.dev/wrenn/sandbox/cmd/"+name)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", name, err, out)
			return 1
		}
	}
	if _, err := guestimage.Build(context.Background(), guestimage.Options{Name: "minimal", Dir: imagesDir, Envd: filepath.Join(binDir, "envd"), Init: filepath.Join(binDir, "wrenn-init"), Progress: os.Stderr}); err != nil {
		fmt.Fprintln(os.Stderr, "build minimal image:", err)
		return 1
	}
	var why string
	accel, why, err = qemu.ChooseAccel(os.Getenv("WRENN_ACCEL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: accelerator %s (%s)\n", accel, why)
	return m.Run()
}

func prerequisites() string {
	if os.Geteuid() != 0 {
		return "end-to-end VM tests need root (network namespaces, taps)"
	}
	if _, err := exec.LookPath(qemu.Binary); err != nil {
		return qemu.Binary + " is not installed (scripts/setup installs qemu-system-x86)"
	}
	if _, err := guestimage.FindKernel(""); err != nil {
		return err.Error()
	}
	return ""
}

var (
	baseOnce sync.Once
	baseErr  error
)

// requireBase builds the base image once, on first use (debootstrap takes
// a minute or two and needs the Debian mirror); -short skips it.
func requireBase(t *testing.T) {
	t.Helper()
	requireVMs(t)
	if testing.Short() {
		t.Skip("-short: the base image takes minutes to build")
	}
	baseOnce.Do(func() {
		_, baseErr = guestimage.Build(context.Background(), guestimage.Options{Name: "base", Dir: imagesDir, Envd: filepath.Join(binDir, "envd"), Init: filepath.Join(binDir, "wrenn-init"), Progress: os.Stderr})
	})
	if baseErr != nil {
		t.Fatalf("build base image: %v", baseErr)
	}
}

var (
	pgOnce   sync.Once
	pgServer *cptest.Postgres
	pgErr    error
)

// requirePostgres starts the PostgreSQL the control plane tests share, once.
func requirePostgres(t *testing.T) *cptest.Postgres {
	t.Helper()
	pgOnce.Do(func() { pgServer, pgErr = cptest.StartPostgres() })
	if pgErr != nil {
		t.Fatalf("start PostgreSQL: %v", pgErr)
	}
	return pgServer
}

func stopPostgres() {
	if pgServer != nil {
		pgServer.Stop()
	}
}

func requireVMs(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// testNet is a network namespace with tap0 at 169.254.0.22/30, the guest's
// side being 169.254.0.21, as in every sandbox slot.
type testNet struct {
	name string
}

const (
	guestIP = "169.254.0.21"
	tapIP   = "169.254.0.22"
)

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	n := &testNet{name: "wrenn-e2e-" + hex.EncodeToString(b)}
	if err := network.CreateNamespace(n.name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := network.DeleteNamespace(n.name); err != nil {
			t.Error(err)
		}
		if network.NamespaceExists(n.name) {
			t.Errorf("namespace %s left behind", n.name)
		}
	})
	if err := network.AddTap(n.name, "tap0", netip.MustParsePrefix(tapIP+"/30")); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *testNet) httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: network.Dialer(n.name), MaxIdleConnsPerHost: 4}}
}

// guest is one booted VM.
type guest struct {
	vm      *qemu.Instance
	client  *http.Client
	baseURL string
}

// boot starts image in its own namespace with a private copy of its disk,
// and waits for envd to answer. Cleanup stops it.
func boot(t *testing.T, image string) *guest {
	t.Helper()
	img := filepath.Join(imagesDir, image)
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.ext4")
	if out, err := exec.Command("cp", "--reflink=auto", "--sparse=always", filepath.Join(img, guestimage.FileRootfs), disk).CombinedOutput(); err != nil {
		t.Fatalf("copy disk: %v %s", err, out)
	}
	n := newTestNet(t)
	tap, err := network.OpenTap(n.name, "tap0")
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close() // QEMU holds its own copy
	vm, err := qemu.Start(context.Background(), &qemu.VM{
		Accel: accel, VCPUs: 1, MemoryMiB: 256,
		Kernel: filepath.Join(img, guestimage.FileKernel), Initrd: filepath.Join(img, guestimage.FileInitramfs),
		Disk: disk, TapFile: tap, QMPSocket: filepath.Join(dir, "qmp.sock"), ConsoleLog: filepath.Join(dir, "console.log"),
		Cmdline: fmt.Sprintf("wrenn.ip=%s/30 wrenn.gw=%s wrenn.hostname=e2e-guest", guestIP, tapIP),
	})
	if err != nil {
		t.Fatal(err)
	}
	g := &guest{vm: vm, client: n.httpClient(), baseURL: "http://" + guestIP + ":49983"}
	t.Cleanup(func() {
		g.client.CloseIdleConnections()
		vm.Kill()
		if t.Failed() {
			b, _ := os.ReadFile(vm.VM.ConsoleLog)
			t.Logf("qemu stderr: %s\nconsole:\n%s", vm.Stderr(), b)
		}
	})
	if err := g.waitHealthy(120 * time.Second); err != nil {
		t.Fatal(err)
	}
	return g
}

func (g *guest) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-g.vm.Done():
			return fmt.Errorf("VM exited before envd answered: %v", g.vm.Err())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", g.baseURL+"/health", nil)
		resp, err := g.client.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("envd did not answer /health within %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
