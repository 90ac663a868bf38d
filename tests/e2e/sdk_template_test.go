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
	sdkDir := requireSDK(t)
	requireBase(t)
	parent, err := os.MkdirTemp("", "wrenn-tpl-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o711); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(parent, "wrenn-dev")
	d := startDevStack(t, dataDir)
	cmd := exec.Command("node", "--test", "--test-concurrency=1", "template.test.mjs")
	cmd.Dir = sdkDir
	cmd.Env = append(os.Environ(), d.env...)
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("# fail 0")) || !bytes.Contains(out, []byte("# skipped 0")) {
		t.Fatalf("E2B Template SDK against wrenn dev: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	d.stop(t)
	assertNothingRunning(t, filepath.Join(dataDir, "agent"))
}
