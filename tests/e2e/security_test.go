package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"git.omukk.dev/wrenn/sandbox/internal/cptest"
	"git.omukk.dev/wrenn/sandbox/pkg/config"
)

// secStack is a control plane with one gVisor agent, for the attacks of
// issue 21 that need real sandboxes.
type secStack struct {
	cp    *cptest.CP
	admin cptest.Account
	host  *cpAgent
	log   *syncWriter
}

func startSecStack(t *testing.T, tune func(*config.Config), agentArgs ...string) *secStack {
	t.Helper()
	requireVMs(t)
	if _, err := exec.LookPath("runsc"); err != nil {
		t.Skip("runsc is not installed (scripts/setup builds it)")
	}
	pg := requirePostgres(t)
	secret := make([]byte, 32)
	rand.Read(secret)
	s := &secStack{log: &syncWriter{w: &bytes.Buffer{}}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("control plane log:\n%s", s.log.w.String())
		}
	})
	cp, err := pg.Start(context.Background(), cptest.Options{Secret: secret, Log: slog.New(slog.NewTextHandler(s.log, nil)), Tune: func(c *config.Config) {
		fastClocks(c)
		if tune != nil {
			tune(c)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	s.cp = cp
	s.admin = cp.Admin(t, "admin@example.com")
	s.host = startCPAgent(t, cp, s.admin.Token, 3, "gvisor", agentArgs...)
	return s
}

// sandbox creates a sandbox with key and removes it at the end.
func (s *secStack) sandbox(t *testing.T, key string, body map[string]any) sbView {
	t.Helper()
	sb := sandboxOf(t, s.cp.Must(t, 201, "POST", "/v1/sandboxes", key, body))
	t.Cleanup(func() { _, _ = s.cp.Do("DELETE", "/v1/sandboxes/"+sb.ID, key, nil) })
	return sb
}

func (s *secStack) exec(t *testing.T, key, sandboxID, script string) map[string]any {
	t.Helper()
	return s.cp.Must(t, 200, "POST", "/v1/sandboxes/"+sandboxID+"/exec", key, map[string]any{"cmd": "/bin/sh", "args": []string{"-c", script}, "user": "root"}).Map()
}

// proxied calls port of a sandbox through the sandbox proxy.
func (s *secStack) proxied(t *testing.T, sandboxID string, port int, header map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", s.cp.ProxyURL+"/", nil)
	req.Header.Set("E2b-Sandbox-Id", sandboxID)
	req.Header.Set("E2b-Sandbox-Port", fmt.Sprint(port))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestSecurityControlPlane performs, against a control plane and a real
// agent, the attacks of issue 21 that need a running sandbox, and checks
// that each fails now.
func TestSecurityControlPlane(t *testing.T) {
	s := startSecStack(t, func(c *config.Config) { c.StreamAuthInterval = 300 * time.Millisecond })
	cp := s.cp
	alice := cp.Signup(t, "alice@example.com")
	ka := cp.APIKey(t, alice)

	// Item 12 (and 4, 11): a terminal kept running commands after the key
	// or session that opened it was revoked, or its user deactivated.
	t.Run("streams end with their credential", func(t *testing.T) {
		sb := s.sandbox(t, ka, map[string]any{"timeout_seconds": 600})
		wsURL := "ws" + strings.TrimPrefix(cp.URL, "http") + "/v1/ws/sandboxes/" + sb.ID
		// openPty opens a terminal with cred and checks it answers.
		openPty := func(cred string) *websocket.Conn {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, _, err := websocket.Dial(ctx, wsURL+"/pty?token="+url.QueryEscape(cred), nil)
			if err != nil {
				t.Fatal(err)
			}
			var started map[string]any
			if err := wsjson.Read(ctx, c, &started); err != nil || started["type"] != "started" {
				t.Fatalf("terminal: %v %v", started, err)
			}
			return c
		}
		// ended waits for the server to close c, typing into it meanwhile.
		ended := func(c *websocket.Conn, what string) {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			go func() {
				for ctx.Err() == nil {
					_ = c.Write(ctx, websocket.MessageBinary, []byte("echo still-here\n"))
					time.Sleep(100 * time.Millisecond)
				}
			}()
			for {
				if _, _, err := c.Read(ctx); err != nil {
					if ctx.Err() != nil {
						t.Fatalf("the terminal outlived %s", what)
					}
					if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
						t.Errorf("terminal after %s ended with %v", what, err)
					}
					return
				}
			}
		}
		// A revoked API key.
		key := cp.Must(t, 201, "POST", "/v1/api-keys", alice.Token, map[string]string{"name": "short-lived"}).Map()
		c := openPty(key["key"].(string))
		cp.Must(t, 204, "DELETE", "/v1/api-keys/"+key["id"].(string), alice.Token, nil)
		ended(c, "its key's revocation")
		// A session that logged out.
		login, err := cp.Login(alice.Email)
		if err != nil {
			t.Fatal(err)
		}
		c = openPty(login.Token)
		cp.Must(t, 204, "POST", "/v1/auth/logout", login.Token, nil)
		ended(c, "its session's logout")
		// A user deactivated: their key's exec stream ends too.
		bob := cp.Signup(t, "bob@example.com")
		kb := cp.APIKey(t, bob)
		bsb := s.sandbox(t, kb, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ec, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(cp.URL, "http")+"/v1/ws/sandboxes/"+bsb.ID+"/exec?"+url.Values{"cmd": {"/bin/sh"}, "arg": {"-c", "while :; do echo tick; sleep 0.2; done"}, "token": {kb}}.Encode(), nil)
		if err != nil {
			t.Fatal(err)
		}
		var ev map[string]any
		if err := wsjson.Read(ctx, ec, &ev); err != nil || ev["type"] != "start" {
			t.Fatalf("exec stream: %v %v", ev, err)
		}
		cp.Must(t, 200, "POST", "/v1/admin/users/"+bob.UserID+"/deactivate", s.admin.Token, nil)
		deadline := time.Now().Add(10 * time.Second)
		for {
			if err := wsjson.Read(ctx, ec, &ev); err != nil {
				if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
					t.Errorf("exec stream after deactivation ended with %v", err)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the exec stream outlived its user's deactivation")
			}
		}
		cp.Must(t, 200, "POST", "/v1/admin/users/"+bob.UserID+"/activate", s.admin.Token, nil)
		// Item 11: the sessions were audited when they opened.
		var entries []struct{ Action, Detail string }
		_ = cp.Must(t, 200, "GET", "/v1/audit?resource_id="+sb.ID, alice.Token, nil).JSON(&entries)
		n := 0
		for _, e := range entries {
			if e.Action == "sandbox.pty" {
				n++
			}
		}
		if n != 2 {
			t.Errorf("%d terminal sessions audited, want 2: %+v", n, entries)
		}
	})

	// Item 14: deleting a team left its snapshots' files (memory
	// included) on the host, with no row pointing at them.
	t.Run("team deletion removes snapshot files", func(t *testing.T) {
		carol := cp.Signup(t, "carol@example.com")
		team := cp.Must(t, 201, "POST", "/v1/teams", carol.Token, map[string]string{"name": "doomed"}).Map()["id"].(string)
		cp.Must(t, 200, "POST", "/v1/auth/switch-team", carol.Token, map[string]string{"team_id": team})
		key := cp.Must(t, 201, "POST", "/v1/api-keys", carol.Token, map[string]string{"name": "k"}).Map()["key"].(string)
		sb := s.sandbox(t, key, nil)
		s.exec(t, key, sb.ID, "echo secret > /root/secret")
		snap := cp.Must(t, 201, "POST", "/v1/snapshots", key, map[string]any{"sandbox_id": sb.ID, "name": "keep"}).Map()["id"].(string)
		dir := filepath.Join(s.host.stateDir, "snapshots", snap)
		if _, err := os.Stat(dir); err != nil {
			t.Fatalf("the snapshot's files: %v", err)
		}
		if r, _ := cp.Do("DELETE", "/v1/teams/"+team, carol.Token, nil); r.Status != 409 {
			t.Fatalf("deleting a team with a live sandbox: %s", r)
		}
		cp.Must(t, 204, "DELETE", "/v1/sandboxes/"+sb.ID, key, nil)
		cp.Must(t, 204, "DELETE", "/v1/teams/"+team, carol.Token, nil)
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("the deleted team's snapshot is still on the host: %v", err)
		}
	})

	// Item 13: an unauthenticated request to a private port of a paused
	// sandbox with auto-resume resumed it before the token was checked.
	t.Run("auto-resume checks the token first", func(t *testing.T) {
		sb := s.sandbox(t, ka, map[string]any{"auto_resume": true, "allow_public_traffic": false, "timeout_seconds": 600})
		traffic := cp.Must(t, 200, "GET", "/v1/sandboxes/"+sb.ID, ka, nil).Map()["traffic_access_token"].(string)
		s.exec(t, ka, sb.ID, "mkdir -p /tmp/www && echo hello-private > /tmp/www/index.html && busybox httpd -p 8000 -h /tmp/www")
		cp.Must(t, 200, "POST", "/v1/sandboxes/"+sb.ID+"/pause", ka, nil)
		state := func() string { return sandboxOf(t, cp.Must(t, 200, "GET", "/v1/sandboxes/"+sb.ID, ka, nil)).State }
		for _, h := range []map[string]string{nil, {"E2b-Traffic-Access-Token": "wrong"}} {
			if st, body := s.proxied(t, sb.ID, 8000, h); st != 403 || !strings.Contains(body, "traffic_token_required") {
				t.Errorf("private port of a paused sandbox without its token: %d %s", st, body)
			}
		}
		// envd's port resumes it only with envd's token.
		if st, body := s.proxied(t, sb.ID, 49983, nil); st != 502 || !strings.Contains(body, "sandbox_paused") {
			t.Errorf("envd's port of a paused sandbox without its token: %d %s", st, body)
		}
		if got := state(); got != "paused" {
			t.Fatalf("an unauthenticated request resumed the sandbox: %s", got)
		}
		if st, body := s.proxied(t, sb.ID, 8000, map[string]string{"E2b-Traffic-Access-Token": traffic}); st != 200 || !strings.Contains(body, "hello-private") {
			t.Errorf("with its token: %d %s", st, body)
		}
		if got := state(); got != "running" {
			t.Errorf("the token holder's request did not resume it: %s", got)
		}
	})
}
