package dist

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"git.omukk.dev/wrenn/sandbox/pkg/config"
	"git.omukk.dev/wrenn/sandbox/pkg/settings"
)

// The shipped control-plane.toml documents every key, each commented-out
// example is valid, and the file as shipped loads.
func TestControlPlaneConfigFileListsEveryKey(t *testing.T) {
	b, err := PackagingFile("control-plane.toml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	c := config.Defaults()
	for _, name := range settings.Names(config.Keys(&c)) {
		if !regexp.MustCompile(`(?m)^#?` + regexp.QuoteMeta(name) + ` = `).MatchString(text) {
			t.Errorf("control-plane.toml does not show key %q", name)
		}
	}
	for _, k := range config.Keys(&c) {
		if k.Env != "" && !strings.Contains(text, k.Env) {
			t.Errorf("control-plane.toml does not name %s", k.Env)
		}
	}
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("x", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	// Uncommented, every example must load (the secret file must exist
	// to be read).
	uncommented := regexp.MustCompile(`(?m)^#([a-z_]+ = )`).ReplaceAllString(text, "$1")
	uncommented = strings.ReplaceAll(uncommented, "/etc/wrenn/control-plane.secret", secret)
	uncommented = strings.ReplaceAll(uncommented, "/etc/wrenn/github.secret", secret)
	file := filepath.Join(dir, "cp.toml")
	if err := os.WriteFile(file, []byte(uncommented), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(file); err != nil {
		t.Fatalf("the shipped examples do not load: %v", err)
	}
}

// Units name the paths the packages install, and the packages' scripts
// never touch the database: migrations run in the control plane, once.
func TestUnitsAndScripts(t *testing.T) {
	for unit, bin := range map[string]string{PkgControlPlane + ".service": ControlPlaneBin, PkgHostAgent + ".service": HostAgentBin} {
		b, err := PackagingFile(unit)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "ExecStart="+bin+" --config /etc/wrenn/") || !strings.Contains(string(b), "Type=notify") {
			t.Errorf("%s:\n%s", unit, b)
		}
	}
	entries, _ := packaging.ReadDir("files")
	for _, e := range entries {
		if !strings.Contains(e.Name(), "inst") && !slices.Contains([]string{"prerm", "postrm"}, e.Name()) {
			continue
		}
		b, _ := packaging.ReadFile("files/" + e.Name())
		for _, db := range []string{"psql", "migrate", "goose", "pg_"} {
			if strings.Contains(string(b), db) {
				t.Errorf("%s mentions %s: package scripts must not run anything against the database", e.Name(), db)
			}
		}
	}
	if v := RunscDebVersion("v0.0.0-20260905035102-160fafc42237"); v != "0.0~git20260905035102.160fafc42237" {
		t.Errorf("runsc version %s", v)
	}
}
