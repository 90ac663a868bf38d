package cpapi

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

// Browser sessions: the dashboard never holds a session token. Sign-in
// with "session": "cookie" sets it in an HttpOnly, SameSite=Strict cookie
// (Secure over TLS), and every request the cookie authenticates must carry
// the session's CSRF token in X-CSRF-Token (a WebSocket: ?csrf=), which
// GET /v1/auth/session hands to the page.
const (
	sessionCookie = "wrenn_session"
	csrfHeader    = "X-CSRF-Token"
)

// secure reports whether cookies must be Secure: the request came over
// TLS, or users reach the control plane over https.
func (a *API) secure(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(a.cfg.PublicURL, "https://")
}

func (a *API) setCookie(w http.ResponseWriter, r *http.Request, name, value, path string, sameSite http.SameSite, expires time.Time) {
	c := &http.Cookie{Name: name, Value: value, Path: path, HttpOnly: true, Secure: a.secure(r), SameSite: sameSite}
	if value == "" {
		c.MaxAge = -1
	} else {
		c.Expires = expires
		c.MaxAge = max(1, int(time.Until(expires).Seconds()))
	}
	http.SetCookie(w, c)
}

func (a *API) setSessionCookie(w http.ResponseWriter, r *http.Request, token string, expires time.Time) {
	a.setCookie(w, r, sessionCookie, token, "/", http.SameSiteStrictMode, expires)
}

// cookieCredential is the session the cookie carries, if any.
func cookieCredential(r *http.Request) string {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return ""
	}
	return c.Value
}

// csrfOK checks the anti-forgery token of a cookie-authenticated request.
func (a *API) csrfOK(r *http.Request, c auth.Caller, allowQuery bool) bool {
	tok := r.Header.Get(csrfHeader)
	if tok == "" && allowQuery {
		tok = r.URL.Query().Get("csrf")
	}
	return a.svc.Keys.CheckCSRF(c.SessionID, tok)
}

type browserSessionView struct {
	Authenticated bool    `json:"authenticated"`
	CSRFToken     string  `json:"csrf_token,omitempty"`
	Me            *meView `json:"me,omitempty"`
}

// browserSession tells the dashboard whether its cookie holds a session,
// and if so who it is and the CSRF token its requests must carry. It is
// public: without a session the answer is authenticated=false (a stale
// cookie is cleared), not an error.
func (a *API) browserSession(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	tok := cookieCredential(r)
	if tok == "" {
		writeJSON(w, http.StatusOK, browserSessionView{})
		return
	}
	c, err := a.svc.Authenticate(r.Context(), tok)
	if err != nil || c.Kind != auth.Session {
		a.setSessionCookie(w, r, "", time.Time{})
		writeJSON(w, http.StatusOK, browserSessionView{})
		return
	}
	me, err := a.meOf(r, c)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, browserSessionView{Authenticated: true, CSRFToken: a.svc.Keys.CSRFToken(c.SessionID), Me: &me})
}

// startBrowserSession puts a session token in the cookie and answers with
// the session's CSRF token instead of the token.
func (a *API) startBrowserSession(w http.ResponseWriter, r *http.Request, status int, token string, u db.User) {
	sid, _, err := a.svc.Keys.ParseSession(token)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.setSessionCookie(w, r, token, time.Now().Add(a.cfg.SessionTTL))
	writeJSON(w, status, map[string]any{"user": viewUser(u), "csrf_token": a.svc.Keys.CSRFToken(sid)})
}

// sessionMode reads the "session" field of sign-in bodies.
func sessionMode(w http.ResponseWriter, mode string) (cookie, ok bool) {
	switch mode {
	case "", "token":
		return false, true
	case "cookie":
		return true, true
	}
	writeError(w, http.StatusBadRequest, "invalid_argument", `session must be "token" (the default) or "cookie"`)
	return false, false
}

type githubView struct {
	Login       string    `json:"login"`
	ConnectedAt time.Time `json:"connected_at"`
}

// meOf describes the caller's account: user, teams, active team, GitHub.
func (a *API) meOf(r *http.Request, c auth.Caller) (meView, error) {
	u, teams, err := a.svc.Me(r.Context(), c)
	if err != nil {
		return meView{}, err
	}
	out := meView{User: viewUser(u), HasPassword: u.PasswordHash != "", Teams: mapSlice(teams, func(t db.ListTeamsForUserRow) teamView {
		return viewTeam(db.Team{ID: t.ID, Name: t.Name, CreatedAt: t.CreatedAt}, t.Role)
	})}
	if c.HasTeam() {
		out.ActiveTeam = optID(id.Team, &c.TeamID)
	}
	ident, err := a.svc.Identity(r.Context(), u.ID, service.ProviderGitHub)
	if err != nil {
		return meView{}, err
	}
	if ident != nil {
		out.GitHub = &githubView{Login: ident.Login, ConnectedAt: ident.CreatedAt}
	}
	return out, nil
}

func (a *API) updateMe(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Name string `json:"name"`
	}
	if !a.decode(w, r, &b) {
		return
	}
	setAudit(r.Context(), "user.update", "user", id.Format(id.User, caller(r).UserID))
	u, err := a.svc.UpdateProfile(r.Context(), caller(r), b.Name)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewUser(u))
}

func (a *API) changePassword(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Current string `json:"current_password"`
		New     string `json:"new_password"`
	}
	if !a.decode(w, r, &b) {
		return
	}
	c := caller(r)
	setAudit(r.Context(), "user.change_password", "user", id.Format(id.User, c.UserID))
	if err := a.svc.ChangePassword(r.Context(), c, b.Current, b.New); err != nil {
		if errors.Is(err, service.ErrForbidden) {
			a.log.Warn("password change refused", "ip", clientIP(r), "user", id.Format(id.User, c.UserID), "reason", err.Error())
		}
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// providers tells the sign-in page which ways in this installation offers.
func (a *API) providers(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]bool{"password": true, "signup": a.cfg.AllowSignup, "github": a.cfg.GitHubEnabled()})
}
