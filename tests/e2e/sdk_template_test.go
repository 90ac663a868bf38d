package e2e

import (
	"archive/tar"
	"bytes"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"git.omukk.dev/wrenn/sandbox/internal/guestimage"
	"git.omukk.dev/wrenn/sandbox/internal/ociimage/ocitest"
)

// TestTemplateSDK runs E2B's Template SDK (tests/e2b/template.test.mjs)
// against `wrenn dev` under gVisor with the base image: the example build
// with a start command, a sandbox from it serving through the proxy, a
// cached rebuild, a failing step, bad specs and a cancelled build; then
// nothing is left running on the agent. The build sandboxes reach the
// Debian mirror (apt-get install jq).
func TestTemplateSDK(t *testing.T) {
	requireRunsc(t)
	requireBase(t)
	runTemplateSuite(t, "gvisor", "template.test.mjs")
}

// TestTemplateFromImage runs E2B's Template SDK building from OCI images
// (tests/e2b/template-image.test.mjs) against `wrenn dev` under gVisor
// and a registry this test starts on loopback: go-containerregistry's
// registry server, once as is and once behind HTTP basic auth, holding
// an image the test makes (static busybox and bash; the second layer
// deletes /etc/gone.txt with a whiteout and adds /etc/kept.txt). The
// password appears in nothing wrenn dev printed.
func TestTemplateFromImage(t *testing.T) {
	requireRunsc(t)
	const user, password = "robot", "pw-3f9c1e7a"
	reg := ocitest.Handler()
	open := httptest.NewServer(reg)
	defer open.Close()
	private := httptest.NewServer(ocitest.BasicAuth(reg, user, password))
	defer private.Close()
	img := busyboxImage(t)
	ref := ocitest.Push(t, open, "wrenn-test/tool:1", img, authn.Anonymous)
	privateRef := strings.TrimPrefix(private.URL, "http://") + "/wrenn-test/tool:1"
	t.Cleanup(func() {
		// The images the agent made; the shared images directory keeps
		// only what the harness built.
		made, _ := filepath.Glob(filepath.Join(imagesDir, guestimage.OCIImagePrefix+"*"))
		for _, dir := range made {
			_ = os.RemoveAll(dir)
		}
	})
	out := runTemplateSuite(t, "gvisor", "template-image.test.mjs",
		"WRENN_TEST_IMAGE="+ref, "WRENN_TEST_PRIVATE_IMAGE="+privateRef,
		"WRENN_TEST_REGISTRY_USER="+user, "WRENN_TEST_REGISTRY_PASSWORD="+password)
	if strings.Contains(out, password) {
		t.Errorf("wrenn dev printed the registry password")
	}
	if made, _ := filepath.Glob(filepath.Join(imagesDir, guestimage.OCIImagePrefix+"*")); len(made) != 1 {
		t.Errorf("guest images made from the one OCI image (by digest): %v, want one", made)
	}
}

// busyboxImage is a two-layer image: static busybox (with a link per
// applet) and bash, then a layer with a whiteout.
func busyboxImage(t *testing.T) v1.Image {
	t.Helper()
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("static busybox (Debian busybox-static, installed by scripts/setup): %v", err)
	}
	bash, err := os.ReadFile("/bin/bash-static")
	if err != nil {
		t.Skipf("static bash (Debian bash-static, installed by scripts/setup): %v", err)
	}
	list, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	first := []ocitest.Entry{
		{Name: "bin/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "bin/busybox", Type: tar.TypeReg, Mode: 0o755, Body: string(busybox)},
		{Name: "bin/bash", Type: tar.TypeReg, Mode: 0o755, Body: string(bash)},
		{Name: "etc/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "etc/passwd", Type: tar.TypeReg, Mode: 0o644, Body: "root:x:0:0:root:/root:/bin/bash\n"},
		{Name: "etc/group", Type: tar.TypeReg, Mode: 0o644, Body: "root:x:0:\n"},
		{Name: "etc/gone.txt", Type: tar.TypeReg, Mode: 0o644, Body: "deleted by layer 2\n"},
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet != "busybox" && applet != "bash" {
			first = append(first, ocitest.Entry{Name: "bin/" + applet, Type: tar.TypeSymlink, Link: "busybox"})
		}
	}
	second := ocitest.Layer(t,
		ocitest.Entry{Name: "etc/.wh.gone.txt", Type: tar.TypeReg},
		ocitest.Entry{Name: "etc/kept.txt", Type: tar.TypeReg, Mode: 0o644, Body: "kept by layer 2\n"},
	)
	return ocitest.Image(t, []string{"PATH=/bin"}, ocitest.Layer(t, first...), second)
}

// TestTemplateSDKQEMU builds a small template from the minimal image
// under QEMU (a start command served through the proxy, files, env, a
// cached rebuild): the same build path with the VM's snapshots.
func TestTemplateSDKQEMU(t *testing.T) {
	requireVMs(t)
	runTemplateSuite(t, "qemu", "template-qemu.test.mjs")
}

// runTemplateSuite runs a node test file against `wrenn dev` on runtime,
// then checks the agent left nothing running.
// extra is more environment for node; it returns what wrenn dev printed.
func runTemplateSuite(t *testing.T, runtime, file string, extra ...string) string {
	t.Helper()
	sdkDir := requireSDK(t)
	parent, err := os.MkdirTemp("", "wrenn-tpl-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o711); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(parent, "wrenn-dev")
	d := startDevStackRuntime(t, filepath.Join(binDir, "wrenn"), dataDir, runtime)
	cmd := exec.Command("node", "--test", "--test-concurrency=1", file)
	cmd.Dir = sdkDir
	cmd.Env = append(append(os.Environ(), d.env...), extra...)
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("# fail 0")) || !bytes.Contains(out, []byte("# skipped 0")) {
		t.Fatalf("E2B Template SDK against wrenn dev (%s): %v\n%s", runtime, err, out)
	}
	t.Logf("%s", out)
	d.stop(t)
	assertNothingRunning(t, filepath.Join(dataDir, "agent"))
	return d.output()
}
