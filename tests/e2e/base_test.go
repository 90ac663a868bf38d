package e2e

import (
	"context"
	"strings"
	"syscall"
	"testing"

	"connectrpc.com/connect"

	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

// The base image as E2B's users expect it, on every runtime (issue 15, bug
// 5): the default user's sudo works (under gVisor too, where runsc ignores
// set-user-ID bits unless told otherwise), /etc/hosts names localhost and
// the sandbox's own hostname, and `python` is python3.
func TestBaseImageSudoHostsPython(t *testing.T) {
	requireBase(t)
	forEachRuntime(t, func(t *testing.T, rt string) {
		a := startAgent(t, "", "--runtime", rt)
		create(t, a, "base1", func(r *pb.CreateSandboxRequest) { r.Template = "base" })
		run := func(user, script string) (string, string) {
			t.Helper()
			resp, err := a.client.Exec(context.Background(), connect.NewRequest(&pb.ExecRequest{SandboxId: "base1", Cmd: "/bin/bash", Args: []string{"-c", script}, User: user, TimeoutSeconds: 60}))
			if err != nil {
				t.Fatalf("exec %q as %s: %v", script, user, err)
			}
			if resp.Msg.ExitCode != 0 {
				t.Fatalf("exec %q as %s: exit %d, stdout %q, stderr %q", script, user, resp.Msg.ExitCode, resp.Msg.Stdout, resp.Msg.Stderr)
			}
			return string(resp.Msg.Stdout), string(resp.Msg.Stderr)
		}

		out, errOut := run("user", "whoami; sudo -n whoami; sudo -n id -u; sudo -n -u user whoami")
		if out != "user\nroot\n0\nuser\n" || errOut != "" {
			t.Errorf("sudo as the default user: stdout %q, stderr %q", out, errOut)
		}
		hostname, _ := run("user", "hostname")
		hostname = strings.TrimSpace(hostname)
		if hostname == "" {
			t.Fatal("no hostname")
		}
		out, _ = run("user", "getent hosts localhost "+hostname+" | awk '{print $2}'; stat -c '%U %a' /etc/hosts")
		if want := "localhost\n" + hostname + "\nroot 644\n"; out != want {
			t.Errorf("/etc/hosts lookups: %q, want %q", out, want)
		}
		out, _ = run("user", "python -c 'import sys; print(sys.version_info[0], 6*7)'; readlink -f \"$(command -v python)\"")
		if !strings.HasPrefix(out, "3 42\n/usr/bin/python3") {
			t.Errorf("python: %q", out)
		}
		a.stop(t, syscall.SIGTERM)
		assertNoLeftovers(t, a.stateDir)
	})
}
