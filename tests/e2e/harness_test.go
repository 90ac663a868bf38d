// Package e2e holds the end-to-end tests that boot real guests. They share
// the images built once in TestMain, and run as root on a host with QEMU,
// a kernel, runsc, node and the E2B SDK (scripts/setup installs them all);
// elsewhere they skip and say why, unless WRENN_TEST_REQUIRE=1 (set by
// scripts/test, as in CI) makes every such skip a failure. After the
// tests, TestMain checks that none of them left a process or namespace.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/cptest"
	"git.omukk.dev/wrenn/sandbox/internal/guestimage"
	"git.omukk.dev/wrenn/sandbox/internal/guestinit"
	"git.omukk.dev/wrenn/sandbox/internal/network"
	"git.omukk.dev/wrenn/sandbox/internal/runtime/qemu"
	"git.omukk.dev/wrenn/sandbox/internal/waitfor"
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
	code := runAll(m)
	if left := leftBehind(); left != "" {
		fmt.Fprintf(os.Stderr, "e2e: the tests left behind %s\n", left)
		code = 1
	}
	return code
}

// leftBehind names the processes and namespaces of the tests' own (the
// binaries they built, the namespaces they made) that remain.
func leftBehind() string {
	var left []string
	if out, _ := exec.Command("pgrep", "-af", "wrenn-e2e").Output(); len(bytes.TrimSpace(out)) > 0 {
		left = append(left, "processes:\n"+string(out))
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); bytes.Contains(out, []byte("wrenn-e2e-")) {
		left = append(left, "namespaces:\n"+string(out))
	}
	return strings.Join(left, "\n")
}

// runAll builds the binaries and the minimal image, then runs the tests.
func runAll(m *testing.M) int {
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
		unavailable(t, "-short: the base image takes minutes to build")
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

// requireEnv set to 1 makes a missing prerequisite fail the tests that
// need it instead of skipping them.
const requireEnv = "WRENN_TEST_REQUIRE"

// unavailable skips t for want of what reason names, or fails it when the
// suite is required.
func unavailable(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv(requireEnv) == "1" {
		t.Fatalf("%s; %s=1 requires this test to run", reason, requireEnv)
	}
	t.Skip(reason)
}

func requireVMs(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		unavailable(t, skipReason)
	}
}

func requireRunsc(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("runsc"); err != nil {
		unavailable(t, "runsc is not installed (scripts/setup builds it)")
	}
}

// requireSDK returns the directory of the E2B SDK tests (tests/e2b),
// whose suites run with node.
func requireSDK(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		unavailable(t, "node is not installed (scripts/setup installs it)")
	}
	sdkDir, _ := filepath.Abs("../e2b")
	if _, err := os.Stat(filepath.Join(sdkDir, "node_modules", "e2b")); err != nil {
		unavailable(t, "the e2b npm package is not installed (scripts/setup installs it)")
	}
	return sdkDir
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
		Cmdline: guestinit.Cmdline(&guestinit.Params{Addr: netip.MustParsePrefix(guestIP + "/30"), Gateway: netip.MustParseAddr(tapIP), Hostname: "e2e-guest"}),
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
	g.waitHealthy(t, 120*time.Second)
	return g
}

func (g *guest) waitHealthy(t *testing.T, timeout time.Duration) {
	t.Helper()
	waitfor.NoError(t, timeout, "envd to answer /health", func() error {
		select {
		case <-g.vm.Done():
			t.Fatalf("VM exited before envd answered: %v", g.vm.Err())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", g.baseURL+"/health", nil)
		resp, err := g.client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("/health: %s", resp.Status)
		}
		return nil
	})
}
