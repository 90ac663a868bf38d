package e2e

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/cptest"
	"git.omukk.dev/wrenn/sandbox/internal/waitfor"
	"git.omukk.dev/wrenn/sandbox/pkg/config"
)

// startParityStack is a control plane whose reconciler, once past its
// first pass, does not run again within a test: what the control plane
// learns of a sandbox, it learns from the agent's own reports.
func startParityStack(t *testing.T) *sdkStack {
	t.Helper()
	requireVMs(t)
	requireRunsc(t)
	pg := requirePostgres(t)
	cp, err := pg.Start(context.Background(), cptest.Options{Tune: func(c *config.Config) {
		c.HeartbeatTimeout = 3 * time.Second
		c.ReconcileInterval = time.Hour
		c.TransitionGrace = 2 * time.Second
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	s := &sdkStack{cp: cp}
	s.admin = cp.Admin(t, "admin@example.com")
	t.Cleanup(func() {
		if s.agent != nil {
			assertNothingRunning(t, s.agent.stateDir)
		}
	})
	s.agent = startCPAgent(t, cp, s.admin.Token, 6, "gvisor")
	s.key = cp.APIKey(t, s.admin)
	return s
}

// TestAgentReportsItsOwnChanges: a sandbox its agent pauses at its
// timeout shows paused without a reconciliation (the reconciler does not
// run during the test), and traffic through the proxy resumes it.
func TestAgentReportsItsOwnChanges(t *testing.T) {
	s := startParityStack(t)
	cp := s.cp
	created := cp.Must(t, 201, "POST", "/e2b/sandboxes", s.key, map[string]any{
		"templateID": "minimal", "timeout": 3, "autoPause": true, "autoResume": map[string]bool{"enabled": true}}).Map()
	sid, token := created["sandboxID"].(string), created["envdAccessToken"].(string)
	defer cp.Do("DELETE", "/e2b/sandboxes/"+sid, s.key, nil)
	state := func() string {
		return cp.Must(t, 200, "GET", "/e2b/sandboxes/"+sid, s.key, nil).Map()["state"].(string)
	}
	waitfor.True(t, time.Minute, "the timed-out sandbox to show paused", func() bool { return state() == "paused" })
	var v sbView
	_ = cp.Must(t, 200, "GET", "/v1/sandboxes/"+sid, s.key, nil).JSON(&v)
	if v.State != "paused" {
		t.Fatalf("/v1 says %s", v.State)
	}

	req, _ := http.NewRequest("GET", cp.ProxyURL+"/health", nil)
	req.Header.Set("E2b-Sandbox-Id", sid)
	req.Header.Set("E2b-Sandbox-Port", "49983")
	req.Header.Set("X-Access-Token", token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		t.Fatalf("traffic to the paused sandbox: %s", res.Status)
	}
	if st := state(); st != "running" {
		t.Fatalf("after traffic: %s", st)
	}
	// It times out again and is reported again; destroyed on timeout, a
	// sandbox is gone at once too.
	waitfor.True(t, time.Minute, "the resumed sandbox to show paused again", func() bool { return state() == "paused" })
	doomed := cp.Must(t, 201, "POST", "/e2b/sandboxes", s.key, map[string]any{"templateID": "minimal", "timeout": 3}).Map()["sandboxID"].(string)
	waitfor.True(t, time.Minute, "the sandbox killed by its timeout to be gone", func() bool {
		r, _ := cp.Do("GET", "/e2b/sandboxes/"+doomed, s.key, nil)
		return r.Status == 404
	})
	_ = cp.Must(t, 200, "GET", "/v1/sandboxes/"+doomed, s.key, nil).JSON(&v)
	if v.State != "stopped" || v.Error != "" {
		t.Errorf("killed by its timeout: %+v", v)
	}
}

// TestE2BParitySDK runs the official SDK's calls for issue 15's bugs:
// refused create fields, connect that only extends, auto-pause on a short
// timeout seen at once and resumed by traffic.
func TestE2BParitySDK(t *testing.T) {
	sdkDir := requireSDK(t)
	s := startParityStack(t)
	cmd := exec.Command("node", "--test", "--test-concurrency=1", "parity.test.mjs")
	cmd.Dir = sdkDir
	cmd.Env = append(os.Environ(), "E2B_API_URL="+s.cp.URL+"/e2b", "E2B_SANDBOX_URL="+s.cp.ProxyURL, "E2B_API_KEY="+s.key)
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("# fail 0")) || !bytes.Contains(out, []byte("# skipped 0")) {
		t.Fatalf("E2B SDK parity tests: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
