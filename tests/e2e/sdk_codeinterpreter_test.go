package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/guestimage"
)

var (
	codeInterpreterOnce sync.Once
	codeInterpreterErr  error
)

// requireCodeInterpreter builds the code-interpreter image once (base
// first, shared with the base image's tests; then the kernels and data
// packages from the Debian mirror). This file sorts after dev_test.go, so
// the platform suite there still runs on the minimal image.
func requireCodeInterpreter(t *testing.T) {
	t.Helper()
	requireBase(t)
	codeInterpreterOnce.Do(func() {
		start := time.Now()
		_, codeInterpreterErr = guestimage.Build(context.Background(), guestimage.Options{Name: guestimage.CodeInterpreterKind, Dir: imagesDir,
			Envd: filepath.Join(binDir, "envd"), Init: filepath.Join(binDir, "wrenn-init"), CodeInterpreter: filepath.Join(binDir, "code-interpreter"), Progress: os.Stderr})
		t.Logf("code-interpreter image: %s", time.Since(start).Round(time.Second))
	})
	if codeInterpreterErr != nil {
		t.Fatalf("build the code-interpreter image: %v", codeInterpreterErr)
	}
}

// TestCodeInterpreterSDK runs E2B's code-interpreter SDK (runCode,
// contexts, rich results, interrupts, a second language, pause and
// resume) against `wrenn dev` with the code-interpreter image, configured
// only by the variables it prints.
func TestCodeInterpreterSDK(t *testing.T) {
	requireRunsc(t)
	sdkDir := requireSDK(t)
	if _, err := os.Stat(filepath.Join(sdkDir, "node_modules", "@e2b", "code-interpreter")); err != nil {
		unavailable(t, "@e2b/code-interpreter is not installed (scripts/setup installs it)")
	}
	requireCodeInterpreter(t)
	parent, err := os.MkdirTemp("", "wrenn-ci-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o711); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(parent, "wrenn-dev")
	d := startDevStack(t, dataDir)
	cmd := exec.Command("node", "--test", "--test-concurrency=1", "code-interpreter.test.mjs")
	cmd.Dir = sdkDir
	cmd.Env = append(os.Environ(), d.env...)
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("# fail 0")) || !bytes.Contains(out, []byte("# skipped 0")) {
		t.Fatalf("@e2b/code-interpreter against wrenn dev: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	d.stop(t)
	assertNothingRunning(t, filepath.Join(dataDir, "agent"))
}
