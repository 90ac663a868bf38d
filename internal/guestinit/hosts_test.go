package guestinit

import (
	"os"
	"path/filepath"
	"testing"
)

func TestEnsureHosts(t *testing.T) {
	dir := t.TempDir()
	old := hostsPath
	t.Cleanup(func() { hostsPath = old })
	hostsPath = filepath.Join(dir, "hosts")

	// No file (a debootstrap image): localhost and the hostname.
	if err := ensureHosts("sb-1"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(hostsPath)
	names := hostsNames(string(b))
	for _, n := range []string{"localhost", "sb-1"} {
		if !names[n] {
			t.Errorf("%q lacks %s", b, n)
		}
	}
	// Again, and with the name in a comment only: nothing doubles.
	if err := ensureHosts("sb-1"); err != nil {
		t.Fatal(err)
	}
	if b2, _ := os.ReadFile(hostsPath); string(b2) != string(b) {
		t.Errorf("second run changed %q to %q", b, b2)
	}
	// The image's own lines stay; a new hostname (a clone) is added.
	os.WriteFile(hostsPath, []byte("127.0.0.1 localhost\n10.0.0.9 db # sb-2\n"), 0o644)
	if err := ensureHosts("sb-2"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(hostsPath)
	if want := "127.0.0.1 localhost\n10.0.0.9 db # sb-2\n127.0.1.1\tsb-2\n"; string(b) != want {
		t.Errorf("got %q, want %q", b, want)
	}
}
