package cpapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"git.omukk.dev/wrenn/sandbox/internal/cphttp"
	"git.omukk.dev/wrenn/sandbox/internal/wiretext"
	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

type credentialsBody struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	Name     string `json:"name,omitempty"`
	// Session "cookie" (browsers) sets the session in an HttpOnly cookie
	// and answers with its CSRF token instead of the token.
	Session string `json:"session,omitempty"`
}

type sessionView struct {
	Token string   `json:"token"`
	User  userView `json:"user"`
	// ActiveTeamID is the team the session acts in: the user's remembered
	// choice, else their personal team.
	ActiveTeamID *string `json:"active_team_id"`
}

// session describes a new session; its active team comes from the token.
func (a *API) session(r *http.Request, u db.User, tok string) sessionView {
	v := sessionView{Token: tok, User: viewUser(u)}
	if c, err := a.svc.Authenticate(r.Context(), tok); err == nil && c.HasTeam() {
		v.ActiveTeamID = optID(id.Team, &c.TeamID)
	}
	return v
}

func (a *API) signup(w http.ResponseWriter, r *http.Request) {
	setAudit(r.Context(), "auth.signup", "user", "")
	var b credentialsBody
	if !a.decode(w, r, &b) {
		return
	}
	cookie, ok := sessionMode(w, b.Session)
	if !ok {
		return
	}
	setActor(r.Context(), "email", b.Email, uuid.Nil)
	u, tok, err := a.svc.Signup(r.Context(), b.Email, b.Password, b.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	setAudit(r.Context(), "auth.signup", "user", id.Format(id.User, u.ID))
	if cookie {
		a.startBrowserSession(w, r, http.StatusCreated, tok, u)
		return
	}
	writeJSON(w, http.StatusCreated, a.session(r, u, tok))
}

func (a *API) login(w http.ResponseWriter, r *http.Request) {
	// Named before the body is read: a login refused for its body is a
	// failed login too.
	setAudit(r.Context(), "auth.login", "user", "")
	var b credentialsBody
	if !a.decode(w, r, &b) {
		return
	}
	cookie, ok := sessionMode(w, b.Session)
	if !ok {
		return
	}
	setActor(r.Context(), "email", b.Email, uuid.Nil)
	if a.accountLimit.OnLimit(w, r, "login:"+strings.ToLower(strings.TrimSpace(b.Email))) {
		a.log.Warn("sign-in rate limit for an account", "ip", clientIP(r), "email", wiretext.Clean(b.Email, 254))
		writeError(w, http.StatusTooManyRequests, "rate_limited", "too many sign-in attempts for this account; wait a minute")
		return
	}
	u, tok, err := a.svc.Login(r.Context(), b.Email, b.Password)
	if err != nil {
		a.log.Warn("login failed", "ip", clientIP(r), "email", wiretext.Clean(b.Email, 254), "reason", err.Error())
		a.fail(w, r, err)
		return
	}
	setAudit(r.Context(), "auth.login", "user", id.Format(id.User, u.ID))
	if cookie {
		a.startBrowserSession(w, r, http.StatusOK, tok, u)
		return
	}
	writeJSON(w, http.StatusOK, a.session(r, u, tok))
}

func (a *API) logout(w http.ResponseWriter, r *http.Request) {
	setAudit(r.Context(), "auth.logout", "user", id.Format(id.User, caller(r).UserID))
	if err := a.svc.Logout(r.Context(), caller(r)); err != nil {
		a.fail(w, r, err)
		return
	}
	a.setSessionCookie(w, r, "", time.Time{})
	w.WriteHeader(http.StatusNoContent)
}

type meView struct {
	User        userView    `json:"user"`
	Teams       []teamView  `json:"teams"`
	ActiveTeam  *string     `json:"active_team_id"`
	HasPassword bool        `json:"has_password"`
	GitHub      *githubView `json:"github"`
}

func (a *API) me(w http.ResponseWriter, r *http.Request) {
	a.writeMe(w, r, caller(r))
}

// writeMe answers with the user, their teams and the active team.
func (a *API) writeMe(w http.ResponseWriter, r *http.Request, c auth.Caller) {
	out, err := a.meOf(r, c)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set(TeamHeader, "")
	if out.ActiveTeam != nil {
		w.Header().Set(TeamHeader, *out.ActiveTeam)
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) switchTeam(w http.ResponseWriter, r *http.Request) {
	var b struct {
		TeamID string `json:"team_id"`
	}
	if !a.decode(w, r, &b) {
		return
	}
	team, err := id.Parse(id.Team, b.TeamID)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_id", err.Error())
		return
	}
	setAudit(r.Context(), "auth.switch_team", "team", b.TeamID)
	c := caller(r)
	if err := a.svc.SwitchTeam(r.Context(), c, team); err != nil {
		a.fail(w, r, err)
		return
	}
	cphttp.TeamOnSuccess(r.Context(), team)
	c.TeamID = team
	a.writeMe(w, r, c)
}

func (a *API) listKeys(w http.ResponseWriter, r *http.Request) {
	keys, err := a.svc.ListAPIKeys(r.Context(), caller(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mapSlice(keys, viewKey))
}

func (a *API) createKey(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Name string `json:"name"`
	}
	if !a.decodeOptional(w, r, &b) {
		return
	}
	k, key, err := a.svc.CreateAPIKey(r.Context(), caller(r), b.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	setAudit(r.Context(), "api_key.create", "api_key", id.Format(id.APIKey, k.ID))
	v := viewKey(k)
	v.Key = key
	writeJSON(w, http.StatusCreated, v)
}

func (a *API) revokeKey(w http.ResponseWriter, r *http.Request) {
	kid, ok := pathID(w, r, "keyID", id.APIKey)
	if !ok {
		return
	}
	setAudit(r.Context(), "api_key.revoke", "api_key", id.Format(id.APIKey, kid))
	if err := a.svc.RevokeAPIKey(r.Context(), caller(r), kid); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) listTeams(w http.ResponseWriter, r *http.Request) {
	teams, err := a.svc.ListTeams(r.Context(), caller(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mapSlice(teams, func(t db.ListTeamsForUserRow) teamView {
		return viewTeam(db.Team{ID: t.ID, Name: t.Name, CreatedAt: t.CreatedAt}, t.Role)
	}))
}

type nameBody struct {
	Name string `json:"name"`
}

func (a *API) createTeam(w http.ResponseWriter, r *http.Request) {
	var b nameBody
	if !a.decode(w, r, &b) {
		return
	}
	t, err := a.svc.CreateTeam(r.Context(), caller(r), b.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	setAudit(r.Context(), "team.create", "team", id.Format(id.Team, t.ID))
	cphttp.TeamOnSuccess(r.Context(), t.ID)
	writeJSON(w, http.StatusCreated, viewTeam(t, "owner"))
}

// teamParam parses {teamID}; a successful call is audited under that team.
func teamParam(w http.ResponseWriter, r *http.Request, action string) (uuid.UUID, bool) {
	t, ok := pathID(w, r, "teamID", id.Team)
	if ok {
		setAudit(r.Context(), action, "team", id.Format(id.Team, t))
		cphttp.TeamOnSuccess(r.Context(), t)
	}
	return t, ok
}

func (a *API) getTeam(w http.ResponseWriter, r *http.Request) {
	t, ok := pathID(w, r, "teamID", id.Team)
	if !ok {
		return
	}
	team, role, err := a.svc.GetTeam(r.Context(), caller(r), t)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	q, err := a.svc.GetTeamQuota(r.Context(), caller(r), t)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, teamDetailView{teamView: viewTeam(team, role), Quota: viewQuota(q)})
}

func (a *API) renameTeam(w http.ResponseWriter, r *http.Request) {
	t, ok := teamParam(w, r, "team.rename")
	if !ok {
		return
	}
	var b nameBody
	if !a.decode(w, r, &b) {
		return
	}
	team, err := a.svc.RenameTeam(r.Context(), caller(r), t, b.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewTeam(team, ""))
}

func (a *API) deleteTeam(w http.ResponseWriter, r *http.Request) {
	t, ok := teamParam(w, r, "team.delete")
	if !ok {
		return
	}
	if err := a.svc.DeleteTeam(r.Context(), caller(r), t); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) listMembers(w http.ResponseWriter, r *http.Request) {
	t, ok := pathID(w, r, "teamID", id.Team)
	if !ok {
		return
	}
	ms, err := a.svc.ListMembers(r.Context(), caller(r), t)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mapSlice(ms, viewMember))
}

func (a *API) setMemberRole(w http.ResponseWriter, r *http.Request) {
	t, ok := teamParam(w, r, "team.set_role")
	if !ok {
		return
	}
	u, ok := pathID(w, r, "userID", id.User)
	if !ok {
		return
	}
	var b struct {
		Role string `json:"role"`
	}
	if !a.decode(w, r, &b) {
		return
	}
	setAudit(r.Context(), "team.set_role", "user", id.Format(id.User, u))
	if err := a.svc.SetMemberRole(r.Context(), caller(r), t, u, b.Role); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) removeMember(w http.ResponseWriter, r *http.Request) {
	t, ok := teamParam(w, r, "team.remove_member")
	if !ok {
		return
	}
	u, ok := pathID(w, r, "userID", id.User)
	if !ok {
		return
	}
	setAudit(r.Context(), "team.remove_member", "user", id.Format(id.User, u))
	if err := a.svc.RemoveMember(r.Context(), caller(r), t, u); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) listTemplates(w http.ResponseWriter, r *http.Request) {
	ts, err := a.svc.ListTemplates(r.Context(), caller(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	type imageView struct {
		Name    string `json:"name"`
		BuiltIn bool   `json:"built_in"`
		TeamID  string `json:"team_id"`
		// Built templates (POST /v1/templates) add their ID and tags.
		*templateView
	}
	out := mapSlice(ts, func(t db.Template) imageView {
		return imageView{Name: t.Name, BuiltIn: t.TeamID == id.PlatformTeam, TeamID: id.Format(id.Team, t.TeamID)}
	})
	built, err := a.svc.ListBuiltTemplates(r.Context(), caller(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	for _, t := range built {
		v := viewTemplate(t)
		out = append(out, imageView{Name: t.Name, TeamID: id.Format(id.Team, t.TeamID), templateView: &v})
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) adminUsers(w http.ResponseWriter, r *http.Request) {
	us, err := a.svc.AdminListUsers(r.Context(), caller(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mapSlice(us, viewUser))
}

func (a *API) adminActivate(w http.ResponseWriter, r *http.Request)   { a.adminSetActive(w, r, true) }
func (a *API) adminDeactivate(w http.ResponseWriter, r *http.Request) { a.adminSetActive(w, r, false) }

func (a *API) adminSetActive(w http.ResponseWriter, r *http.Request, active bool) {
	u, ok := pathID(w, r, "userID", id.User)
	if !ok {
		return
	}
	action := "admin.deactivate_user"
	if active {
		action = "admin.activate_user"
	}
	platformAudit(r.Context())
	setAudit(r.Context(), action, "user", id.Format(id.User, u))
	user, err := a.svc.AdminSetUserActive(r.Context(), caller(r), u, active)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewUser(user))
}

func (a *API) adminTeams(w http.ResponseWriter, r *http.Request) {
	ts, err := a.svc.AdminListTeams(r.Context(), caller(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mapSlice(ts, func(t db.Team) teamView { return viewTeam(t, "") }))
}

func (a *API) adminSandboxes(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, offset, ok := paging(w, r)
	if !ok {
		return
	}
	sbs, err := a.svc.AdminListSandboxes(r.Context(), caller(r), q.Get("include_stopped") == "true", limit, offset)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mapSlice(sbs, viewSandbox))
}

func (a *API) listAudit(w http.ResponseWriter, r *http.Request)  { a.auditList(w, r, false) }
func (a *API) adminAudit(w http.ResponseWriter, r *http.Request) { a.auditList(w, r, true) }

func (a *API) auditList(w http.ResponseWriter, r *http.Request, all bool) {
	q := r.URL.Query()
	limit, _, ok := paging(w, r)
	if !ok {
		return
	}
	f := service.AuditFilter{Action: q.Get("action"), ResourceType: q.Get("resource_type"), ResourceID: q.Get("resource_id"), ActorID: q.Get("actor_id"),
		Result: q.Get("result"), Limit: limit, AllTeams: all}
	if t := q.Get("team_id"); t != "" && all {
		team, err := id.Parse(id.Team, t)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_id", err.Error())
			return
		}
		f.Team = &team
	}
	switch f.Result {
	case "", "ok", "error":
	default:
		writeError(w, http.StatusBadRequest, "invalid_argument", "result must be ok or error")
		return
	}
	for name, into := range map[string]**time.Time{"before": &f.Before, "after": &f.After} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				writeError(w, http.StatusBadRequest, "invalid_argument", name+" must be an RFC 3339 time")
				return
			}
			*into = &t
		}
	}
	es, err := a.svc.ListAudit(r.Context(), caller(r), f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mapSlice(es, viewAudit))
}

// paging reads limit and offset (both optional, non-negative).
func paging(w http.ResponseWriter, r *http.Request) (int32, int32, bool) {
	var out [2]int32
	for i, name := range []string{"limit", "offset"} {
		v := r.URL.Query().Get(name)
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "invalid_argument", name+" must be a non-negative integer")
			return 0, 0, false
		}
		out[i] = int32(n)
	}
	return out[0], out[1], true
}
