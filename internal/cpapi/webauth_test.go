package cpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/cptest"
	"git.omukk.dev/wrenn/sandbox/internal/githubauth/githubtest"
	"git.omukk.dev/wrenn/sandbox/pkg/config"
)

// browser is an HTTP client with a cookie jar that does not follow
// redirects, so each hop of a flow can be checked.
type browser struct {
	*http.Client
	base string
	csrf string
}

func newBrowser(t *testing.T, base string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{base: base, Client: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(t *testing.T, method, target string, body any) (*http.Response, map[string]any) {
	t.Helper()
	if strings.HasPrefix(target, "/") {
		target = b.base + target
	}
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, target, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if b.csrf != "" {
		req.Header.Set("X-CSRF-Token", b.csrf)
	}
	res, err := b.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	return res, m
}

func cookieNamed(res *http.Response, name string) *http.Cookie {
	for _, c := range res.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// logBuffer collects a control plane's log, to check what it never says.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func TestBrowserSessionCookieAndCSRF(t *testing.T) {
	cp := startCP(t, nil)
	cp.Signup(t, "web@example.com")
	b := newBrowser(t, cp.URL)

	res, body := b.do(t, "GET", "/v1/auth/session", nil)
	if res.StatusCode != 200 || body["authenticated"] != false {
		t.Fatalf("without a cookie: %d %v", res.StatusCode, body)
	}
	res, body = b.do(t, "POST", "/v1/auth/login", map[string]string{"email": "web@example.com", "password": "correct horse battery", "session": "cookie"})
	ck := cookieNamed(res, "wrenn_session")
	if res.StatusCode != 200 || ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure || ck.Path != "/" {
		t.Fatalf("cookie sign-in: %d %+v", res.StatusCode, ck)
	}
	if _, has := body["token"]; has || body["csrf_token"] == "" {
		t.Fatalf("a cookie sign-in answers with the CSRF token, never the session: %v", body)
	}
	csrf := body["csrf_token"].(string)

	// The cookie alone does not authenticate: the CSRF token must come too.
	if res, body := b.do(t, "GET", "/v1/sandboxes", nil); res.StatusCode != 403 || body["code"] != "csrf" {
		t.Errorf("no CSRF token: %d %v", res.StatusCode, body)
	}
	b.csrf = "wrong"
	if res, _ := b.do(t, "GET", "/v1/sandboxes", nil); res.StatusCode != 403 {
		t.Errorf("wrong CSRF token: %d", res.StatusCode)
	}
	b.csrf = csrf
	if res, _ := b.do(t, "GET", "/v1/sandboxes", nil); res.StatusCode != 200 {
		t.Errorf("cookie and CSRF token: %d", res.StatusCode)
	}
	res, body = b.do(t, "GET", "/v1/auth/session", nil)
	me, _ := body["me"].(map[string]any)
	if body["authenticated"] != true || body["csrf_token"] != csrf || me == nil || me["has_password"] != true {
		t.Fatalf("session: %v", body)
	}

	// Signing up in the browser works the same way.
	b2 := newBrowser(t, cp.URL)
	res, body = b2.do(t, "POST", "/v1/auth/signup", map[string]string{"email": "web2@example.com", "password": "correct horse battery", "session": "cookie"})
	if res.StatusCode != 201 || cookieNamed(res, "wrenn_session") == nil || body["token"] != nil {
		t.Errorf("cookie sign-up: %d %v", res.StatusCode, body)
	}
	if res, _ := b2.do(t, "POST", "/v1/auth/login", map[string]string{"email": "web2@example.com", "password": "correct horse battery", "session": "jar"}); res.StatusCode != 400 {
		t.Errorf("unknown session mode: %d", res.StatusCode)
	}

	// Sign-out ends the session and clears the cookie.
	res, _ = b.do(t, "POST", "/v1/auth/logout", nil)
	if c := cookieNamed(res, "wrenn_session"); res.StatusCode != 204 || c == nil || c.MaxAge >= 0 {
		t.Fatalf("logout: %d %+v", res.StatusCode, c)
	}
	if _, body := b.do(t, "GET", "/v1/auth/session", nil); body["authenticated"] != false {
		t.Errorf("after logout: %v", body)
	}

	// Over https (WRENN_PUBLIC_URL) the cookie is Secure.
	secure := startCP(t, func(c *config.Config) { c.PublicURL = "https://wrenn.example.com" })
	secure.Signup(t, "s@example.com")
	res, _ = newBrowser(t, secure.URL).do(t, "POST", "/v1/auth/login", map[string]string{"email": "s@example.com", "password": "correct horse battery", "session": "cookie"})
	if c := cookieNamed(res, "wrenn_session"); c == nil || !c.Secure {
		t.Errorf("https installation: %+v", c)
	}
}

func TestChangePasswordAndProfile(t *testing.T) {
	cp := startCP(t, nil)
	a := cp.Signup(t, "pw@example.com")
	other := cp.Must(t, 200, "POST", "/v1/auth/login", "", map[string]string{"email": "pw@example.com", "password": "correct horse battery"}).Map()["token"].(string)

	if r := cp.Must(t, 403, "POST", "/v1/auth/password", a.Token, map[string]string{"current_password": "wrong one!", "new_password": "brand new secret"}); r.Code() != "forbidden" {
		t.Errorf("wrong current password: %s", r)
	}
	cp.Must(t, 400, "POST", "/v1/auth/password", a.Token, map[string]string{"current_password": "correct horse battery", "new_password": "short"})
	cp.Must(t, 204, "POST", "/v1/auth/password", a.Token, map[string]string{"current_password": "correct horse battery", "new_password": "brand new secret"})
	cp.Must(t, 200, "GET", "/v1/auth/me", a.Token, nil)
	cp.Must(t, 401, "GET", "/v1/auth/me", other, nil)
	cp.Must(t, 401, "POST", "/v1/auth/login", "", map[string]string{"email": "pw@example.com", "password": "correct horse battery"})
	cp.Must(t, 200, "POST", "/v1/auth/login", "", map[string]string{"email": "pw@example.com", "password": "brand new secret"})

	if r := cp.Must(t, 200, "PATCH", "/v1/auth/me", a.Token, map[string]string{"name": "  Ada  "}); r.Map()["name"] != "Ada" {
		t.Errorf("profile: %s", r)
	}
	cp.Must(t, 400, "PATCH", "/v1/auth/me", a.Token, map[string]string{"name": " "})
	key := cp.APIKey(t, a)
	cp.Must(t, 400, "POST", "/v1/auth/password", key, map[string]string{"new_password": "brand new secret"})
}

func TestAuthProviders(t *testing.T) {
	cp := startCP(t, func(c *config.Config) { c.AllowSignup = false })
	if m := cp.Must(t, 200, "GET", "/v1/auth/providers", "", nil).Map(); m["signup"] != false || m["github"] != false || m["password"] != true {
		t.Errorf("providers: %v", m)
	}
	// GitHub sign-in that is not configured says so on the sign-in page.
	res, _ := newBrowser(t, cp.URL).do(t, "GET", "/v1/auth/github/login", nil)
	if res.StatusCode != 302 || res.Header.Get("Location") != "/sign-in?error=github_disabled" {
		t.Errorf("unconfigured GitHub: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
}

// githubCP is a control plane whose GitHub is gh.
func githubCP(t *testing.T, gh *githubtest.Server, logs io.Writer, tune func(*config.Config)) *cptest.CP {
	t.Helper()
	cp, err := pg.Start(context.Background(), cptest.Options{Log: slog.New(slog.NewTextHandler(logs, nil)), Tune: func(c *config.Config) {
		c.GitHubClientID, c.GitHubClientSecret, c.GitHubURL, c.GitHubAPIURL = gh.ClientID, gh.ClientSecret, gh.URL, gh.URL
		if tune != nil {
			tune(c)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	return cp
}

// githubFlow walks a browser through GitHub's consent (approve or deny)
// from start (a sign-in navigation or a link URL) and returns where the
// control plane sent it back to.
func githubFlow(t *testing.T, b *browser, start string, approve bool, tamper func(url.Values)) string {
	t.Helper()
	authorize := start
	if strings.HasPrefix(start, "/") {
		res, _ := b.do(t, "GET", start, nil)
		if res.StatusCode != 302 {
			t.Fatalf("start: %d", res.StatusCode)
		}
		authorize = res.Header.Get("Location")
	}
	u, _ := url.Parse(authorize)
	q := u.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("state") == "" || !strings.HasSuffix(q.Get("redirect_uri"), "/v1/auth/github/callback") ||
		!strings.Contains(q.Get("scope"), "user:email") {
		t.Fatalf("authorize URL lacks PKCE, state, callback or scope: %s", authorize)
	}
	form := url.Values{}
	for k := range q {
		form.Set(k, q.Get(k))
	}
	form.Set("decision", map[bool]string{true: "approve", false: "deny"}[approve])
	res, err := b.PostForm(u.Scheme+"://"+u.Host+u.Path, form)
	if err != nil || res.StatusCode != 302 {
		t.Fatalf("consent: %v %v", err, res)
	}
	res.Body.Close()
	back, _ := url.Parse(res.Header.Get("Location"))
	if tamper != nil {
		bq := back.Query()
		tamper(bq)
		back.RawQuery = bq.Encode()
	}
	res, _ = b.do(t, "GET", back.String(), nil)
	if res.StatusCode != 302 {
		t.Fatalf("callback: %d", res.StatusCode)
	}
	return res.Header.Get("Location")
}

func TestGitHubSignIn(t *testing.T) {
	gh := githubtest.Start("client-1", "secret-1", githubtest.User{ID: 7, Login: "ada", Name: "Ada", Emails: []githubtest.Email{{Email: "ada@example.com", Primary: true, Verified: true}}})
	defer gh.Close()
	logs := &logBuffer{}
	cp := githubCP(t, gh, logs, nil)
	ada := cp.Signup(t, "ada@example.com")

	// An existing user is found by GitHub's verified primary email.
	b := newBrowser(t, cp.URL)
	if got := githubFlow(t, b, "/v1/auth/github/login", true, nil); got != "/sign-in?github=complete" {
		t.Fatalf("landed on %s", got)
	}
	res, body := b.do(t, "POST", "/v1/auth/github/exchange", nil)
	if res.StatusCode != 200 || cookieNamed(res, "wrenn_session") == nil || body["csrf_token"] == nil {
		t.Fatalf("exchange: %d %v", res.StatusCode, body)
	}
	if res, _ := b.do(t, "POST", "/v1/auth/github/exchange", nil); res.StatusCode != 401 {
		t.Errorf("a second exchange: %d, want 401 (one-time)", res.StatusCode)
	}
	_, body = b.do(t, "GET", "/v1/auth/session", nil)
	me := body["me"].(map[string]any)
	if me["user"].(map[string]any)["id"] != ada.UserID || me["github"].(map[string]any)["login"] != "ada" {
		t.Fatalf("signed in as %v", me)
	}
	// The handoff cookie cannot be replayed from another browser either.
	if res, _ := newBrowser(t, cp.URL).do(t, "POST", "/v1/auth/github/exchange", nil); res.StatusCode != 401 {
		t.Errorf("exchange without the cookie: %d", res.StatusCode)
	}

	// Failures land on the sign-in page with a reason.
	for _, c := range []struct {
		name    string
		approve bool
		tamper  func(url.Values)
		setup   func()
		want    string
	}{
		{"denied", false, nil, nil, "github_denied"},
		{"state changed", true, func(q url.Values) { q.Set("state", "forged") }, nil, "github_state"},
		{"code changed", true, func(q url.Values) { q.Set("code", "0123456789") }, nil, "github_code"},
		{"code expired", true, nil, func() { gh.SetCodeTTL(-time.Second) }, "github_code"},
	} {
		if c.setup != nil {
			c.setup()
		}
		if got := githubFlow(t, newBrowser(t, cp.URL), "/v1/auth/github/login", c.approve, c.tamper); got != "/sign-in?error="+c.want {
			t.Errorf("%s: landed on %s", c.name, got)
		}
		gh.SetCodeTTL(10 * time.Minute)
	}
	// A callback in a browser that never started the flow.
	stranger := newBrowser(t, cp.URL)
	res, _ = stranger.do(t, "GET", "/v1/auth/github/callback?code=abc&state=def", nil)
	if loc := res.Header.Get("Location"); loc != "/sign-in?error=github_state" {
		t.Errorf("callback without a flow: %s", loc)
	}

	// An unverified email links to no one and makes no account.
	gh.SignIn(githubtest.User{ID: 8, Login: "mallory", Emails: []githubtest.Email{{Email: "ada@example.com", Primary: true, Verified: false}}})
	if got := githubFlow(t, newBrowser(t, cp.URL), "/v1/auth/github/login", true, nil); got != "/sign-in?error=github_no_email" {
		t.Errorf("unverified email: %s", got)
	}
	// A new verified email makes an account (sign-up is on), without a password.
	gh.SignIn(githubtest.User{ID: 9, Login: "grace", Name: "Grace", Emails: []githubtest.Email{{Email: "other@example.com", Primary: false, Verified: true}, {Email: "grace@example.com", Primary: true, Verified: true}}})
	g := newBrowser(t, cp.URL)
	if got := githubFlow(t, g, "/v1/auth/github/login", true, nil); got != "/sign-in?github=complete" {
		t.Fatalf("new user: %s", got)
	}
	_, body = g.do(t, "POST", "/v1/auth/github/exchange", nil)
	g.csrf = body["csrf_token"].(string)
	_, body = g.do(t, "GET", "/v1/auth/session", nil)
	me = body["me"].(map[string]any)
	if me["user"].(map[string]any)["email"] != "grace@example.com" || me["has_password"] != false || len(me["teams"].([]any)) != 1 {
		t.Fatalf("new user: %v", me)
	}
	// Without a password, GitHub stays connected; with one it can go.
	if res, body := g.do(t, "DELETE", "/v1/auth/github", nil); res.StatusCode != 409 {
		t.Errorf("disconnect the only way in: %d %v", res.StatusCode, body)
	}
	if res, _ := g.do(t, "POST", "/v1/auth/password", map[string]string{"new_password": "grace's new password"}); res.StatusCode != 204 {
		t.Fatalf("set a first password: %d", res.StatusCode)
	}
	if res, _ := g.do(t, "DELETE", "/v1/auth/github", nil); res.StatusCode != 204 {
		t.Errorf("disconnect: %d", res.StatusCode)
	}

	// Connecting from Settings: the signed-in user links the GitHub account
	// signed in at GitHub; one GitHub account links to one user.
	gh.SignIn(githubtest.User{ID: 9, Login: "grace", Emails: []githubtest.Email{{Email: "grace@example.com", Primary: true, Verified: true}}})
	res, body = g.do(t, "POST", "/v1/auth/github/link", nil)
	if res.StatusCode != 200 {
		t.Fatalf("link: %d %v", res.StatusCode, body)
	}
	if got := githubFlow(t, g, body["url"].(string), true, nil); got != "/settings?github=connected" {
		t.Fatalf("link landed on %s", got)
	}
	ab := newBrowser(t, cp.URL)
	_, body = ab.do(t, "POST", "/v1/auth/login", map[string]string{"email": "ada@example.com", "password": "correct horse battery", "session": "cookie"})
	ab.csrf = body["csrf_token"].(string)
	_, body = ab.do(t, "POST", "/v1/auth/github/link", nil)
	if got := githubFlow(t, ab, body["url"].(string), true, nil); got != "/settings?error=github_github_taken" {
		t.Errorf("grace's GitHub account for ada: %s", got)
	}
	gh.SignIn(githubtest.User{ID: 12, Login: "ada-alt", Emails: []githubtest.Email{{Email: "alt@example.com", Primary: true, Verified: true}}})
	_, body = ab.do(t, "POST", "/v1/auth/github/link", nil)
	if got := githubFlow(t, ab, body["url"].(string), true, nil); got != "/settings?error=github_already_linked" {
		t.Errorf("a second GitHub account for ada: %s", got)
	}
	if res, _ := newBrowser(t, cp.URL).do(t, "POST", "/v1/auth/github/link", nil); res.StatusCode != 401 {
		t.Errorf("link without a session: %d", res.StatusCode)
	}

	// Nothing secret reaches the log; failures are logged with the IP.
	log := logs.String()
	if strings.Contains(log, "gho_") || strings.Contains(log, "secret-1") {
		t.Errorf("a token or the client secret is in the log:\n%s", log)
	}
	if !strings.Contains(log, "GitHub sign-in failed") || !strings.Contains(log, "ip=127.0.0.1") {
		t.Errorf("failures are not logged with the IP:\n%s", log)
	}
}

func TestGitHubSignInWithSignupClosed(t *testing.T) {
	gh := githubtest.Start("client-2", "secret-2", githubtest.User{ID: 11, Login: "newcomer", Emails: []githubtest.Email{{Email: "new@example.com", Primary: true, Verified: true}}})
	defer gh.Close()
	cp := githubCP(t, gh, io.Discard, func(c *config.Config) { c.AllowSignup = false })
	if got := githubFlow(t, newBrowser(t, cp.URL), "/v1/auth/github/login", true, nil); got != "/sign-in?error=github_no_account" {
		t.Errorf("sign-up closed: %s", got)
	}
}
