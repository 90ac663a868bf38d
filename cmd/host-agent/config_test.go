package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// check-config on the real binary: the file's keys are the flags, flags
// and environment variables take precedence, and a bad value names the
// key and the reason.
func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "host-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	file := filepath.Join(dir, "agent.toml")
	run := func(body string, env []string, args ...string) (string, error) {
		t.Helper()
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, append(append([]string{"check-config"}, args...), file)...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	good := "control_plane = \"https://cp.example.com\"\nstate_dir = \"/var/lib/wrenn\"\nruntime = \"gvisor\"\nready_timeout = \"2m\"\nmax_sandboxes = 10\ndebug = true\n"
	out, err := run(good, nil)
	if err != nil || !strings.Contains(out, file+": ok") {
		t.Fatalf("good file: %v\n%s", err, out)
	}
	out, err = run(good, []string{"WRENN_CONTROL_PLANE=https://other.example.com"}, "--runtime", "qemu")
	if err != nil || !strings.Contains(out, "control_plane set by WRENN_CONTROL_PLANE") || !strings.Contains(out, "runtime set by --runtime") {
		t.Fatalf("precedence: %v\n%s", err, out)
	}
	for body, want := range map[string]string{
		good + "ready_timeout_s = 3\n":     `key "ready_timeout_s": unknown key`,
		"ready_timeout = \"soon\"\n":       `key "ready_timeout": parse error`,
		"max_sandboxes = \"ten\"\n":        `key "max_sandboxes": want an integer`,
		good + "network_partition = 9\n":   "network_partition = 9: use 0 to 7",
		good + "on_stop = \"hibernate\"\n": `on_stop = "hibernate": use pause, destroy`,
		"state_dir = \"/var/lib/wrenn\"\n": "neither control_plane nor secret_file",
		good + "secret_file = \"/nope\"\n": "secret_file: open /nope",
		good + "listen = \"7070\"\n":       `listen = "7070"`,
		"runtime = \"docker\"\n":           `runtime = "docker": use auto, qemu, gvisor, firecracker`,
	} {
		out, err := run(body, nil)
		if err == nil || !strings.Contains(out, want) || !strings.Contains(out, file) {
			t.Errorf("%q: %v, want %q in\n%s", body, err, want, out)
		}
	}
}
