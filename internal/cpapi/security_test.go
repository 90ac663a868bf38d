package cpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"git.omukk.dev/wrenn/sandbox/internal/cpapi"
	"git.omukk.dev/wrenn/sandbox/internal/cptest"
	"git.omukk.dev/wrenn/sandbox/pkg/config"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
)

// The attacks of issue 21 against the control plane's API, each checked
// to fail now.

// TestTeamTakeoverNeedsConsent: adding someone to a team used to take
// effect at once, and a login landed in the user's oldest team, so a team
// created before the victim signed up became the victim's active team
// (their keys and sandboxes then belonged to the attacker). Now it is an
// invitation the invitee answers, answered alike for any email, and the
// active team is the user's own choice.
func TestTeamTakeoverNeedsConsent(t *testing.T) {
	cp := startCP(t, nil)
	attacker := cp.Signup(t, "mallory@example.com")
	evil := cp.Must(t, 201, "POST", "/v1/teams", attacker.Token, map[string]string{"name": "evil"}).Map()["id"].(string)
	// Invited before the victim has an account, and again for an account
	// that exists: the answers do not tell the two apart.
	early := cp.Must(t, 201, "POST", "/v1/teams/"+evil+"/invitations", attacker.Token, map[string]string{"email": "victim@example.com"})
	victim := cp.Signup(t, "victim@example.com")
	other := cp.Signup(t, "other@example.com")
	known := cp.Must(t, 201, "POST", "/v1/teams/"+attacker.TeamID+"/invitations", attacker.Token, map[string]string{"email": "other@example.com"})
	unknown := cp.Must(t, 201, "POST", "/v1/teams/"+attacker.TeamID+"/invitations", attacker.Token, map[string]string{"email": "nobody@example.com"})
	keys := func(r cptest.Response) []string { return slices.Sorted(maps.Keys(r.Map())) }
	if !slices.Equal(keys(known), keys(unknown)) || !slices.Equal(keys(early), keys(known)) {
		t.Errorf("invitation answers differ by whether the email exists: %s / %s", known, unknown)
	}

	// Nothing changed for the victim: one team, their own, active.
	assertActive := func(tok, want string) {
		t.Helper()
		r := cp.Must(t, 200, "GET", "/v1/auth/me", tok, nil)
		if got := r.Map()["active_team_id"]; got != want || r.Header.Get(cpapi.TeamHeader) != want {
			t.Fatalf("active team %v (header %q), want %s", got, r.Header.Get(cpapi.TeamHeader), want)
		}
	}
	login := func(a cptest.Account) string {
		t.Helper()
		l, err := cp.Login(a.Email)
		if err != nil {
			t.Fatal(err)
		}
		return l.Token
	}
	var teams []struct{ ID string }
	_ = cp.Must(t, 200, "GET", "/v1/teams", victim.Token, nil).JSON(&teams)
	if len(teams) != 1 || teams[0].ID != victim.TeamID {
		t.Fatalf("victim's teams before answering: %+v", teams)
	}
	tok := login(victim)
	assertActive(tok, victim.TeamID)
	key := cp.Must(t, 201, "POST", "/v1/api-keys", tok, map[string]string{"name": "mine"}).Map()
	if key["team_id"] != victim.TeamID {
		t.Fatalf("the victim's key went to %v", key["team_id"])
	}
	var members []struct{ Email string }
	_ = cp.Must(t, 200, "GET", "/v1/teams/"+evil+"/members", attacker.Token, nil).JSON(&members)
	if len(members) != 1 {
		t.Fatalf("the victim is in the attacker's team without consent: %+v", members)
	}

	// Someone else's invitation cannot be answered, nor by an API key.
	var otherInv []struct{ ID string }
	_ = cp.Must(t, 200, "GET", "/v1/invitations", other.Token, nil).JSON(&otherInv)
	if len(otherInv) != 1 {
		t.Fatalf("other's invitations: %+v", otherInv)
	}
	if r, _ := cp.Do("POST", "/v1/invitations/"+otherInv[0].ID+"/accept", victim.Token, nil); r.Status != 404 {
		t.Errorf("accepted someone else's invitation: %s", r)
	}
	if r, _ := cp.Do("POST", "/v1/invitations/"+otherInv[0].ID+"/accept", key["key"].(string), nil); r.Status != 403 {
		t.Errorf("an API key answered an invitation: %s", r)
	}

	// Declined, it is gone; accepted, the victim is a member, and still
	// acts in their own team until they switch.
	var invs []struct {
		ID     string
		TeamID string `json:"team_id"`
	}
	_ = cp.Must(t, 200, "GET", "/v1/invitations", victim.Token, nil).JSON(&invs)
	if len(invs) != 1 || invs[0].TeamID != evil {
		t.Fatalf("victim's invitations: %+v", invs)
	}
	cp.Must(t, 204, "POST", "/v1/invitations/"+invs[0].ID+"/decline", victim.Token, nil)
	if r, _ := cp.Do("POST", "/v1/invitations/"+invs[0].ID+"/accept", victim.Token, nil); r.Status != 404 {
		t.Errorf("a declined invitation was accepted: %s", r)
	}
	inv := cp.Must(t, 201, "POST", "/v1/teams/"+evil+"/invitations", attacker.Token, map[string]string{"email": "VICTIM@example.com"}).Map()["id"].(string)
	cp.Must(t, 200, "POST", "/v1/invitations/"+inv+"/accept", victim.Token, nil)
	assertActive(login(victim), victim.TeamID)

	// Switching is explicit, answered with the new active team, and
	// remembered for the next login; leaving that team falls back to the
	// personal team.
	sw := cp.Must(t, 200, "POST", "/v1/auth/switch-team", tok, map[string]string{"team_id": evil})
	if sw.Map()["active_team_id"] != evil || sw.Header.Get(cpapi.TeamHeader) != evil {
		t.Errorf("switch answer: %s %v", sw, sw.Header)
	}
	assertActive(login(victim), evil)
	cp.Must(t, 204, "DELETE", "/v1/teams/"+evil+"/members/"+victim.UserID, attacker.Token, nil)
	assertActive(login(victim), victim.TeamID)
}

// TestSignupClosedByDefault: sign-up used to be open and the first account
// became the platform admin, so whoever reached a fresh control plane
// first owned it.
func TestSignupClosedByDefault(t *testing.T) {
	cp := startCP(t, func(c *config.Config) { c.AllowSignup = config.Defaults().AllowSignup })
	r, _ := cp.Do("POST", "/v1/auth/signup", "", map[string]string{"email": "first@example.com", "password": "long enough pw"})
	if r.Status != http.StatusForbidden {
		t.Fatalf("sign-up on a default installation: %s", r)
	}
	// Where sign-up is allowed, even the first account is no admin.
	open := startCP(t, nil)
	first := open.Signup(t, "first@example.com")
	if me := open.Must(t, 200, "GET", "/v1/auth/me", first.Token, nil).Map(); me["user"].(map[string]any)["admin"] != false {
		t.Fatalf("the first account to sign up is an admin: %v", me)
	}
	if r, _ := open.Do("POST", "/v1/hosts/tokens", first.Token, nil); r.Status != 403 {
		t.Errorf("the first account made a host token: %s", r)
	}
	admin := open.Admin(t, "ops@example.com")
	open.Must(t, 201, "POST", "/v1/hosts/tokens", admin.Token, nil)
}

// TestDeactivatedUsersKeysStop: a deactivated user's API keys used to keep
// working (list, exec, create); they stop at once and work again if the
// user is reactivated.
func TestDeactivatedUsersKeysStop(t *testing.T) {
	cp := startCP(t, nil)
	admin := cp.Admin(t, "admin@example.com")
	u := cp.Signup(t, "leaver@example.com")
	key := cp.APIKey(t, u)
	cp.Must(t, 200, "GET", "/v1/sandboxes", key, nil)
	cp.Must(t, 200, "POST", "/v1/admin/users/"+u.UserID+"/deactivate", admin.Token, nil)
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/sandboxes"}, {"POST", "/v1/sandboxes"}, {"GET", "/e2b/sandboxes"}, {"POST", "/e2b/sandboxes"},
		{"GET", "/v1/ws/sandboxes/sb-00000000000000000000000000000000/exec?cmd=id"},
	} {
		if r, _ := cp.Do(c.method, c.path, key, map[string]any{}); r.Status != 401 {
			t.Errorf("%s %s with a deactivated user's key: %s", c.method, c.path, r)
		}
	}
	cp.Must(t, 200, "POST", "/v1/admin/users/"+u.UserID+"/activate", admin.Token, nil)
	cp.Must(t, 200, "GET", "/v1/sandboxes", key, nil)
}

// TestNULBytesAreRefused: a NUL byte in a name, metadata, an email or an
// env value used to reach PostgreSQL (or the guest) and come back as a
// 500, and a login with one was not recorded. Each is a 400 now, and the
// failed login is in the audit log.
func TestNULBytesAreRefused(t *testing.T) {
	cp := startCP(t, nil)
	admin := cp.Admin(t, "admin@example.com")
	a := cp.Signup(t, "a@example.com")
	key := cp.APIKey(t, a)
	for _, c := range []struct {
		method, path, token string
		body                any
	}{
		{"POST", "/v1/auth/signup", "", map[string]string{"email": "x\x00@example.com", "password": "long enough pw"}},
		{"POST", "/v1/auth/login", "", map[string]string{"email": "a@example.com\x00", "password": "long enough pw"}},
		{"POST", "/v1/teams", a.Token, map[string]string{"name": "te\x00am"}},
		{"PATCH", "/v1/teams/" + a.TeamID, a.Token, map[string]string{"name": "te\x00am"}},
		{"POST", "/v1/api-keys", a.Token, map[string]string{"name": "k\x00"}},
		{"POST", "/v1/teams/" + a.TeamID + "/invitations", a.Token, map[string]string{"email": "b\x00@example.com"}},
		{"POST", "/v1/sandboxes", key, map[string]any{"metadata": map[string]string{"k": "v\x00"}}},
		{"POST", "/v1/sandboxes", key, map[string]any{"metadata": map[string]string{"k\x00": "v"}}},
		{"POST", "/v1/sandboxes", key, map[string]any{"env_vars": map[string]string{"K": "v\x00"}}},
		{"POST", "/v1/snapshots", key, map[string]any{"sandbox_id": "sb-00000000000000000000000000000000", "name": "s\x00"}},
		{"GET", "/v1/sandboxes?metadata=k%3Dv%00", key, nil},
		{"GET", "/v1/audit?action=%00", a.Token, nil},
		{"GET", "/v1/sandboxes?metadata=k%3D%FF", key, nil},
		{"POST", "/e2b/sandboxes", key, map[string]any{"templateID": "minimal", "metadata": map[string]string{"k": "v\x00"}}},
		{"POST", "/e2b/sandboxes", key, map[string]any{"templateID": "minimal", "envVars": map[string]string{"K": "\x00"}}},
	} {
		r, err := cp.Do(c.method, c.path, c.token, c.body)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != 400 {
			t.Errorf("%s %s %v: %s", c.method, c.path, c.body, r)
		}
	}
	var entries []struct {
		Status int
		IP     string
	}
	_ = cp.Must(t, 200, "GET", "/v1/admin/audit?action=auth.login", admin.Token, nil).JSON(&entries)
	if len(entries) == 0 || entries[0].Status != 400 {
		t.Errorf("the refused login is not in the audit log: %+v", entries)
	}
}

// loginFrom signs in through a proxy that forwards for addr.
func loginFrom(t *testing.T, cp *cptest.CP, addr, email, password string) (int, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"email": email, "password": password})
	req, _ := http.NewRequest("POST", cp.URL+"/v1/auth/login", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", addr)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestSignInLimits: the sign-in limit was per source address only, so one
// client behind a shared proxy locked everyone behind it out. Behind a
// trusted proxy each client has its own limit, each account has one too
// (however many addresses try it), and a client that is not a trusted
// proxy cannot choose its address with X-Forwarded-For.
func TestSignInLimits(t *testing.T) {
	cp := startCP(t, func(c *config.Config) {
		c.AuthRatePerMinute, c.AuthAccountRatePerMinute = 5, 3
		c.TrustedProxies = []string{"127.0.0.1"}
	})
	admin := cp.Admin(t, "admin@example.com")
	cp.Signup(t, "alice@example.com")
	cp.Signup(t, "victim@example.com")
	// One client behind the proxy exhausts its own limit...
	var codes []int
	for i := range 6 {
		code, _ := loginFrom(t, cp, "203.0.113.7", fmt.Sprintf("guess%d@example.com", i), "wrong password")
		codes = append(codes, code)
	}
	if codes[0] != 401 || codes[5] != 429 {
		t.Fatalf("one client's attempts: %v", codes)
	}
	// ...and another behind the same proxy still signs in.
	if code, body := loginFrom(t, cp, "203.0.113.8", "alice@example.com", cptest.Password); code != 200 {
		t.Fatalf("another client behind the same proxy: %d %s", code, body)
	}
	// Guessing one account's password from ever new addresses stops too.
	codes = nil
	for i := range 4 {
		code, _ := loginFrom(t, cp, fmt.Sprintf("198.51.100.%d", i+1), "victim@example.com", "wrong password")
		codes = append(codes, code)
	}
	if !slices.Equal(codes, []int{401, 401, 401, 429}) {
		t.Fatalf("one account from many addresses: %v", codes)
	}
	if _, body := loginFrom(t, cp, "198.51.100.9", "victim@example.com", "wrong password"); !strings.Contains(body, "this account") {
		t.Errorf("the account limit's message: %s", body)
	}
	// The audit log has the forwarded address, not the proxy's.
	r := cp.Must(t, 200, "GET", "/v1/admin/audit?action=auth.login", admin.Token, nil)
	if !strings.Contains(string(r.Body), "198.51.100.1") {
		t.Errorf("audit lacks the client's address: %s", r.Body)
	}

	// Not behind a trusted proxy: X-Forwarded-For changes nothing.
	direct := startCP(t, func(c *config.Config) { c.AuthRatePerMinute = 3 })
	codes = nil
	for i := range 4 {
		code, _ := loginFrom(t, direct, fmt.Sprintf("192.0.2.%d", i+1), fmt.Sprintf("g%d@example.com", i), "wrong password")
		codes = append(codes, code)
	}
	if codes[3] != 429 {
		t.Fatalf("a spoofed X-Forwarded-For escaped the limit: %v", codes)
	}
}

// TestAnonymousAuditIsBounded: unauthenticated requests wrote audit rows
// at will (700 in 5 s) and a 900 KB email was stored and logged whole.
// Now each address gets a quota of audited anonymous requests a minute,
// and what an anonymous caller sends is stored cut short.
func TestAnonymousAuditIsBounded(t *testing.T) {
	var logs syncBuffer
	cp, err := pg.Start(context.Background(), cptest.Options{Log: slog.New(slog.NewTextHandler(&logs, nil)), Tune: func(c *config.Config) {
		c.AnonymousAuditPerMinute = 5
		c.MaxBodyBytes = 2 << 20
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	admin := cp.Admin(t, "admin@example.com")
	for range 40 {
		if r, _ := cp.Do("POST", "/v1/sandboxes", "e2b_0000000000000000000000000000000000000000", map[string]any{}); r.Status != 401 {
			t.Fatalf("unauthenticated create: %s", r)
		}
	}
	var entries []struct {
		ActorType string `json:"actor_type"`
		ActorID   string `json:"actor_id"`
	}
	_ = cp.Must(t, 200, "GET", "/v1/admin/audit?limit=1000", admin.Token, nil).JSON(&entries)
	anon := 0
	for _, e := range entries {
		if e.ActorType == "anonymous" {
			anon++
		}
	}
	if anon == 0 || anon > 5 {
		t.Errorf("%d anonymous audit entries for 40 requests, want 1 to 5", anon)
	}
	if n := strings.Count(logs.String(), "authentication failed"); n > 5 {
		t.Errorf("%d log lines for 40 unauthenticated requests", n)
	}

	huge := strings.Repeat("a", 900<<10) + "@example.com"
	r, _ := cp.Do("POST", "/v1/auth/login", "", map[string]string{"email": huge, "password": "whatever123"})
	if r.Status != 401 || len(r.Body) > 4096 {
		t.Errorf("login with a 900 KB email: %d, %d bytes of answer", r.Status, len(r.Body))
	}
	r = cp.Must(t, 200, "GET", "/v1/admin/audit?action=auth.login&limit=1", admin.Token, nil)
	_ = r.JSON(&entries)
	if len(entries) != 1 || len(entries[0].ActorID) > 300 || !strings.HasPrefix(entries[0].ActorID, "aaaa") {
		t.Errorf("the stored email: %d bytes", len(entries[0].ActorID))
	}
	if logs.Len() > 256<<10 {
		t.Errorf("the log grew by %d bytes", logs.Len())
	}
}

// syncBuffer is a log destination the server writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}

// TestAuditOutlivesTeams: deleting a team was not audited (the entry's
// team no longer existed) and erased the team's whole audit history.
func TestAuditOutlivesTeams(t *testing.T) {
	cp := startCP(t, nil)
	admin := cp.Admin(t, "admin@example.com")
	a := cp.Signup(t, "a@example.com")
	team := cp.Must(t, 201, "POST", "/v1/teams", a.Token, map[string]string{"name": "short-lived"}).Map()["id"].(string)
	cp.Must(t, 200, "POST", "/v1/auth/switch-team", a.Token, map[string]string{"team_id": team})
	cp.Must(t, 201, "POST", "/v1/api-keys", a.Token, map[string]string{"name": "k"})
	cp.Must(t, 204, "DELETE", "/v1/teams/"+team, a.Token, nil)
	var entries []struct {
		Action string
		Result string
		TeamID *string `json:"team_id"`
	}
	_ = cp.Must(t, 200, "GET", "/v1/admin/audit?team_id="+team, admin.Token, nil).JSON(&entries)
	got := map[string]string{}
	for _, e := range entries {
		got[e.Action] = e.Result
		if e.TeamID == nil || *e.TeamID != team {
			t.Errorf("entry of another team: %+v", e)
		}
	}
	for _, action := range []string{"team.create", "auth.switch_team", "api_key.create", "team.delete"} {
		if got[action] != "ok" {
			t.Errorf("%s is missing from the deleted team's history: %+v", action, entries)
		}
	}
}

// TestTeamQuotas: there were no per-team limits, so one team could take a
// whole host from the others. Each limit is reported by GET
// /v1/teams/{id} and refused past with 429 naming it; admins set other
// limits per team.
func TestTeamQuotas(t *testing.T) {
	cp := startCP(t, func(c *config.Config) {
		c.Quota = config.Quota{Sandboxes: 2, VCPUs: 2, MemoryMiB: 1024, DiskMiB: 4096, Snapshots: 1, CreatesPerMinute: 3}
	})
	admin := cp.Admin(t, "admin@example.com")
	a := cp.Signup(t, "a@example.com")
	key := cp.APIKey(t, a)
	type use struct{ Limit, Used int64 }
	var team struct{ Quota map[string]use }
	quota := func() {
		t.Helper()
		var raw struct{ Quota map[string]json.RawMessage }
		if err := cp.Must(t, 200, "GET", "/v1/teams/"+a.TeamID, key, nil).JSON(&raw); err != nil {
			t.Fatal(err)
		}
		team.Quota = map[string]use{}
		for k, v := range raw.Quota {
			var u use
			if json.Unmarshal(v, &u) == nil {
				team.Quota[k] = u
			}
		}
	}
	quota()
	if q := team.Quota; q["vcpus"].Limit != 2 || q["memory_mib"].Limit != 1024 || q["sandboxes"].Used != 0 || q["creates_per_minute"].Limit != 3 {
		t.Fatalf("quota: %+v", q)
	}
	refused := func(body map[string]any, what string) {
		t.Helper()
		r, _ := cp.Do("POST", "/v1/sandboxes", key, body)
		if r.Status != 429 || r.Code() != "quota_exceeded" || !strings.Contains(r.String(), what) {
			t.Errorf("create %v: %s, want 429 naming %s", body, r, what)
		}
	}
	refused(map[string]any{"vcpus": 4}, "vCPUs")
	refused(map[string]any{"memory_mib": 2048}, "memory")
	refused(map[string]any{"disk_mib": 8192}, "disk")
	r, _ := cp.Do("POST", "/v1/sandboxes", key, map[string]any{"vcpus": 1})
	if r.Status != 503 {
		t.Errorf("a create within the quota: %s, want 503 (no host)", r)
	}

	// Sandboxes the team already has count: two running make a third too many.
	conn, err := pgx.Connect(context.Background(), cp.Config.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tid, _ := id.Parse(id.Team, a.TeamID)
	for range 2 {
		if _, err := conn.Exec(context.Background(), `INSERT INTO sandboxes (id, team_id, template, state, vcpus, memory_mib, disk_mib, timeout_seconds, on_timeout, allow_internet)
			VALUES ($1, $2, 'minimal', 'running', 1, 256, 1024, 60, 'destroy', true)`, uuid.New(), tid); err != nil {
			t.Fatal(err)
		}
	}
	quota()
	if q := team.Quota; q["sandboxes"].Used != 2 || q["vcpus"].Used != 2 || q["memory_mib"].Used != 512 || q["disk_mib"].Used != 2048 {
		t.Fatalf("use: %+v", q)
	}
	refused(map[string]any{"vcpus": 1}, "sandboxes")
	// An admin raises this team's limits (not others'); creates per minute
	// still count the two.
	if r, _ := cp.Do("PUT", "/v1/admin/teams/"+a.TeamID+"/quota", a.Token, map[string]any{"sandboxes": 50}); r.Status != 403 {
		t.Errorf("a user set their own quota: %s", r)
	}
	cp.Must(t, 200, "PUT", "/v1/admin/teams/"+a.TeamID+"/quota", admin.Token, map[string]any{"sandboxes": 50, "vcpus": 64, "creates_per_minute": 2, "memory_mib": nil})
	quota()
	if q := team.Quota; q["sandboxes"].Limit != 50 || q["vcpus"].Limit != 64 || q["memory_mib"].Limit != 1024 {
		t.Fatalf("quota after the admin's change: %+v", q)
	}
	refused(map[string]any{"vcpus": 1}, "a minute")
	var other struct {
		Quota struct{ Sandboxes use }
	}
	_ = cp.Must(t, 200, "GET", "/v1/teams/"+admin.TeamID, admin.Token, nil).JSON(&other)
	if other.Quota.Sandboxes.Limit != 2 {
		t.Errorf("another team's quota changed: %+v", other.Quota)
	}
	if r, _ := cp.Do("PUT", "/v1/admin/teams/"+a.TeamID+"/quota", admin.Token, map[string]any{"vcpus": -1}); r.Status != 400 {
		t.Errorf("negative limit: %s", r)
	}
}
