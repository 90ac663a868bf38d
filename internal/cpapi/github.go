package cpapi

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"

	"git.omukk.dev/wrenn/sandbox/internal/githubauth"
	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

// GitHub sign-in: the authorization-code flow with state and PKCE. The
// state, the PKCE verifier and what the flow is for travel in a sealed,
// HttpOnly cookie bound to this browser; the callback opens the session
// and hands it to the dashboard through a one-time code in another
// short-lived HttpOnly cookie, which the page exchanges once. No token
// ever appears in a URL.
const (
	oauthCookie   = "wrenn_github_flow"
	handoffCookie = "wrenn_github_handoff"
	oauthPath     = "/v1/auth/github"
	oauthTTL      = 10 * time.Minute
)

type oauthFlow struct {
	State       string    `json:"s"`
	Verifier    string    `json:"v"`
	RedirectURI string    `json:"r"`
	Link        bool      `json:"l,omitempty"`
	UserID      uuid.UUID `json:"u,omitzero"`
	SessionID   uuid.UUID `json:"x,omitzero"`
	Expires     time.Time `json:"e"`
}

func (a *API) github() *githubauth.Client {
	return githubauth.New(a.cfg.GitHubClientID, a.cfg.GitHubClientSecret, a.cfg.GitHubURL, a.cfg.GitHubAPIURL)
}

// publicURL is where users reach this control plane.
func (a *API) publicURL(r *http.Request) string {
	if a.cfg.PublicURL != "" {
		return a.cfg.PublicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// startFlow remembers a new flow in this browser and returns GitHub's
// consent URL for it.
func (a *API) startFlow(w http.ResponseWriter, r *http.Request, f oauthFlow) string {
	b := make([]byte, 24)
	rand.Read(b)
	f.State = base64.RawURLEncoding.EncodeToString(b)
	f.Verifier = githubauth.NewVerifier()
	f.RedirectURI = a.publicURL(r) + oauthPath + "/callback"
	f.Expires = time.Now().Add(oauthTTL)
	plain, _ := json.Marshal(f)
	// Lax: the cookie must come back on GitHub's redirect, a top-level
	// navigation from another site.
	a.setCookie(w, r, oauthCookie, base64.RawURLEncoding.EncodeToString(a.svc.Keys.Seal(string(plain))), oauthPath, http.SameSiteLaxMode, f.Expires)
	return a.github().AuthCodeURL(f.State, f.Verifier, f.RedirectURI)
}

// githubLogin sends the browser to GitHub to sign in.
func (a *API) githubLogin(w http.ResponseWriter, r *http.Request) {
	if !a.cfg.GitHubEnabled() {
		http.Redirect(w, r, "/sign-in?error=github_disabled", http.StatusFound)
		return
	}
	http.Redirect(w, r, a.startFlow(w, r, oauthFlow{}), http.StatusFound)
}

// githubLink starts connecting GitHub to the signed-in user; the page
// then navigates to the URL it returns.
func (a *API) githubLink(w http.ResponseWriter, r *http.Request) {
	c := caller(r)
	if !a.cfg.GitHubEnabled() {
		writeError(w, http.StatusNotFound, "not_found", "GitHub sign-in is not configured on this installation (WRENN_GITHUB_CLIENT_ID)")
		return
	}
	if c.Kind != auth.Session {
		writeError(w, http.StatusBadRequest, "invalid_argument", "connected accounts belong to a user; sign in to connect GitHub")
		return
	}
	setAudit(r.Context(), "user.github_link_start", "user", id.Format(id.User, c.UserID))
	writeJSON(w, http.StatusOK, map[string]string{"url": a.startFlow(w, r, oauthFlow{Link: true, UserID: c.UserID, SessionID: c.SessionID})})
}

func (a *API) githubUnlink(w http.ResponseWriter, r *http.Request) {
	c := caller(r)
	setAudit(r.Context(), "user.github_unlink", "user", id.Format(id.User, c.UserID))
	if err := a.svc.UnlinkExternal(r.Context(), c, service.ProviderGitHub); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// flowErrors names the ways a flow fails, for the page it lands on.
var flowErrors = []struct {
	err  error
	code string
}{
	{service.ErrExternalNoAccount, "no_account"},
	{service.ErrExternalNoEmail, "no_email"},
	{service.ErrExternalEmail, "email_taken"},
	{service.ErrExternalTaken, "github_taken"},
	{service.ErrExternalLinked, "already_linked"},
	{service.ErrDeactivated, "deactivated"},
	{githubauth.ErrCode, "code"},
	{service.ErrUnauthorized, "session"},
}

// githubCallback is where GitHub sends the browser back.
func (a *API) githubCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var f oauthFlow
	ok := false
	if ck, err := r.Cookie(oauthCookie); err == nil {
		if sealed, err := base64.RawURLEncoding.DecodeString(ck.Value); err == nil {
			if plain, err := a.svc.Keys.Open(sealed); err == nil && json.Unmarshal([]byte(plain), &f) == nil {
				ok = time.Now().Before(f.Expires)
			}
		}
	}
	a.setCookie(w, r, oauthCookie, "", oauthPath, http.SameSiteLaxMode, time.Time{})
	page := "/sign-in"
	if f.Link {
		page = "/settings"
	}
	fail := func(code, reason string) {
		a.log.Warn("GitHub sign-in failed", "ip", clientIP(r), "reason", reason, "link", f.Link)
		a.auditFlow(r, f, nil, http.StatusUnauthorized)
		http.Redirect(w, r, page+"?error=github_"+code, http.StatusFound)
	}
	switch {
	case !ok:
		fail("state", "no flow cookie, or it expired or does not open (another browser, or more than 10 minutes)")
		return
	case subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(f.State)) != 1:
		fail("state", "state does not match this browser's flow")
		return
	case q.Get("error") != "":
		code := "failed"
		if q.Get("error") == "access_denied" {
			code = "denied"
		}
		fail(code, "GitHub answered "+q.Get("error"))
		return
	case q.Get("code") == "":
		fail("failed", "GitHub sent no code")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	gh := a.github()
	token, err := gh.Exchange(ctx, q.Get("code"), f.Verifier, f.RedirectURI)
	if err != nil {
		fail(flowCode(err), err.Error())
		return
	}
	ident, err := gh.Identity(ctx, token)
	if err != nil {
		fail("failed", err.Error())
		return
	}
	ext := service.ExternalIdentity{Provider: service.ProviderGitHub, Subject: ident.ID, Login: ident.Login, Name: ident.Name, Email: ident.Email}
	if f.Link {
		if err := a.svc.LinkExternal(ctx, f.SessionID, f.UserID, ext); err != nil {
			fail(flowCode(err), err.Error())
			return
		}
		a.auditFlow(r, f, &f.UserID, http.StatusOK)
		http.Redirect(w, r, "/settings?github=connected", http.StatusFound)
		return
	}
	u, sid, err := a.svc.SignInExternal(ctx, ext)
	if err != nil {
		fail(flowCode(err), err.Error())
		return
	}
	code, err := a.svc.CreateHandoff(ctx, sid)
	if err != nil {
		fail("failed", err.Error())
		return
	}
	a.auditFlow(r, f, &u.ID, http.StatusOK)
	a.setCookie(w, r, handoffCookie, code, oauthPath+"/exchange", http.SameSiteStrictMode, time.Now().Add(service.HandoffTTL))
	http.Redirect(w, r, "/sign-in?github=complete", http.StatusFound)
}

func flowCode(err error) string {
	for _, fe := range flowErrors {
		if errors.Is(err, fe.err) {
			return fe.code
		}
	}
	return "failed"
}

// auditFlow records a finished flow (a GET, which the audit middleware
// leaves out).
func (a *API) auditFlow(r *http.Request, f oauthFlow, user *uuid.UUID, status int) {
	e := service.AuditEntry{Action: "auth.github_login", ResourceType: "user", Status: status, IP: clientIP(r), ActorType: "github", ActorID: "unknown"}
	if f.Link {
		e.Action = "user.github_link"
	}
	if user != nil {
		e.ResourceID = id.Format(id.User, *user)
		e.ActorType, e.ActorID = "user", e.ResourceID
	}
	a.svc.Audit(r.Context(), e)
}

// githubExchange turns the handoff cookie into the browser's session
// cookie, once.
func (a *API) githubExchange(w http.ResponseWriter, r *http.Request) {
	code := ""
	if ck, err := r.Cookie(handoffCookie); err == nil {
		code = ck.Value
	}
	a.setCookie(w, r, handoffCookie, "", oauthPath+"/exchange", http.SameSiteStrictMode, time.Time{})
	setAudit(r.Context(), "auth.github_exchange", "user", "")
	tok, sess, err := a.svc.RedeemHandoff(r.Context(), code)
	if err != nil {
		a.log.Warn("GitHub sign-in handoff refused", "ip", clientIP(r), "reason", err.Error())
		a.fail(w, r, err)
		return
	}
	setActor(r.Context(), "user", id.Format(id.User, sess.UserID), uuid.Nil)
	setAudit(r.Context(), "auth.github_exchange", "user", id.Format(id.User, sess.UserID))
	a.setSessionCookie(w, r, tok, sess.ExpiresAt)
	writeJSON(w, http.StatusOK, map[string]string{"csrf_token": a.svc.Keys.CSRFToken(sess.ID)})
}
