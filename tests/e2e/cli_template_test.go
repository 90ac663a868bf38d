package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLITemplate drives `wrenn template` against a control plane, PostgreSQL
// and a gVisor agent: a build from a spec file and a context directory
// streams its log with step numbers, list/get/logs show it, a sandbox
// from it has the copied files and env, a template in use is not deleted,
// a failed build exits non-zero with its step and exit code, a bad spec
// file is refused naming the field. Then platform templates: an admin
// publishes the template, another team starts a sandbox from it but
// cannot delete or publish it. Nothing is left on the agent.
func TestCLITemplate(t *testing.T) {
	s := startSDKStack(t)
	e := newCLIEnv(t)
	if r := e.run(s.key+"\n", "login", "--api-url", s.cp.URL, "--sandbox-url", s.cp.ProxyURL, "--api-key-stdin"); r.code != 0 {
		t.Fatalf("login: %+v", r)
	}

	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("site/index.html", "from the context\n")
	write("site/sub/deep.txt", "deep\n")
	spec := write("wrenn-template.yaml", `name: cli-app
from_template: minimal
tags: [v1]
steps:
  - {type: ENV, args: [GREETING, hello]}
  - {type: COPY, args: [site/, /home/user/site]}
  - {type: RUN, args: ['echo "$GREETING from step 3"; cat /home/user/site/index.html > /home/user/copy.txt']}
`)

	r := e.run("", "template", "build", "-f", spec)
	if r.code != 0 {
		t.Fatalf("template build: %+v", r)
	}
	for _, want := range []string{"[1/3] ENV", "[2/3] COPY site/", "[3/3] RUN", "[3] hello from step 3", "template cli-app is ready"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("build output lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "building cli-app (build bld-") {
		t.Errorf("build stderr: %q", r.stderr)
	}

	if out := e.ok("template", "list"); !strings.Contains(out, "cli-app") || !strings.Contains(out, "minimal") || !strings.Contains(out, "v1") {
		t.Errorf("template list:\n%s", out)
	}
	var got struct {
		Name          string `json:"name"`
		LatestBuildID string `json:"latest_build_id"`
		Builds        []struct {
			ID, Status string
		} `json:"builds"`
	}
	if err := json.Unmarshal([]byte(e.ok("template", "get", "cli-app", "--json")), &got); err != nil || got.Name != "cli-app" || len(got.Builds) != 1 || got.Builds[0].Status != "ready" || got.Builds[0].ID != got.LatestBuildID {
		t.Fatalf("template get --json: %+v %v", got, err)
	}
	if out := e.ok("template", "get", "cli-app"); !strings.Contains(out, "ready") || !strings.Contains(out, got.LatestBuildID) {
		t.Errorf("template get:\n%s", out)
	}
	if out := e.ok("template", "logs", "cli-app"); !strings.Contains(out, "[3] hello from step 3") || !strings.Contains(out, "is ready") {
		t.Errorf("template logs:\n%s", out)
	}

	// A sandbox from it: the copied files, the env, the RUN's work.
	id := strings.TrimSpace(e.ok("sandbox", "create", "--template", "cli-app:v1"))
	defer e.run("", "sb", "kill", id)
	if r = e.run("", "exec", id, "--", "sh", "-c", `echo "$GREETING"; cat /home/user/copy.txt /home/user/site/sub/deep.txt; stat -c %U /home/user/site/index.html`); r.code != 0 || r.stdout != "hello\nfrom the context\ndeep\nuser\n" {
		t.Errorf("in a sandbox from the template: %+v", r)
	}
	if r = e.run("", "template", "rm", "cli-app"); r.code != 1 || !strings.Contains(r.stderr, "used by 1 sandbox") {
		t.Errorf("rm of a template in use: %+v", r)
	}

	// A failing step: its output, step and exit code; exit status 1.
	bad := write("bad/spec.yaml", "name: cli-broken\nfrom_template: minimal\nsteps:\n  - {type: RUN, args: ['echo about to fail; exit 7']}\n")
	if r = e.run("", "template", "build", "-f", bad); r.code != 1 || !strings.Contains(r.stdout, "[1] about to fail") || !strings.Contains(r.stderr, "step 1 failed with exit code 7") {
		t.Errorf("a failing build: %+v", r)
	}
	// Bad spec files are refused before anything is sent.
	unknown := write("bad/unknown.yaml", "name: x\nfrom_template: minimal\nsteps: []\nvolumes: [/data]\n")
	if r = e.run("", "template", "build", "-f", unknown); r.code != 2 || !strings.Contains(r.stderr, `unknown field "volumes"`) {
		t.Errorf("an unknown field: %+v", r)
	}
	missing := write("bad/missing.yaml", "name: x\nfrom_template: minimal\nsteps:\n  - {type: COPY, args: [nothere/, /tmp/x]}\n")
	if r = e.run("", "template", "build", "-f", missing); r.code != 1 || !strings.Contains(r.stderr, "nothing matches") {
		t.Errorf("a COPY of nothing: %+v", r)
	}

	// Platform templates: the admin publishes; another team uses it but
	// cannot delete or publish it.
	other := s.cp.Signup(t, "cli-template-other@example.com")
	o := newCLIEnv(t)
	if r := o.run(s.cp.APIKey(t, other)+"\n", "login", "--api-url", s.cp.URL, "--sandbox-url", s.cp.ProxyURL, "--api-key-stdin"); r.code != 0 {
		t.Fatalf("login as another team: %+v", r)
	}
	if r = o.run("", "sandbox", "create", "--template", "cli-app"); r.code == 0 {
		t.Fatalf("another team used an unpublished template: %+v", r)
	}
	// Publishing takes a platform admin's session (API keys act as team
	// members).
	if r = e.run("", "template", "publish", "cli-app"); r.code != 1 || !strings.Contains(r.stderr, "platform admin") {
		t.Errorf("publish with an API key: %+v", r)
	}
	if r = e.run(s.password+"\n", "login", "--profile", "admin", "--api-url", s.cp.URL, "--sandbox-url", s.cp.ProxyURL, "--email", "admin@example.com", "--password-stdin"); r.code != 0 {
		t.Fatalf("login with a password: %+v", r)
	}
	if out := e.ok("--profile", "admin", "template", "publish", "cli-app"); !strings.Contains(out, "cli-app is a platform template") {
		t.Errorf("publish: %q", out)
	}
	if out := o.ok("template", "list"); !strings.Contains(out, "platform") {
		t.Errorf("another team's list:\n%s", out)
	}
	oid := strings.TrimSpace(o.ok("sandbox", "create", "--template", "cli-app"))
	if r = o.run("", "exec", oid, "--", "cat", "/home/user/copy.txt"); r.code != 0 || r.stdout != "from the context\n" {
		t.Errorf("another team's sandbox from the platform template: %+v", r)
	}
	if r = o.run("", "template", "rm", "cli-app"); r.code != 1 || !strings.Contains(r.stderr, "only its team can delete it") {
		t.Errorf("another team deletes the platform template: %+v", r)
	}
	if r = o.run("", "template", "unpublish", "cli-app"); r.code != 1 {
		t.Errorf("another team unpublishes: %+v", r)
	}
	o.ok("sb", "kill", oid)
	e.ok("sb", "kill", id)
	if out := e.ok("template", "rm", "cli-app", "cli-broken"); !strings.Contains(out, "deleted cli-app") {
		t.Errorf("rm: %q", out)
	}
	if out := e.ok("template", "list"); strings.Contains(out, "cli-app") {
		t.Errorf("after rm:\n%s", out)
	}
}
