package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/dist"
	"git.omukk.dev/wrenn/sandbox/internal/localca"
	"git.omukk.dev/wrenn/sandbox/internal/pglocal"
	"git.omukk.dev/wrenn/sandbox/internal/unitrun"
)

// testVersionMark is in the version of every package this test installs,
// so that a run can tell its own leftovers (an interrupted run) from a
// real installation, which it refuses to touch.
const testVersionMark = "~e2etest"

// docBlock is a command block of docs/deploy.md, by its <!-- test: NAME -->.
type docBlock struct{ name, script string }

var docBlockRe = regexp.MustCompile("(?s)<!-- test: ([a-z0-9-]+) -->\n```sh\n(.*?)```")

func deployDocBlocks(t *testing.T) []docBlock {
	t.Helper()
	b, err := os.ReadFile("../../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []docBlock
	for _, m := range docBlockRe.FindAllStringSubmatch(string(b), -1) {
		out = append(out, docBlock{m[1], m[2]})
	}
	if n := strings.Count(string(b), "```sh"); n != len(out) {
		t.Fatalf("docs/deploy.md has %d sh blocks, %d of them named for this test: name every block (<!-- test: NAME -->) and run it here", n, len(out))
	}
	return out
}

// installation is the machine-wide state the test drives: installed
// packages, running units, and the doc's blocks.
type installation struct {
	t      *testing.T
	blocks map[string]string
	ran    []string
	subst  *strings.Replacer
	env    []string
	units  map[string]*unitrun.Process
	logs   map[string]*syncWriter
}

// run runs a doc block in dir: its systemctl lines as systemd would (see
// unitrun), the rest with bash -e. It returns what the shell printed.
func (in *installation) run(name, dir string) string {
	t := in.t
	t.Helper()
	script, ok := in.blocks[name]
	if !ok {
		t.Fatalf("docs/deploy.md has no block %q", name)
	}
	in.ran = append(in.ran, name)
	script = in.subst.Replace(script)
	var out bytes.Buffer
	var shell []string
	flush := func() {
		if len(shell) == 0 {
			return
		}
		cmd := exec.Command("bash", "-e", "-c", strings.Join(shell, "\n"))
		cmd.Dir, cmd.Env = dir, in.env
		b, err := cmd.CombinedOutput()
		out.Write(b)
		if err != nil {
			t.Fatalf("deploy.md block %q: %v\n%s\n--- output:\n%s", name, err, strings.Join(shell, "\n"), b)
		}
		shell = nil
	}
	for line := range strings.Lines(script) {
		line = strings.TrimRight(line, "\n")
		if f := strings.Fields(line); len(f) > 0 && f[0] == "systemctl" {
			flush()
			in.systemctl(f[1:])
			continue
		}
		shell = append(shell, line)
	}
	flush()
	return out.String()
}

// systemctl does what `systemctl enable --now|restart|daemon-reload` would.
func (in *installation) systemctl(args []string) {
	t := in.t
	t.Helper()
	switch {
	case len(args) == 1 && args[0] == "daemon-reload":
		// Units and drop-ins are read at every start.
	case len(args) == 3 && args[0] == "enable" && args[1] == "--now":
		// deb-systemd-helper (the postinst) enabled it already.
		if _, err := os.Lstat("/etc/systemd/system/multi-user.target.wants/" + args[2] + ".service"); err != nil {
			t.Errorf("%s is not enabled after install: %v", args[2], err)
		}
		in.start(args[2])
	case len(args) == 2 && args[0] == "restart":
		in.stop(args[1])
		in.start(args[1])
	default:
		t.Fatalf("systemctl %v: the test does not know what systemd would do", args)
	}
}

func (in *installation) start(unit string) {
	t := in.t
	t.Helper()
	u, err := unitrun.Load(filepath.Join(dist.UnitDir, unit+".service"), "/etc/systemd/system")
	if err != nil {
		t.Fatal(err)
	}
	log := &syncWriter{w: &bytes.Buffer{}}
	in.logs[unit] = log
	p, err := u.Start(unitrun.Options{Output: log})
	if err != nil {
		t.Fatalf("start %s: %v\n%s", unit, err, in.log(unit))
	}
	in.units[unit] = p
	if !slices.Contains(p.Notifications(), "READY=1") {
		t.Errorf("%s: notifications %q", unit, p.Notifications())
	}
}

func (in *installation) stop(unit string) {
	t := in.t
	t.Helper()
	p := in.units[unit]
	if p == nil {
		return
	}
	delete(in.units, unit)
	if err := p.Stop(); err != nil {
		t.Errorf("stop %s: %v\n%s", unit, err, in.log(unit))
	}
	if n := p.Notifications(); !slices.Contains(n, "STOPPING=1") {
		t.Errorf("%s did not tell systemd it was stopping: %q", unit, n)
	}
}

func (in *installation) log(unit string) string {
	w := in.logs[unit]
	if w == nil {
		return ""
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.String()
}

// runUntil runs a block until its output contains want.
func (in *installation) runUntil(name, dir, want string, timeout time.Duration) string {
	in.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := in.run(name, dir)
		in.ran = in.ran[:len(in.ran)-1]
		if strings.Contains(out, want) || time.Now().After(deadline) {
			in.ran = append(in.ran, name)
			if !strings.Contains(out, want) {
				in.t.Fatalf("block %q printed %q, want %q", name, out, want)
			}
			return out
		}
		time.Sleep(500 * time.Millisecond)
	}
}

var wrennPackages = []string{dist.PkgHostAgent, dist.PkgRunsc, dist.PkgCLI, dist.PkgControlPlane}

// installedVersion is a package's installed version, "" if not installed.
func installedVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status} ${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	status, version, _ := strings.Cut(string(out), " ")
	if status == "not-installed" || status == "config-files" && version == "" {
		return ""
	}
	return status + " " + version
}

// refuseRealInstallation fails if this machine has Wrenn installed for
// real, and clears what an interrupted run of this test left.
func refuseRealInstallation(t *testing.T) {
	t.Helper()
	leftovers := false
	for _, p := range wrennPackages {
		v := installedVersion(p)
		if v == "" {
			continue
		}
		if !strings.Contains(v, testVersionMark) && !strings.HasPrefix(v, "config-files") && p != dist.PkgRunsc {
			t.Fatalf("%s %s is installed on this machine: this test installs and purges Wrenn's packages, so it does not run here", p, v)
		}
		leftovers = true
	}
	if _, err := os.Stat("/var/lib/wrenn"); err == nil && !leftovers {
		if _, err := os.Stat("/var/lib/wrenn/.e2e-test"); err != nil {
			t.Fatal("/var/lib/wrenn exists and is not this test's: it would be used by the installed agent")
		}
	}
	if leftovers {
		t.Log("purging packages an interrupted run left")
		purgeAll(t)
	}
}

func purgeAll(t *testing.T) {
	t.Helper()
	var installed []string
	for _, p := range wrennPackages {
		if installedVersion(p) != "" {
			installed = append(installed, p)
		}
	}
	if len(installed) > 0 {
		args := append([]string{"purge", "-y", "-q"}, installed...)
		if out, err := exec.Command("apt-get", args...).CombinedOutput(); err != nil {
			t.Errorf("apt-get purge: %v\n%s", err, out)
		}
	}
	if _, err := user.Lookup("wrenn"); err == nil {
		_ = exec.Command("deluser", "--system", "wrenn").Run()
	}
	_ = os.RemoveAll("/var/lib/wrenn")
	// The certificates the test put beside the packages' files, then the
	// directory if nothing else is in it.
	_ = os.RemoveAll("/etc/wrenn/tls")
	_ = os.Remove("/etc/wrenn")
	_ = os.RemoveAll("/etc/systemd/system/" + dist.PkgControlPlane + ".service.d")
	_ = os.Remove("/etc/default/" + dist.PkgControlPlane)
	_ = os.Remove("/etc/default/" + dist.PkgHostAgent)
}

// buildPackages makes this machine's architecture's packages with
// internal/dist, with the runsc scripts/setup built from the same pin.
func buildPackages(t *testing.T, out, version string) {
	t.Helper()
	root, _ := filepath.Abs("../..")
	pin, err := os.ReadFile(filepath.Join(root, "scripts", "runsc.version"))
	if err != nil {
		t.Fatal(err)
	}
	installed, _ := os.ReadFile("/usr/local/lib/wrenn-runsc.version")
	if strings.TrimSpace(string(installed)) != strings.TrimSpace(string(pin)) {
		t.Fatalf("/usr/local/bin/runsc is not gVisor %s (scripts/setup builds it)", pin)
	}
	start := time.Now()
	arts, err := dist.Build(context.Background(), dist.Options{
		Root: root, Out: out, Version: version, Arches: []string{runtime.GOARCH},
		Runsc: map[string]string{runtime.GOARCH: "/usr/local/bin/runsc"}, RunscVersion: strings.TrimSpace(string(pin)),
		Log: &stepLog{t: t, start: start},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("packages %s built in %s", version, time.Since(start).Round(time.Millisecond))
	for _, a := range arts {
		t.Logf("  %s %.1f MiB", filepath.Base(a.Path), float64(a.Size)/(1<<20))
	}
	// apt's unprivileged downloader reads local packages too.
	if err := os.Chmod(out, 0o755); err != nil {
		t.Fatal(err)
	}
}

// stepLog puts make dist's steps in the test's log with the time since
// the build began, so that a slow step shows.
type stepLog struct {
	t     *testing.T
	start time.Time
}

func (l *stepLog) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		l.t.Logf("[%5.1fs] %s", time.Since(l.start).Seconds(), line)
	}
	return len(p), nil
}

// TestDebianPackages builds the Debian packages, installs them on this
// machine with apt-get, and follows docs/deploy.md from the database to
// an upgrade, running every command block of it: the control plane and an
// agent from the packages start as their units say (Type=notify), the
// agent registers, sandboxes run, the E2B SDK works over HTTPS, an upgrade
// keeps a sandbox (paused, then resumed with its memory) and runs no
// migration again. The packages are purged afterwards and the machine
// left as it was.
func TestDebianPackages(t *testing.T) {
	requireVMs(t)
	for _, tool := range []string{"apt-get", "dpkg-query", "systemd-analyze", "jq", "psql", "pg_dump", "curl", "node", "runsc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (scripts/setup installs it)", tool)
		}
	}
	blocks := deployDocBlocks(t)
	refuseRealInstallation(t)
	// What other agents on this machine hold is theirs; the check at the
	// end is that the installed agent left nothing.
	before := hostLeftovers()
	// The database server as a deployment reaches one: over TCP, with a
	// password (the shared test cluster has no TCP port). The superuser's
	// blocks (psql as postgres) go through its socket, as root.
	pgAddr := freeAddr(t)
	pgPort, _ := strconv.Atoi(pgAddr[strings.LastIndexByte(pgAddr, ':')+1:])
	pg, stopPG, err := pglocal.StartTempWith(context.Background(), pglocal.Options{Port: pgPort, TCP: true})
	if err != nil {
		t.Fatalf("start PostgreSQL with TCP: %v", err)
	}
	t.Cleanup(stopPG)
	arch := runtime.GOARCH

	work := t.TempDir()
	if err := os.Chmod(work, 0o755); err != nil {
		t.Fatal(err)
	}
	v1, v2 := filepath.Join(work, "v1"), filepath.Join(work, "v2")
	buildPackages(t, v1, "0.0.1"+testVersionMark+"1")

	ca, err := localca.New("wrenn deploy test root")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteCert(filepath.Join(v1, "ca.pem")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.IssueFiles(v1, "tls", "tls-1", "127.0.0.1", "cp.example.com", "*.sandbox.example.com"); err != nil {
		t.Fatal(err)
	}
	in := &installation{t: t, blocks: map[string]string{}, units: map[string]*unitrun.Process{}, logs: map[string]*syncWriter{},
		subst: strings.NewReplacer(
			"postgres://postgres@db.example.com:5432/postgres", pg.URL("postgres"),
			"db.example.com:5432", pgAddr,
			"cp.example.com", "127.0.0.1",
			"10.0.0.11", "127.0.0.1",
			"_amd64.deb", "_"+arch+".deb"),
		env: append(os.Environ(), "CURL_CA_BUNDLE="+filepath.Join(v1, "ca.pem"), "DEBIAN_FRONTEND=noninteractive")}
	for _, b := range blocks {
		in.blocks[b.name] = b.script
	}
	// Whatever happens, even a failed block in the cleanup below (which
	// ends that cleanup, not this one), the machine is left as it was.
	t.Cleanup(func() {
		purgeAll(t) // whatever a failure left
		for _, l := range hostLeftovers() {
			if !slices.Contains(before, l) {
				t.Errorf("left on the host: %s", l)
			}
		}
		if out, _ := exec.Command("pgrep", "-f", "/var/lib/wrenn|/usr/lib/wrenn|wrenn-host-agent|wrenn-control-plane").Output(); len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("processes left: %s", out)
		}
	})
	t.Cleanup(func() {
		for _, u := range []string{dist.PkgHostAgent, dist.PkgControlPlane} {
			in.stop(u)
		}
		if t.Failed() {
			for u := range in.logs {
				t.Logf("%s log:\n%s", u, in.log(u))
			}
			return // the documented removal expects a complete installation
		}
		in.run("remove", work)
		for _, p := range wrennPackages {
			if v := installedVersion(p); v != "" {
				t.Errorf("%s still installed after the purge: %s", p, v)
			}
		}
		for _, path := range []string{"/etc/wrenn", "/var/lib/wrenn", "/usr/lib/wrenn", dist.ControlPlaneBin, "/etc/systemd/system/multi-user.target.wants/" + dist.PkgControlPlane + ".service"} {
			if _, err := os.Lstat(path); err == nil {
				t.Errorf("%s left after the purge", path)
			}
		}
		if _, err := user.Lookup("wrenn"); err == nil {
			t.Error("user wrenn left")
		}
	})

	in.run("verify", v1)
	in.run("database", v1)
	in.run("cp-install", v1)
	checkControlPlanePackage(t)
	in.run("tls", v1)
	in.run("cp-configure", v1)
	in.run("cp-start", v1)
	cp := in.units[dist.PkgControlPlane]
	checkUnprivileged(t, cp.Pid(), "0000000000000000")
	if !strings.Contains(in.log(dist.PkgControlPlane), "migration applied") {
		t.Error("the first start applied no migration")
	}
	in.run("admin", v1)
	in.run("host-token", v1)
	in.run("agent-install", v1)
	verifyUnit(t, dist.PkgHostAgent)
	if err := os.WriteFile("/var/lib/wrenn/.e2e-test", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	in.run("images", v1)
	in.run("private-ca", v1)
	in.run("agent-configure", v1)
	in.run("agent-start", v1)
	in.runUntil("hosts", v1, " ready gvisor minimal", time.Minute)
	if out := in.run("host-certificate", v1); !strings.Contains(out, "URI:wrenn://host/host-") || !strings.Contains(out, "IP Address:127.0.0.1") ||
		!strings.Contains(out, "host.crt: OK") {
		t.Errorf("host-certificate printed %q", out)
	}
	if out := in.run("first-sandbox", v1); !strings.Contains(out, "Linux") {
		t.Fatalf("first-sandbox printed %q", out)
	}
	in.run("e2b-env", v1)
	runE2BSDK(t, v1)
	if out := in.run("monitoring", v1); !strings.Contains(out, `wrenn_hosts{status="ready"} 1`) ||
		!strings.Contains(out, `wrenn_agent_sandboxes{runtime="gvisor",state="running"}`) || !strings.Contains(out, `"running_seconds":`) {
		t.Errorf("monitoring printed %q", out)
	}
	in.run("backup", v1)
	in.run("restore", v1)

	// A certificate renewal is served without a restart.
	if _, _, err := ca.IssueFiles(v1, "tls", "tls-2", "127.0.0.1", "cp.example.com", "*.sandbox.example.com"); err != nil {
		t.Fatal(err)
	}
	in.run("tls", v1)
	waitForSubject(t, ca, "127.0.0.1:8080", "127.0.0.1", "tls-2")
	waitForSubject(t, ca, "127.0.0.1:8081", "49983-sb-x.sandbox.example.com", "tls-2")

	// Upgrade with a sandbox running: the restart pauses it, the new
	// agent takes it back, and it resumes with its memory.
	// The newer packages are built first, and the sandbox outlives any
	// build time: its default timeout is not what this checks.
	buildPackages(t, v2, "0.0.1"+testVersionMark+"2")
	key := strings.TrimSpace(readFile(t, filepath.Join(v1, "wrenn-api-key")))
	sb := apiJSON(t, v1, key, "POST", "/v1/sandboxes", `{"template": "minimal", "timeout_seconds": 3600}`)["id"].(string)
	apiJSON(t, v1, key, "POST", "/v1/sandboxes/"+sb+"/exec", `{"cmd": "/bin/sh", "args": ["-c", "echo kept > /tmp/upgrade-marker"]}`)
	in.run("upgrade-cp", v2)
	in.systemctl([]string{"restart", dist.PkgControlPlane}) // what the postinst's try-restart does under systemd
	if strings.Contains(in.log(dist.PkgControlPlane), "migration applied") {
		t.Error("the upgraded control plane applied migrations again")
	}
	in.run("upgrade-host", v2)
	in.systemctl([]string{"restart", dist.PkgHostAgent})
	for _, p := range wrennPackages {
		if v := installedVersion(p); p != dist.PkgRunsc && !strings.HasSuffix(v, testVersionMark+"2") {
			t.Errorf("%s after the upgrade: %s", p, v)
		}
	}
	waitForState(t, v1, key, sb, "paused")
	apiJSON(t, v1, key, "POST", "/v1/sandboxes/"+sb+"/resume", "")
	res := apiJSON(t, v1, key, "POST", "/v1/sandboxes/"+sb+"/exec", `{"cmd": "cat", "args": ["/tmp/upgrade-marker"]}`)
	if strings.TrimSpace(fmt.Sprint(res["stdout"])) != "kept" {
		t.Errorf("after the upgrade the sandbox's /tmp holds %v", res)
	}

	// Port 443 with the one capability it needs, through a drop-in, and
	// the environment over the file.
	in.stop(dist.PkgHostAgent)
	in.run("port-443", v1)
	cp = in.units[dist.PkgControlPlane]
	checkUnprivileged(t, cp.Pid(), "0000000000000400") // CAP_NET_BIND_SERVICE only
	waitForSubject(t, ca, "127.0.0.1:443", "127.0.0.1", "tls-2")

	// Every block of docs/deploy.md ran ("remove" in the cleanup).
	for _, b := range blocks {
		if b.name != "remove" && !slices.Contains(in.ran, b.name) {
			t.Errorf("docs/deploy.md block %q was not run", b.name)
		}
	}
}

// hostLeftovers lists what sandboxes hold on the host: namespaces, veths,
// iptables jumps, cgroups.
func hostLeftovers() []string {
	var out []string
	ns, _ := filepath.Glob("/run/netns/wrenn-*")
	out = append(out, ns...)
	links, _ := filepath.Glob("/sys/class/net/wrenn-*")
	out = append(out, links...)
	for _, dir := range []string{"/sys/fs/cgroup/wrenn", "/sys/fs/cgroup/memory/wrenn", "/sys/fs/cgroup/cpu/wrenn"} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.IsDir() {
				out = append(out, filepath.Join(dir, e.Name()))
			}
		}
	}
	for _, table := range []string{"filter", "nat"} {
		rules, _ := exec.Command("iptables", "-t", table, "-S").Output()
		for line := range strings.Lines(string(rules)) {
			if strings.Contains(line, "WRENN") {
				out = append(out, table+": "+strings.TrimSpace(line))
			}
		}
	}
	return out
}

// checkControlPlanePackage checks what the package installed: the user,
// the secret, the conffile, and units that systemd accepts and rates.
func checkControlPlanePackage(t *testing.T) {
	t.Helper()
	if _, err := user.Lookup("wrenn"); err != nil {
		t.Fatalf("the postinst made no user wrenn: %v", err)
	}
	fi, err := os.Stat("/etc/wrenn/control-plane.secret")
	if err != nil || fi.Mode().Perm() != 0o640 || fi.Size() < 32 {
		t.Errorf("secret: %v %v", fi, err)
	}
	conffiles, _ := exec.Command("dpkg-query", "-W", "-f=${Conffiles}", dist.PkgControlPlane).Output()
	if !strings.Contains(string(conffiles), dist.ControlPlaneConfig) {
		t.Errorf("%s is not a conffile: %q", dist.ControlPlaneConfig, conffiles)
	}
	verifyUnit(t, dist.PkgControlPlane)
	out, err := exec.Command("systemd-analyze", "security", "--offline=yes", "--threshold=25",
		filepath.Join(dist.UnitDir, dist.PkgControlPlane+".service")).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: the control plane's unit is exposed beyond 2.5: %v\n%s", err, out)
	}
	if m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindStringSubmatch(string(out)); m != nil {
		t.Logf("systemd-analyze security: control plane exposure %s", m[1])
	}
}

// verifyUnit runs systemd-analyze verify on an installed unit: unknown
// or misspelt directives, bad values, a missing ExecStart binary.
func verifyUnit(t *testing.T, unit string) {
	t.Helper()
	out, _ := exec.Command("systemd-analyze", "verify", filepath.Join(dist.UnitDir, unit+".service")).CombinedOutput()
	// verify also reports on other units of this machine (whose systemd
	// is not running): only lines about ours count.
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, unit) {
			t.Errorf("systemd-analyze verify %s: %s", unit, line)
		}
	}
}

// checkUnprivileged checks the process runs as wrenn with exactly the
// effective capabilities given (hex, as /proc shows them).
func checkUnprivileged(t *testing.T, pid int, capEff string) {
	t.Helper()
	st := readFile(t, fmt.Sprintf("/proc/%d/status", pid))
	u, _ := user.Lookup("wrenn")
	if !regexp.MustCompile(`(?m)^Uid:\t` + u.Uid + `\t`).MatchString(st) {
		t.Errorf("the control plane does not run as wrenn:\n%s", st)
	}
	if !strings.Contains(st, "CapEff:\t"+capEff) {
		t.Errorf("the control plane's capabilities, want CapEff %s:\n%s", capEff, st)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// apiJSON calls the installed control plane with curl (as the doc does)
// and decodes the object it returns.
func apiJSON(t *testing.T, dir, key, method, path, body string) map[string]any {
	t.Helper()
	args := []string{"-fsS", "-X", method, "--cacert", filepath.Join(dir, "ca.pem"), "-H", "X-API-Key: " + key, "https://127.0.0.1:8080" + path}
	if body != "" {
		args = append(args, "-H", "Content-Type: application/json", "-d", body)
	}
	out, err := exec.Command("curl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", method, path, err, out)
	}
	m := map[string]any{}
	if len(bytes.TrimSpace(out)) > 0 {
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("%s %s: %v\n%s", method, path, err, out)
		}
	}
	return m
}

func waitForState(t *testing.T, dir, key, sandbox, want string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got := apiJSON(t, dir, key, "GET", "/v1/sandboxes/"+sandbox, "")["state"]
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox %s is %v, want %s", sandbox, got, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func waitForSubject(t *testing.T, ca *localca.CA, addr, serverName, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := ""
		cfg := ca.ClientConfig()
		cfg.ServerName = serverName
		conn, err := tls.Dial("tcp", addr, cfg)
		if err == nil {
			got = conn.ConnectionState().PeerCertificates[0].Subject.CommonName
			conn.Close()
		} else {
			got = err.Error()
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s serves %q, want the certificate %s", addr, got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// runE2BSDK runs the official E2B SDK's platform tests against the
// installed control plane over HTTPS, configured by the e2b.env the doc
// wrote and trusting the test CA through NODE_EXTRA_CA_CERTS.
func runE2BSDK(t *testing.T, dir string) {
	t.Helper()
	sdkDir, _ := filepath.Abs("../e2b")
	var env []string
	for line := range strings.Lines(readFile(t, filepath.Join(dir, "e2b.env"))) {
		if line = strings.TrimSpace(line); line != "" {
			env = append(env, line)
		}
	}
	if len(env) != 3 || !strings.HasPrefix(env[0], "E2B_API_URL=https://") {
		t.Fatalf("e2b.env: %q", env)
	}
	cmd := exec.Command("node", "--test", "--test-concurrency=1", "platform.test.mjs")
	cmd.Dir = sdkDir
	cmd.Env = append(append(os.Environ(), env...), "NODE_EXTRA_CA_CERTS="+filepath.Join(dir, "ca.pem"))
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("# fail 0")) || !bytes.Contains(out, []byte("# skipped 0")) {
		t.Fatalf("E2B SDK over HTTPS against the installed control plane: %v\n%s", err, out)
	}
}
