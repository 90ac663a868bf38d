package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
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

// TestTemplateSDKQEMU builds a small template from the minimal image
// under QEMU (a start command served through the proxy, files, env, a
// cached rebuild): the same build path with the VM's snapshots.
func TestTemplateSDKQEMU(t *testing.T) {
	requireVMs(t)
	runTemplateSuite(t, "qemu", "template-qemu.test.mjs")
}

// runTemplateSuite runs a node test file against `wrenn dev` on runtime,
// then checks the agent left nothing running.
func runTemplateSuite(t *testing.T, runtime, file string) {
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
	cmd.Env = append(os.Environ(), d.env...)
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("# fail 0")) || !bytes.Contains(out, []byte("# skipped 0")) {
		t.Fatalf("E2B Template SDK against wrenn dev (%s): %v\n%s", runtime, err, out)
	}
	t.Logf("%s", out)
	d.stop(t)
	assertNothingRunning(t, filepath.Join(dataDir, "agent"))
}
