package cpserver_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"git.omukk.dev/wrenn/sandbox/internal/cptest"
	"git.omukk.dev/wrenn/sandbox/pkg/cpserver"
)

// TestCreateAdminCommand makes the first admin as an operator does, with
// `control-plane create-admin` against the database from the environment
// (nothing else set: no TLS, no secret), and signs in with the password it
// printed; and another from a configuration file.
func TestCreateAdminCommand(t *testing.T) {
	ctx := context.Background()
	url, err := pg.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("WRENN_DATABASE_URL", url)
	var out bytes.Buffer
	if err := cpserver.AdminCommand(ctx, []string{"--email", "ops@example.com"}, &out); err != nil {
		t.Fatalf("create-admin: %v (%s)", err, out.String())
	}
	m := regexp.MustCompile(`created platform admin ops@example.com with password (\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("output: %q", out.String())
	}
	if err := cpserver.AdminCommand(ctx, nil, &out); err == nil {
		t.Error("create-admin without --email succeeded")
	}
	cp, err := pg.Start(ctx, cptest.Options{DatabaseURL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	r := cp.Must(t, 200, "POST", "/v1/auth/login", "", map[string]string{"email": "ops@example.com", "password": m[1]})
	tok := r.Map()["token"].(string)
	if me := cp.Must(t, 200, "GET", "/v1/auth/me", tok, nil).Map(); me["user"].(map[string]any)["admin"] != true || me["active_team_id"] == nil {
		t.Fatalf("the admin: %v", me)
	}
	// An existing account is promoted; its password stays.
	u := cp.Signup(t, "later@example.com")
	out.Reset()
	if err := cpserver.AdminCommand(ctx, []string{"--email", "later@example.com"}, &out); err != nil || !strings.Contains(out.String(), "password unchanged") {
		t.Fatalf("promote: %v %q", err, out.String())
	}
	cp.Must(t, 201, "POST", "/v1/hosts/tokens", u.Token, nil)

	// From the configuration file the service reads (only its database).
	t.Setenv("WRENN_DATABASE_URL", "")
	dir := t.TempDir()
	file, pw := filepath.Join(dir, "cp.toml"), filepath.Join(dir, "password")
	if err := os.WriteFile(file, []byte(fmt.Sprintf("database_url = %q\n", url)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pw, []byte("a file password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := cpserver.AdminCommand(ctx, []string{"--config", file, "--email", "file@example.com", "--password-file", pw}, &out); err != nil {
		t.Fatalf("create-admin --config: %v (%s)", err, out.String())
	}
	r = cp.Must(t, 200, "POST", "/v1/auth/login", "", map[string]string{"email": "file@example.com", "password": "a file password"})
	if r.Map()["user"].(map[string]any)["admin"] != true {
		t.Fatalf("the admin from --config: %s", r)
	}
}
