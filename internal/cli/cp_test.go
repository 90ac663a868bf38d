package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"git.omukk.dev/wrenn/sandbox/internal/cptest"
)

// TestAccountCommands runs the account, key and host commands in process
// against a real control plane on a private PostgreSQL (no agent: the
// sandbox commands are tested with one in tests/e2e).
func TestAccountCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts PostgreSQL")
	}
	pg, err := cptest.StartPostgres()
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	cp, err := pg.Start(context.Background(), cptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	admin := cp.Admin(t, "admin@example.com")
	key := cp.APIKey(t, admin)
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	for _, v := range []string{"WRENN_PROFILE", "WRENN_API_URL", "WRENN_API_KEY", "WRENN_SANDBOX_URL", "E2B_API_URL", "E2B_API_KEY", "NO_COLOR"} {
		t.Setenv(v, "")
	}
	run := func(stdin string, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := Main(context.Background(), args, strings.NewReader(stdin), &out, &errb)
		return code, out.String(), errb.String()
	}

	if code, _, stderr := run("", "whoami"); code != 1 || stderr != "wrenn: not logged in: run 'wrenn login', or set WRENN_API_URL and WRENN_API_KEY\n" {
		t.Errorf("whoami before login: %d %q", code, stderr)
	}
	if code, out, stderr := run(key+"\n", "login", "--api-url", cp.URL, "--api-key-stdin"); code != 0 || !strings.Contains(out, `API key "test" of team team-`) || !strings.Contains(stderr, "--sandbox-url") {
		t.Fatalf("login: %d %q %q", code, out, stderr)
	}
	if st, err := os.Stat(configPath()); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config: %v %v", st, err)
	}
	if code, _, stderr := run("e2b_0000000000000000000000000000000000000000\n", "login", "--profile", "bad", "--api-url", cp.URL, "--api-key-stdin"); code != 1 || strings.Count(stderr, "\n") != 1 {
		t.Errorf("login with a wrong key: %d %q", code, stderr)
	}
	if code, _, _ := run("correct horse battery\n", "login", "--profile", "pw", "--api-url", cp.URL, "--email", "admin@example.com", "--password-stdin"); code != 0 {
		t.Fatalf("login with a password: %d", code)
	}
	code, out, _ := run("", "whoami", "-o", "json")
	var me struct {
		User    struct{ Email string }
		Profile string
	}
	if code != 0 || json.Unmarshal([]byte(out), &me) != nil || me.Profile != "pw" || me.User.Email != "admin@example.com" {
		t.Errorf("whoami: %d %s", code, out)
	}
	if code, out, _ = run("", "whoami"); code != 0 || !strings.Contains(out, "platform admin") {
		t.Errorf("whoami: %d %s", code, out)
	}
	if code, out, _ = run("", "--profile", "default", "whoami"); code != 0 || !strings.Contains(out, "api key:") || !strings.Contains(out, admin.TeamID) {
		t.Errorf("whoami (default profile): %d %s", code, out)
	}

	code, out, _ = run("", "key", "create", "ci")
	if code != 0 || !strings.HasPrefix(out, "e2b_") {
		t.Fatalf("key create: %d %q", code, out)
	}
	newKey := strings.TrimSpace(out)
	code, out, _ = run("", "key", "list", "--json")
	var keys []struct{ ID, Name string }
	if code != 0 || json.Unmarshal([]byte(out), &keys) != nil || len(keys) != 2 {
		t.Fatalf("key list: %d %s", code, out)
	}
	if code, out, _ = run("", "key", "list"); code != 0 || !strings.HasPrefix(out, "ID ") || !strings.Contains(out, "ci") || strings.Contains(out, "\x1b[") {
		t.Errorf("key list table: %q", out)
	}
	for _, k := range keys {
		if k.Name == "ci" {
			if code, _, _ := run("", "key", "revoke", k.ID); code != 0 {
				t.Errorf("revoke: %d", code)
			}
		}
	}
	t.Setenv("WRENN_API_KEY", newKey)
	if code, _, stderr := run("", "whoami"); code != 1 || !strings.Contains(stderr, "(401 unauthenticated)") {
		t.Errorf("a revoked key from the environment: %d %q", code, stderr)
	}
	t.Setenv("WRENN_API_KEY", "")

	if code, out, _ = run("", "host", "token"); code != 0 || len(strings.TrimSpace(out)) < 20 {
		t.Errorf("host token: %d %q", code, out)
	}
	if code, out, _ = run("", "host", "list", "-o", "yaml"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("host list: %d %q", code, out)
	}
	if code, out, _ = run("", "sb", "list", "--json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("sandbox list: %d %q", code, out)
	}
	// No host: the create fails with the control plane's reason, one line.
	if code, _, stderr := run("", "sb", "create"); code != 1 || !strings.Contains(stderr, "no_capacity") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("create without hosts: %d %q", code, stderr)
	}
	if code, _, stderr := run("", "sb", "create", "--timeout", "soon"); code != 2 || !strings.Contains(stderr, "timeout") {
		t.Errorf("a bad timeout: %d %q", code, stderr)
	}
	if code, _, _ = run("", "logout"); code != 0 {
		t.Errorf("logout: %d", code)
	}
	if code, _, stderr := run("", "--profile", "pw", "whoami"); code != 1 || !strings.Contains(stderr, "no profile") {
		t.Errorf("after logout: %d %q", code, stderr)
	}
	cfg, _ := loadConfig()
	if cfg.Current != "default" || len(cfg.Profiles) != 1 {
		t.Errorf("profiles after logout: %+v", cfg)
	}
}
