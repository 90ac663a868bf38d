package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDevStackExamples starts `wrenn dev` from a bin/ directory beside a
// tests/e2b with the SDK installed (the repository's layout, as
// scripts/dev runs it) and runs every example it prints under "Try it"
// with bash, pasted as is, from an unrelated directory and a fresh HOME.
func TestDevStackExamples(t *testing.T) {
	requireVMs(t)
	if _, err := exec.LookPath("runsc"); err != nil {
		t.Skip("runsc is not installed (scripts/setup builds it)")
	}
	sdkDir, _ := filepath.Abs("../e2b")
	if _, err := os.Stat(filepath.Join(sdkDir, "node_modules", "e2b")); err != nil {
		t.Skip("the e2b npm package is not installed (scripts/setup installs it)")
	}
	parent, err := os.MkdirTemp("", "wrenn-dev-examples-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o711); err != nil {
		t.Fatal(err)
	}
	repo := filepath.Join(parent, "repo")
	for _, d := range []string{"bin", "tests"} {
		if err := os.MkdirAll(filepath.Join(repo, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(sdkDir, filepath.Join(repo, "tests", "e2b")); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(binDir, "wrenn"), filepath.Join(repo, "bin", "wrenn"))
	for _, b := range []string{"envd", "wrenn-init"} {
		if err := os.Symlink(filepath.Join(binDir, b), filepath.Join(repo, "bin", b)); err != nil {
			t.Fatal(err)
		}
	}

	d := startDevStackFrom(t, filepath.Join(repo, "bin", "wrenn"), filepath.Join(parent, "data"))
	var examples []string
	sc := bufio.NewScanner(strings.NewReader(d.output()[strings.Index(d.output(), "Try it:"):]))
	sc.Scan()
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "  ") {
			examples = append(examples, strings.TrimSpace(line))
		}
	}
	if len(examples) != 5 {
		t.Fatalf("examples: %q", examples)
	}
	home, elsewhere := t.TempDir(), t.TempDir()
	env := []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}
	var created struct{ ID string }
	for i, ex := range examples {
		cmd := exec.Command("bash", "-c", ex)
		cmd.Dir, cmd.Env = elsewhere, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("example %d failed: %v\n%s\n%s", i+1, err, ex, out)
			continue
		}
		switch {
		case strings.HasPrefix(ex, "curl"):
			if json.Unmarshal(out, &created) != nil || !strings.HasPrefix(created.ID, "sb-") {
				t.Errorf("curl example printed %s", out)
			}
		case strings.Contains(ex, " login "):
			if !bytes.Contains(out, []byte("Logged in")) {
				t.Errorf("login example printed %s", out)
			}
		case strings.Contains(ex, "getHost"):
			if !regexp.MustCompile(`^https://49983-sb-[0-9a-z]+\.wrenn\.localhost:[0-9]+/health 20[04]\n$`).Match(out) {
				t.Errorf("the host name example printed %q", out)
			}
		default:
			if !bytes.Contains(out, []byte("Linux")) {
				t.Errorf("example %d printed no uname:\n%s\n%s", i+1, ex, out)
			}
		}
	}
	// The sandbox the curl example made is the only one left running.
	kill := exec.Command(filepath.Join(repo, "bin", "wrenn"), "sandbox", "kill", created.ID)
	kill.Env = env
	if out, err := kill.CombinedOutput(); err != nil {
		t.Errorf("kill the curl example's sandbox: %v %s", err, out)
	}
	list := exec.Command(filepath.Join(repo, "bin", "wrenn"), "sandbox", "list", "--state", "running", "-o", "json")
	list.Env = env
	if out, err := list.Output(); err != nil || strings.TrimSpace(string(out)) != "[]" {
		t.Errorf("sandboxes the examples left running: %s %v", out, err)
	}
	d.stop(t)
	assertNothingRunning(t, filepath.Join(parent, "data", "agent"))
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
