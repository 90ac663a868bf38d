package guestimage

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// The code-interpreter image itself is built and booted by tests/e2e
// (TestCodeInterpreterSDK): it needs base and the Debian mirror.

func TestCodeInterpreterNeedsItsBinary(t *testing.T) {
	dir := t.TempDir()
	_, err := Build(context.Background(), Options{Name: CodeInterpreterKind, Dir: dir, Envd: "/bin/true", Init: "/bin/true", CodeInterpreter: filepath.Join(dir, "missing")})
	if err == nil || !strings.Contains(err.Error(), "code-interpreter binary") || !strings.Contains(err.Error(), "make build") {
		t.Fatalf("without the binary: %v", err)
	}
}
