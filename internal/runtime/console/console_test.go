package console

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConsoleIsCapped: a guest that writes without end to its console
// leaves at most two capped files, the newest output last, and the keeper
// ends when the writer does.
func TestConsoleIsCapped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	k, err := Start(path, 1000)
	if err != nil {
		t.Fatal(err)
	}
	line := bytes.Repeat([]byte("x"), 99)
	for i := range 1000 { // 100 KB
		line[0] = byte('a' + i%26)
		if _, err := k.W.Write(append(line, '\n')); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := k.W.Write([]byte("the end\n")); err != nil {
		t.Fatal(err)
	}
	k.Wait()
	cur, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	prev, err := os.ReadFile(path + ".1")
	if err != nil {
		t.Fatal(err)
	}
	if len(cur) > 1000 || len(prev) > 1000 {
		t.Fatalf("console files of %d and %d bytes, cap 1000", len(cur), len(prev))
	}
	if !strings.HasSuffix(string(cur), "the end\n") || !strings.Contains(string(cur), "console rotated") {
		t.Fatalf("console.log: %q", cur)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 2 {
		t.Fatalf("files: %v", entries)
	}
}
