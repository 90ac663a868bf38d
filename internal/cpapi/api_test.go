package cpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/hostca"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"git.omukk.dev/wrenn/sandbox/internal/cptest"
	"git.omukk.dev/wrenn/sandbox/pkg/config"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
)

func startCP(t *testing.T, tune func(*config.Config)) *cptest.CP {
	t.Helper()
	cp, err := pg.Start(context.Background(), cptest.Options{Tune: tune})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("control plane stop: %v", err)
		}
	})
	return cp
}

func TestAuth(t *testing.T) {
	cp := startCP(t, nil)
	admin := cp.Admin(t, "admin@example.com")
	user := cp.Signup(t, "user@example.com")

	var me struct {
		User  struct{ Admin bool }
		Teams []struct{ ID, Role string }
	}
	if err := cp.Must(t, 200, "GET", "/v1/auth/me", admin.Token, nil).JSON(&me); err != nil || !me.User.Admin || len(me.Teams) != 1 {
		t.Fatalf("admin made on the host: %+v %v", me, err)
	}
	if err := cp.Must(t, 200, "GET", "/v1/auth/me", user.Token, nil).JSON(&me); err != nil || me.User.Admin || len(me.Teams) != 1 || me.Teams[0].Role != "owner" {
		t.Fatalf("second account: %+v %v", me, err)
	}

	for _, c := range []struct {
		name string
		body any
		want int
		code string
	}{
		{"duplicate email", map[string]string{"email": "USER@example.com", "password": "long enough pw"}, 409, "conflict"},
		{"bad email", map[string]string{"email": "not-an-email", "password": "long enough pw"}, 400, "invalid_argument"},
		{"short password", map[string]string{"email": "x@example.com", "password": "short"}, 400, "invalid_argument"},
		{"unknown field", map[string]any{"email": "y@example.com", "password": "long enough pw", "admin": true}, 400, "invalid_argument"},
		{"not JSON", []byte("email=x"), 415, "unsupported_media_type"},
	} {
		r, _ := cp.Do("POST", "/v1/auth/signup", "", c.body)
		if r.Status != c.want || r.Code() != c.code {
			t.Errorf("signup %s: want %d %s, got %s", c.name, c.want, c.code, r)
		}
	}

	if r, _ := cp.Do("POST", "/v1/auth/login", "", map[string]string{"email": "user@example.com", "password": "wrong password"}); r.Status != 401 {
		t.Errorf("wrong password: %s", r)
	}
	if r, _ := cp.Do("POST", "/v1/auth/login", "", map[string]string{"email": "nobody@example.com", "password": "whatever123"}); r.Status != 401 || !strings.Contains(r.String(), "wrong email or password") {
		t.Errorf("unknown email: %s", r)
	}
	login := cp.Must(t, 200, "POST", "/v1/auth/login", "", map[string]string{"email": "user@example.com", "password": "correct horse battery"})
	tok, _ := login.Map()["token"].(string)
	cp.Must(t, 200, "GET", "/v1/auth/me", tok, nil)
	cp.Must(t, 204, "POST", "/v1/auth/logout", tok, nil)
	if r, _ := cp.Do("GET", "/v1/auth/me", tok, nil); r.Status != 401 {
		t.Errorf("session works after logout: %s", r)
	}
	// The other session of the same user is untouched.
	cp.Must(t, 200, "GET", "/v1/auth/me", user.Token, nil)

	// Tampered and foreign tokens.
	parts := strings.Split(user.Token, ".")
	for name, bad := range map[string]string{
		"tampered signature": parts[0] + "." + parts[1] + ".AAAA",
		"garbage key":        "e2b_0000000000000000000000000000000000000000",
		"none alg":           "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + ".",
	} {
		if r, _ := cp.Do("GET", "/v1/sandboxes", bad, nil); r.Status != 401 || r.Code() != "unauthenticated" {
			t.Errorf("%s: %s", name, r)
		}
	}

	// Expired sessions: a control plane with a 1 s session lifetime.
	short := startCP(t, func(c *config.Config) { c.SessionTTL = time.Second })
	a := short.Signup(t, "short@example.com")
	time.Sleep(1500 * time.Millisecond)
	if r, _ := short.Do("GET", "/v1/auth/me", a.Token, nil); r.Status != 401 {
		t.Errorf("expired session accepted: %s", r)
	}
}

func TestAPIKeys(t *testing.T) {
	cp := startCP(t, nil)
	a := cp.Signup(t, "a@example.com")
	r := cp.Must(t, 201, "POST", "/v1/api-keys", a.Token, map[string]string{"name": "ci"})
	var k struct{ ID, Key, Prefix string }
	_ = r.JSON(&k)
	if !strings.HasPrefix(k.Key, "e2b_") || len(k.Key) != 44 || !strings.HasPrefix(k.Key, k.Prefix) {
		t.Fatalf("key shape: %+v", k)
	}
	// The key works, by bearer and by X-API-Key, and is never shown again.
	cp.Must(t, 200, "GET", "/v1/sandboxes", k.Key, nil)
	req, _ := http.NewRequest("GET", cp.URL+"/v1/sandboxes", nil)
	req.Header.Set("X-API-Key", k.Key)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 200 {
		t.Fatalf("X-API-Key: %v %v", res, err)
	}
	list := cp.Must(t, 200, "GET", "/v1/api-keys", a.Token, nil)
	if strings.Contains(string(list.Body), k.Key) || !strings.Contains(string(list.Body), k.Prefix) {
		t.Fatalf("listing: %s", list.Body)
	}
	// It was used: last_used_at is set.
	var keys []struct {
		LastUsedAt *time.Time `json:"last_used_at"`
	}
	_ = list.JSON(&keys)
	if len(keys) != 1 || keys[0].LastUsedAt == nil {
		t.Errorf("last used not recorded: %s", list.Body)
	}
	// An API key acts as a member: it cannot mint keys or manage the team.
	if r, _ := cp.Do("POST", "/v1/api-keys", k.Key, map[string]string{"name": "x"}); r.Status != 403 {
		t.Errorf("key minted a key: %s", r)
	}
	cp.Must(t, 204, "DELETE", "/v1/api-keys/"+k.ID, a.Token, nil)
	if r, _ := cp.Do("GET", "/v1/sandboxes", k.Key, nil); r.Status != 401 {
		t.Errorf("revoked key works: %s", r)
	}
	if r, _ := cp.Do("DELETE", "/v1/api-keys/"+k.ID, a.Token, nil); r.Status != 404 {
		t.Errorf("revoke twice: %s", r)
	}
	// Only the hash is stored.
	conn, err := pgx.Connect(context.Background(), cp.Config.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM api_keys WHERE encode(hash, 'escape') LIKE '%' || $1 || '%'", k.Key[4:]).Scan(&n); err != nil || n != 0 {
		t.Errorf("the key is stored in clear: %d %v", n, err)
	}
}

func TestTeamsAndMembers(t *testing.T) {
	cp := startCP(t, nil)
	owner := cp.Signup(t, "owner@example.com")
	bob := cp.Signup(t, "bob@example.com")
	carol := cp.Signup(t, "carol@example.com")

	team := cp.Must(t, 201, "POST", "/v1/teams", owner.Token, map[string]string{"name": "research"}).Map()
	tid := team["id"].(string)
	cp.Must(t, 200, "PATCH", "/v1/teams/"+tid, owner.Token, map[string]string{"name": "research-2"})
	invite := func(by, email string) string {
		t.Helper()
		return cp.Must(t, 201, "POST", "/v1/teams/"+tid+"/invitations", by, map[string]string{"email": email}).Map()["id"].(string)
	}
	join := func(who cptest.Account) {
		t.Helper()
		var invs []struct{ ID, Role string }
		_ = cp.Must(t, 200, "GET", "/v1/invitations", who.Token, nil).JSON(&invs)
		if len(invs) != 1 || invs[0].Role != "member" {
			t.Fatalf("%s's invitations: %+v", who.Email, invs)
		}
		cp.Must(t, 200, "POST", "/v1/invitations/"+invs[0].ID+"/accept", who.Token, nil)
	}
	invite(owner.Token, "bob@example.com")
	if r, _ := cp.Do("POST", "/v1/teams/"+tid+"/invitations", owner.Token, map[string]string{"email": "bob@example.com"}); r.Status != 409 {
		t.Errorf("invite twice: %s", r)
	}
	join(bob)
	if r, _ := cp.Do("POST", "/v1/teams/"+tid+"/invitations", owner.Token, map[string]string{"email": "bob@example.com"}); r.Status != 409 {
		t.Errorf("invite a member: %s", r)
	}
	// A member sees the team but cannot manage it; an outsider gets 404.
	cp.Must(t, 200, "GET", "/v1/teams/"+tid, bob.Token, nil)
	if r, _ := cp.Do("PATCH", "/v1/teams/"+tid, bob.Token, map[string]string{"name": "mine"}); r.Status != 403 {
		t.Errorf("member renamed: %s", r)
	}
	for _, path := range []string{"/v1/teams/" + tid, "/v1/teams/" + tid + "/members"} {
		if r, _ := cp.Do("GET", path, carol.Token, nil); r.Status != 404 {
			t.Errorf("outsider GET %s: %s", path, r)
		}
	}
	if r, _ := cp.Do("DELETE", "/v1/teams/"+tid, carol.Token, nil); r.Status != 404 {
		t.Errorf("outsider deletes team: %s", r)
	}
	// Switch bob's session into the team and promote him to admin.
	cp.Must(t, 200, "POST", "/v1/auth/switch-team", bob.Token, map[string]string{"team_id": tid})
	if r, _ := cp.Do("POST", "/v1/auth/switch-team", carol.Token, map[string]string{"team_id": tid}); r.Status != 404 {
		t.Errorf("outsider switched in: %s", r)
	}
	cp.Must(t, 204, "PATCH", "/v1/teams/"+tid+"/members/"+bob.UserID, owner.Token, map[string]string{"role": "admin"})
	invite(bob.Token, "carol@example.com")
	join(carol)
	// An admin cannot make owners, and the last owner stays.
	if r, _ := cp.Do("PATCH", "/v1/teams/"+tid+"/members/"+carol.UserID, bob.Token, map[string]string{"role": "owner"}); r.Status != 403 {
		t.Errorf("admin made an owner: %s", r)
	}
	if r, _ := cp.Do("PATCH", "/v1/teams/"+tid+"/members/"+owner.UserID, owner.Token, map[string]string{"role": "member"}); r.Status != 409 {
		t.Errorf("last owner demoted: %s", r)
	}
	if r, _ := cp.Do("PATCH", "/v1/teams/"+tid+"/members/"+carol.UserID, owner.Token, map[string]string{"role": "emperor"}); r.Status != 400 {
		t.Errorf("bad role: %s", r)
	}
	// Carol leaves by herself; bob cannot delete the team (owner only).
	cp.Must(t, 204, "DELETE", "/v1/teams/"+tid+"/members/"+carol.UserID, carol.Token, nil)
	if r, _ := cp.Do("DELETE", "/v1/teams/"+tid, bob.Token, nil); r.Status != 403 {
		t.Errorf("admin deleted team: %s", r)
	}
	var members []struct{ Email string }
	_ = cp.Must(t, 200, "GET", "/v1/teams/"+tid+"/members", owner.Token, nil).JSON(&members)
	if len(members) != 2 {
		t.Errorf("members: %+v", members)
	}
	cp.Must(t, 204, "DELETE", "/v1/teams/"+tid, owner.Token, nil)
	if r, _ := cp.Do("GET", "/v1/teams/"+tid, owner.Token, nil); r.Status != 404 {
		t.Errorf("deleted team: %s", r)
	}
	// Bob's session pointed at the deleted team: he has no active team now.
	if r, _ := cp.Do("GET", "/v1/sandboxes", bob.Token, nil); r.Status != 403 {
		t.Errorf("no active team: %s", r)
	}
}

func TestBadInput(t *testing.T) {
	cp := startCP(t, func(c *config.Config) { c.MaxBodyBytes = 4096 })
	cp.Admin(t, "admin@example.com")
	a := cp.Signup(t, "a@example.com")
	for _, c := range []struct {
		method, path string
		body         any
		want         int
		code         string
	}{
		{"GET", "/v1/sandboxes/not-an-id", nil, 400, "invalid_id"},
		{"GET", "/v1/sandboxes/team-" + strings.Repeat("0", 32), nil, 400, "invalid_id"},
		{"GET", "/v1/sandboxes/" + id.Format(id.Sandbox, uuid.New()), nil, 404, "not_found"},
		{"DELETE", "/v1/sandboxes/" + id.Format(id.Sandbox, uuid.New()), nil, 404, "not_found"},
		{"GET", "/v1/snapshots/" + id.Format(id.Snapshot, uuid.New()), nil, 404, "not_found"},
		{"POST", "/v1/sandboxes", map[string]any{"vcpus": 99}, 400, "invalid_argument"},
		{"POST", "/v1/sandboxes", map[string]any{"memory_mib": 1}, 400, "invalid_argument"},
		{"POST", "/v1/sandboxes", map[string]any{"template": "../etc"}, 400, "invalid_argument"},
		{"POST", "/v1/sandboxes", map[string]any{"on_timeout": "explode"}, 400, "invalid_argument"},
		{"POST", "/v1/sandboxes", map[string]any{"snapshot_id": "snap-x"}, 400, "invalid_id"},
		{"POST", "/v1/sandboxes", map[string]any{"metadata": map[string]string{"k": strings.Repeat("v", 8000)}}, 413, "body_too_large"},
		{"POST", "/v1/sandboxes", `{"template":`, 400, "invalid_argument"},
		{"POST", "/v1/sandboxes", map[string]any{}, 503, "no_capacity"},
		{"GET", "/v1/sandboxes?state=bogus", nil, 400, "invalid_argument"},
		{"GET", "/v1/sandboxes?limit=-1", nil, 400, "invalid_argument"},
		{"GET", "/v1/audit?before=yesterday", nil, 400, "invalid_argument"},
		{"GET", "/v1/no-such-route", nil, 404, "not_found"},
		{"PUT", "/v1/sandboxes", nil, 405, "method_not_allowed"},
		{"GET", "/v1/hosts", nil, 403, "forbidden"},
	} {
		body := c.body
		if s, ok := body.(string); ok {
			body = json.RawMessage(s)
		}
		r, err := cp.Do(c.method, c.path, a.Token, body)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != c.want || r.Code() != c.code {
			t.Errorf("%s %s: want %d %s, got %s", c.method, c.path, c.want, c.code, r)
		}
	}
}

// TestNoUnauthenticatedRoute sends every authenticated route a request
// without credentials, and again with a spoofed WebSocket upgrade: all
// must be 401.
func TestNoUnauthenticatedRoute(t *testing.T) {
	cp := startCP(t, nil)
	public := map[string]bool{
		"GET /health": true, "GET /healthz": true, "GET /readyz": true, "GET /openapi.yaml": true, "GET /docs": true, "GET /docs/*": true,
		"POST /v1/auth/signup": true, "POST /v1/auth/login": true, "POST /v1/hosts/register": true,
		// The sign-in page's: what it offers, whether the browser has a
		// session, and GitHub's browser redirects.
		"GET /v1/auth/providers": true, "GET /v1/auth/session": true, "GET /v1/auth/github/login": true, "GET /v1/auth/github/callback": true,
	}
	sb := id.Format(id.Sandbox, uuid.New())
	fill := strings.NewReplacer("{sandboxID}", sb, "{teamID}", id.Format(id.Team, uuid.New()), "{userID}", id.Format(id.User, uuid.New()),
		"{keyID}", id.Format(id.APIKey, uuid.New()), "{snapshotID}", id.Format(id.Snapshot, uuid.New()), "{hostID}", id.Format(id.Host, uuid.New()))
	n := 0
	for _, route := range specRoutes(t) {
		if public[route] {
			continue
		}
		method, path, _ := strings.Cut(route, " ")
		for _, upgrade := range []bool{false, true} {
			req, _ := http.NewRequest(method, cp.URL+fill.Replace(path)+"?path=/etc/passwd&cmd=id", nil)
			if upgrade {
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", "websocket")
				req.Header.Set("Sec-WebSocket-Version", "13")
				req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s (upgrade %v) without credentials: %d", route, upgrade, res.StatusCode)
			}
			n++
		}
	}
	if n < 90 {
		t.Fatalf("only %d requests made", n)
	}
}

func TestRateLimitedAuth(t *testing.T) {
	cp := startCP(t, func(c *config.Config) { c.AuthRatePerMinute = 3 })
	statuses := []int{}
	for range 5 {
		r, _ := cp.Do("POST", "/v1/auth/login", "", map[string]string{"email": "x@example.com", "password": "whatever123"})
		statuses = append(statuses, r.Status)
	}
	if statuses[0] != 401 || statuses[4] != 429 {
		t.Fatalf("statuses %v: want 401s then 429", statuses)
	}
	r, _ := cp.Do("POST", "/v1/auth/login", "", map[string]string{"email": "x@example.com", "password": "whatever123"})
	if r.Code() != "rate_limited" {
		t.Errorf("limited response: %s", r)
	}
}

func TestAdmin(t *testing.T) {
	cp := startCP(t, nil)
	admin := cp.Admin(t, "root@example.com")
	u := cp.Signup(t, "u@example.com")
	if r, _ := cp.Do("GET", "/v1/admin/users", u.Token, nil); r.Status != 403 {
		t.Errorf("non-admin lists users: %s", r)
	}
	var users []struct{ Email string }
	_ = cp.Must(t, 200, "GET", "/v1/admin/users", admin.Token, nil).JSON(&users)
	if len(users) != 2 {
		t.Fatalf("users: %+v", users)
	}
	cp.Must(t, 200, "POST", "/v1/admin/users/"+u.UserID+"/deactivate", admin.Token, nil)
	if r, _ := cp.Do("GET", "/v1/auth/me", u.Token, nil); r.Status != 401 {
		t.Errorf("deactivated user's session works: %s", r)
	}
	if r, _ := cp.Do("POST", "/v1/auth/login", "", map[string]string{"email": "u@example.com", "password": "correct horse battery"}); r.Status != 403 {
		t.Errorf("deactivated user logs in: %s", r)
	}
	if r, _ := cp.Do("POST", "/v1/admin/users/"+admin.UserID+"/deactivate", admin.Token, nil); r.Status != 409 {
		t.Errorf("admin deactivated themself: %s", r)
	}
	cp.Must(t, 200, "POST", "/v1/admin/users/"+u.UserID+"/activate", admin.Token, nil)
	relogin := cp.Must(t, 200, "POST", "/v1/auth/login", "", map[string]string{"email": "u@example.com", "password": "correct horse battery"})
	u.Token, _ = relogin.Map()["token"].(string)
	var teams []struct{ Name string }
	_ = cp.Must(t, 200, "GET", "/v1/admin/teams", admin.Token, nil).JSON(&teams)
	if len(teams) != 3 { // platform + two personal teams
		t.Errorf("teams: %+v", teams)
	}
	cp.Must(t, 200, "GET", "/v1/admin/sandboxes", admin.Token, nil)
	if r, _ := cp.Do("POST", "/v1/hosts/tokens", u.Token, nil); r.Status != 403 {
		t.Errorf("non-admin made a host token: %s", r)
	}
	tok := cp.Must(t, 201, "POST", "/v1/hosts/tokens", admin.Token, nil).Map()["token"].(string)
	if r, _ := cp.Do("POST", "/v1/hosts/register", "", map[string]string{"token": "wrt_forged", "address": "127.0.0.1:1"}); r.Status != 401 {
		t.Errorf("forged registration token: %s", r)
	}
	if r, _ := cp.Do("POST", "/v1/hosts/register", "", map[string]string{"token": tok, "address": "no spaces allowed"}); r.Status != 400 {
		t.Errorf("bad address: %s", r)
	}
	if r, _ := cp.Do("POST", "/v1/hosts/"+id.Format(id.Host, uuid.New())+"/heartbeat", "wrh_nope", map[string]any{}); r.Status != 401 {
		t.Errorf("heartbeat with a wrong secret: %s", r)
	}
	// A bad certificate request is refused, naming it, and leaves the
	// token unused.
	for name, csr := range map[string]string{"no csr": "", "bad csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"} {
		if r, _ := cp.Do("POST", "/v1/hosts/register", "", map[string]string{"token": tok, "address": "127.0.0.1:1", "csr": csr}); r.Status != 400 || !strings.Contains(r.String(), "csr") {
			t.Errorf("%s: %s", name, r)
		}
	}
	key, _ := hostca.NewKey()
	csr, _ := hostca.CSR(key, "h")
	r := cp.Must(t, 201, "POST", "/v1/hosts/register", "", map[string]string{"token": tok, "address": "127.0.0.1:1", "csr": string(csr)}).Map()
	hostID, _ := r["host_id"].(string)
	if cert, err := hostca.ParseCertificate([]byte(r["certificate"].(string))); err != nil || hostca.HostID(cert) != hostID {
		t.Errorf("registration's certificate: %v %v", r, err)
	}
	// Renewal needs the host's credential (here, plain HTTP: its secret).
	if r, _ := cp.Do("POST", "/v1/hosts/"+hostID+"/certificate", "wrh_nope", map[string]string{"csr": string(csr)}); r.Status != 401 {
		t.Errorf("renewal with a wrong secret: %s", r)
	}
	if r := cp.Must(t, 200, "POST", "/v1/hosts/"+hostID+"/certificate", r["secret"].(string), map[string]string{"csr": string(csr)}).Map(); r["certificate"] == "" {
		t.Errorf("renewal: %v", r)
	}
}

func TestAudit(t *testing.T) {
	cp := startCP(t, nil)
	admin := cp.Admin(t, "root@example.com")
	a := cp.Signup(t, "a@example.com")
	b := cp.Signup(t, "b@example.com")
	key := cp.APIKey(t, a)
	cp.Must(t, 201, "POST", "/v1/teams", a.Token, map[string]string{"name": "second"})
	_, _ = cp.Do("POST", "/v1/sandboxes", key, map[string]any{"template": "minimal"}) // fails: no host
	_, _ = cp.Do("DELETE", "/v1/teams/"+b.TeamID, a.Token, nil)                       // fails: not a member

	var entries []struct {
		Action     string
		ActorType  string `json:"actor_type"`
		ActorID    string `json:"actor_id"`
		Result     string
		ResourceID string `json:"resource_id"`
		Status     int
		TeamID     *string `json:"team_id"`
	}
	_ = cp.Must(t, 200, "GET", "/v1/audit", a.Token, nil).JSON(&entries)
	actions := map[string]string{}
	for _, e := range entries {
		actions[e.Action] = e.Result
		if e.TeamID == nil || *e.TeamID != a.TeamID {
			t.Errorf("entry of another team in a's log: %+v", e)
		}
	}
	if actions["api_key.create"] != "ok" || actions["sandbox.create"] != "error" || actions["team.delete"] != "error" {
		t.Errorf("a's audit log: %+v", entries)
	}
	for _, e := range entries {
		if e.Action == "sandbox.create" && (e.ActorType != "api_key" || e.Status != 503) {
			t.Errorf("sandbox.create entry: %+v", e)
		}
	}
	// b sees none of a's entries; filters work; admins see everything.
	_ = cp.Must(t, 200, "GET", "/v1/audit", b.Token, nil).JSON(&entries)
	for _, e := range entries {
		if strings.Contains(e.ActorID, strings.TrimPrefix(a.UserID, "usr-")) {
			t.Errorf("b sees a's entry: %+v", e)
		}
	}
	_ = cp.Must(t, 200, "GET", "/v1/audit?action=api_key.create", a.Token, nil).JSON(&entries)
	if len(entries) != 1 {
		t.Errorf("filter by action: %+v", entries)
	}
	if r, _ := cp.Do("GET", "/v1/admin/audit", a.Token, nil); r.Status != 403 {
		t.Errorf("non-admin reads the whole log: %s", r)
	}
	_ = cp.Must(t, 200, "GET", "/v1/admin/audit?action=auth.signup", admin.Token, nil).JSON(&entries)
	if len(entries) != 2 {
		t.Errorf("admin sees %d sign-ups, want 2", len(entries))
	}
	// Failed sign-ins are audited with the email, never the password.
	_, _ = cp.Do("POST", "/v1/auth/login", "", map[string]string{"email": "a@example.com", "password": "not-the-password"})
	r := cp.Must(t, 200, "GET", "/v1/admin/audit?action=auth.login", admin.Token, nil)
	if !strings.Contains(string(r.Body), "a@example.com") || strings.Contains(string(r.Body), "not-the-password") {
		t.Errorf("login audit: %s", r.Body)
	}
}

func TestDocs(t *testing.T) {
	cp := startCP(t, nil)
	for _, p := range []string{"/docs", "/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css", "/openapi.yaml", "/health"} {
		cp.Must(t, 200, "GET", p, "", nil)
	}
	if r, _ := cp.Do("GET", "/docs/../../etc/passwd", "", nil); r.Status == 200 {
		t.Errorf("docs traversal: %s", r)
	}
	if r, _ := cp.Do("GET", "/docs/LICENSE", "", nil); r.Status != 404 {
		t.Errorf("docs serves files it should not: %d", r.Status)
	}
}
