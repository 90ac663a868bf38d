package jail

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestJailedProcess runs a shell in a jail and checks what it can still
// see and do: no capabilities, no way to gain any, another user, its own
// namespaces, only the files it was given, limits in force.
func TestJailedProcess(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("building a jail needs root")
	}
	given := t.TempDir()
	secret := filepath.Join(t.TempDir(), "not-given")
	if err := os.WriteFile(secret, []byte("host secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(given, 2000123, 2000000); err != nil {
		t.Fatal(err)
	}
	script := `
echo uid=$(id -u) gid=$(id -g)
grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status
echo root: $(ls / | tr '\n' ' ')
echo pid1=$(cat /proc/1/comm)
[ -e /proc/` + strconv.Itoa(os.Getpid()) + ` ] && echo host-process-visible
cat ` + secret + ` 2>/dev/null || echo secret-hidden
cat /etc/shadow 2>/dev/null || echo shadow-hidden
touch /usr/x 2>/dev/null || echo usr-readonly
echo written > ` + given + `/out && echo given-writable
ulimit -n
ls /sys 2>/dev/null || echo no-sys
`
	cmd, err := Command(Spec{UID: 2000123, GID: 2000000, ReadWrite: []string{given}, Rlimits: map[int]uint64{unix.RLIMIT_NOFILE: 64}}, "/bin/sh", "-c", script)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("jailed shell: %v: %s", err, out)
	}
	got := string(out)
	t.Logf("inside the jail:\n%s", got)
	for _, want := range []string{
		"uid=2000123 gid=2000000", "CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "CapBnd:\t0000000000000000",
		"NoNewPrivs:\t1", "pid1=sh", "secret-hidden", "shadow-hidden", "usr-readonly", "given-writable", "\n64\n", "no-sys",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("jailed shell output lacks %q", want)
		}
	}
	if strings.Contains(got, "host-process-visible") {
		t.Error("the jail sees the host's processes")
	}
	if root := got[strings.Index(got, "root:"):]; strings.Contains(root, " etc ") && strings.Contains(root, "root ") {
		t.Errorf("the jail shows the host's root: %s", root)
	}
	if b, err := os.ReadFile(filepath.Join(given, "out")); err != nil || string(b) != "written\n" {
		t.Errorf("the given directory: %q %v", b, err)
	}
}
