package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/cptest"
	"git.omukk.dev/wrenn/sandbox/internal/githubauth/githubtest"
	"git.omukk.dev/wrenn/sandbox/internal/webui"
	"git.omukk.dev/wrenn/sandbox/pkg/config"
)

// chromium is Debian's browser, which scripts/setup installs.
const chromium = "/usr/bin/chromium"

// dashboardArtifacts is where the browser tests leave a screenshot of
// every page (WRENN_ARTIFACTS_DIR/dashboard when set).
func dashboardArtifacts(t *testing.T) string {
	dir := filepath.Join(os.TempDir(), "wrenn-dashboard-artifacts")
	if d := os.Getenv("WRENN_ARTIFACTS_DIR"); d != "" {
		dir = filepath.Join(d, "dashboard")
	}
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDashboard drives the dashboard in Chromium (Playwright) against a
// real control plane, PostgreSQL and a gVisor agent, with GitHub played by
// a local server that answers as GitHub's OAuth and REST endpoints do:
// web/tests/dashboard.test.mjs is the browser side. It ends with a
// measurement of the first load (JavaScript size, time to an interactive
// sandbox list), printed, not asserted.
func TestDashboard(t *testing.T) {
	requireVMs(t)
	if !webui.Built() {
		t.Skip("the dashboard is not built into this binary: run make build (npm ci and the Vite build in web/) before the tests")
	}
	for _, need := range []string{"runsc", chromium, "node"} {
		if _, err := exec.LookPath(need); err != nil {
			t.Skipf("%s is not installed (scripts/setup installs it)", need)
		}
	}
	webDir, _ := filepath.Abs("../../web")
	if _, err := os.Stat(filepath.Join(webDir, "node_modules", "playwright-core")); err != nil {
		t.Skip("web/node_modules is not installed (scripts/setup runs npm ci in web/)")
	}

	gh := githubtest.Start("wrenn-dashboard-test", "github-client-secret", githubtest.User{ID: 1})
	defer gh.Close()
	pg := requirePostgres(t)
	cp, err := pg.Start(context.Background(), cptest.Options{Tune: func(c *config.Config) {
		c.GitHubClientID, c.GitHubClientSecret = gh.ClientID, gh.ClientSecret
		c.GitHubURL, c.GitHubAPIURL = gh.URL, gh.URL
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("control plane: %v", err)
		}
	})
	const password = "correct horse battery"
	admin := cp.Signup(t, "admin@wrenn.test")
	member := cp.Signup(t, "member@wrenn.test")
	h := startCPAgent(t, cp, admin.Token, 4, "gvisor")

	artifacts := dashboardArtifacts(t)
	env := append(os.Environ(),
		"WRENN_URL="+cp.URL, "GITHUB_URL="+gh.URL, "CHROMIUM="+chromium, "ARTIFACTS="+artifacts,
		"ADMIN_EMAIL="+admin.Email, "ADMIN_PASSWORD="+password, "MEMBER_EMAIL="+member.Email, "MEMBER_PASSWORD="+password,
	)
	node := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "node", args...)
		cmd.Dir, cmd.Env = webDir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("node %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	out := node("--test", "--test-concurrency=1", "tests/dashboard.test.mjs")
	if !strings.Contains(out, "# fail 0") || !strings.Contains(out, "# skipped 0") || t.Failed() {
		t.Fatalf("browser tests:\n%s", out)
	}
	t.Logf("screenshots of every page: %s", artifacts)
	t.Logf("first load:\n%s", node("tests/measure.mjs"))

	// Every sandbox the browser made is gone or stopped with the agent.
	h.stop(t, syscall.SIGTERM)
	assertNothingRunning(t, h.stateDir)
	if reqs := strings.Join(gh.Requests(), "\n"); !strings.Contains(reqs, "POST /login/oauth/access_token") || !strings.Contains(reqs, "GET /user/emails") {
		t.Errorf("the GitHub flow did not reach GitHub's endpoints:\n%s", reqs)
	}
}
