// Package cmd_test checks what the shipped binaries link (in the manner of
// Tailscale's deptest): no test code in any of them, no runtime drivers in
// the control plane, and an envd that stays small.
package cmd_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "git.omukk.dev/wrenn/sandbox/"

// deps lists the packages pkg links for linux/amd64 without cgo, as the
// Makefile builds it.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{else}}std:{{.ImportPath}}{{end}}", module+pkg)
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// TestShippedBinariesLinkNoTestCode: the testing package and the test
// harnesses (cptest, which starts control planes) stay out of every
// binary users run; benchmarks live in cmd/wrenn-bench.
func TestShippedBinariesLinkNoTestCode(t *testing.T) {
	for _, bin := range []string{"cmd/wrenn", "cmd/control-plane", "cmd/envd", "cmd/host-agent", "cmd/wrenn-init", "cmd/code-interpreter"} {
		for _, d := range deps(t, bin) {
			switch {
			case d == "std:testing", strings.HasPrefix(d, "std:testing/"), strings.HasPrefix(d, "std:internal/fuzz"):
				t.Errorf("%s links %s", bin, d)
			case d == module+"internal/cptest", d == module+"internal/bench":
				t.Errorf("%s links %s", bin, d)
			}
		}
	}
}

// TestControlPlaneLinksNoRuntime: the control plane talks to agents over
// the network; it must not carry the VMM drivers, networking or the
// agent itself.
func TestControlPlaneLinksNoRuntime(t *testing.T) {
	for _, d := range deps(t, "cmd/control-plane") {
		for _, banned := range []string{"internal/runtime", "internal/hostagent", "internal/sandbox", "internal/network", "internal/uffd", "internal/memgen", "internal/cgroup", "internal/guestimage"} {
			if d == module+banned || strings.HasPrefix(d, module+banned+"/") {
				t.Errorf("control-plane links %s", d)
			}
		}
		if strings.HasPrefix(d, "github.com/vishvananda/") || strings.HasPrefix(d, "github.com/coreos/go-iptables") {
			t.Errorf("control-plane links %s", d)
		}
	}
}

// TestEnvdStaysSmall: envd runs in every sandbox. Outside the standard
// library it may link only its own packages, the envd protocol and these
// modules; a new dependency must be added here on purpose.
func TestEnvdStaysSmall(t *testing.T) {
	allowed := []string{
		module + "cmd/envd", module + "internal/envd", module + "proto/envd", module + "pkg/filesig", module + "internal/envdapi",
		"connectrpc.com/connect", "google.golang.org/protobuf", "github.com/fsnotify/fsnotify",
		"github.com/creack/pty", "github.com/rs/cors", "golang.org/x/sys",
	}
	for _, d := range deps(t, "cmd/envd") {
		if strings.HasPrefix(d, "std:") {
			if d == "std:net/http/pprof" || d == "std:database/sql" || d == "std:html/template" {
				t.Errorf("envd links %s", d)
			}
			continue
		}
		ok := false
		for _, a := range allowed {
			if d == a || strings.HasPrefix(d, a+"/") {
				ok = true
				break
			}
		}
		if !ok {
			t.Errorf("envd links %s, which is not on its list of allowed dependencies", d)
		}
	}
}

// TestDepsSeesTestCode guards the checks above: the benchmark binary does
// link the testing package, and deps must say so.
func TestDepsSeesTestCode(t *testing.T) {
	for _, d := range deps(t, "cmd/wrenn-bench") {
		if d == "std:testing" {
			return
		}
	}
	t.Fatal("go list -deps did not report testing in cmd/wrenn-bench, which links it")
}
