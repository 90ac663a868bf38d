// Package githubtest is a local stand-in for GitHub's OAuth web flow and
// the REST endpoints sign-in reads, answering as GitHub documents them:
// the authorize page (consent with Authorize and Cancel), the token
// exchange (errors as 200s with an error field, single-use codes that
// expire, PKCE checked), GET /user and GET /user/emails. Tests point the
// production client at it by its base URLs; nothing reaches GitHub.
package githubtest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Email is one of a user's addresses.
type Email struct {
	Email    string `json:"email"`
	Primary  bool   `json:"primary"`
	Verified bool   `json:"verified"`
}

// User is a GitHub account.
type User struct {
	ID     int64
	Login  string
	Name   string
	Emails []Email
}

type grant struct {
	user                             User
	clientID, redirectURI, challenge string
	expires                          time.Time
}

// Server is the fake GitHub. Its web and API bases are both URL.
type Server struct {
	URL                    string
	ClientID, ClientSecret string
	srv                    *httptest.Server

	mu      sync.Mutex
	user    User // the account signed in at this GitHub
	codes   map[string]grant
	tokens  map[string]User
	codeTTL time.Duration
	// Log lists the requests served ("METHOD path"), for assertions.
	log []string
}

// Start runs a server for the OAuth app clientID/clientSecret with user
// signed in. Close stops it.
func Start(clientID, clientSecret string, user User) *Server {
	s := &Server{ClientID: clientID, ClientSecret: clientSecret, user: user, codes: map[string]grant{}, tokens: map[string]User{}, codeTTL: 10 * time.Minute}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login/oauth/authorize", s.authorizePage)
	mux.HandleFunc("POST /login/oauth/authorize", s.authorizeDecision)
	mux.HandleFunc("POST /login/oauth/access_token", s.accessToken)
	// Not GitHub's: lets a test in another process choose who is signed
	// in here, as a person would by signing in to GitHub.
	mux.HandleFunc("POST /_test/sign-in", func(w http.ResponseWriter, r *http.Request) {
		var u User
		if err := json.NewDecoder(r.Body).Decode(&u); err != nil || u.ID == 0 || u.Login == "" {
			http.Error(w, "send {ID, Login, Name, Emails}", http.StatusBadRequest)
			return
		}
		s.SignIn(u)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /user", s.api(func(u User) any {
		return map[string]any{"login": u.Login, "id": u.ID, "name": u.Name, "type": "User", "html_url": s.URL + "/" + u.Login}
	}))
	mux.HandleFunc("GET /user/emails", s.api(func(u User) any {
		out := []map[string]any{}
		for _, e := range u.Emails {
			out = append(out, map[string]any{"email": e.Email, "primary": e.Primary, "verified": e.Verified, "visibility": nil})
		}
		return out
	}))
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.log = append(s.log, r.Method+" "+r.URL.Path)
		s.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	s.URL = s.srv.URL
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// SignIn makes u the account signed in at this GitHub.
func (s *Server) SignIn(u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user = u
}

// SetCodeTTL changes how long authorization codes stay valid (GitHub: 10 minutes).
func (s *Server) SetCodeTTL(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codeTTL = d
}

// Requests lists the requests served so far.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

var page = template.Must(template.New("authorize").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Authorize application</title><link rel="icon" href="data:,">
<style>body{font:15px system-ui,sans-serif;max-width:28rem;margin:4rem auto;text-align:center}
button{font:inherit;padding:.5rem 1.2rem;margin:.3rem;border-radius:6px;border:1px solid #999}
#approve{background:#1f883d;color:#fff;border-color:#1f883d}</style></head>
<body><h1>Authorize application</h1>
<p>An application wants to access your GitHub account <strong id="login">{{.Login}}</strong>.</p>
<form method="post">{{range $k, $v := .Params}}<input type="hidden" name="{{$k}}" value="{{$v}}">{{end}}
<button id="cancel" name="decision" value="deny">Cancel</button>
<button id="approve" name="decision" value="approve">Authorize</button></form></body></html>`))

func (s *Server) authorizePage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if msg := s.checkAuthorize(q); msg != "" {
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	params := map[string]string{}
	for k := range q {
		params[k] = q.Get(k)
	}
	s.mu.Lock()
	login := s.user.Login
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = page.Execute(w, map[string]any{"Login": login, "Params": params})
}

func (s *Server) checkAuthorize(q url.Values) string {
	switch {
	case q.Get("client_id") != s.ClientID:
		return "unknown client_id"
	case q.Get("redirect_uri") == "":
		return "redirect_uri is required by this test server"
	case q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256":
		return "PKCE with S256 is required by this test server"
	case q.Get("state") == "":
		return "state is required by this test server"
	}
	return ""
}

func (s *Server) authorizeDecision(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	q := r.Form
	if msg := s.checkAuthorize(q); msg != "" {
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	back, err := url.Parse(q.Get("redirect_uri"))
	if err != nil {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	v := back.Query()
	v.Set("state", q.Get("state"))
	if q.Get("decision") != "approve" {
		v.Set("error", "access_denied")
		v.Set("error_description", "The user has denied your application access.")
		v.Set("error_uri", "https://docs.github.com/apps/troubleshooting-authorization-request-errors/#access-denied")
	} else {
		code := random(10)
		s.mu.Lock()
		s.codes[code] = grant{user: s.user, clientID: q.Get("client_id"), redirectURI: q.Get("redirect_uri"), challenge: q.Get("code_challenge"), expires: time.Now().Add(s.codeTTL)}
		s.mu.Unlock()
		v.Set("code", code)
	}
	back.RawQuery = v.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

// accessToken answers as GitHub does: errors are 200s whose body names
// the error; JSON when asked for, form-encoded otherwise.
func (s *Server) accessToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f := r.PostForm
	reply := func(v url.Values) {
		if strings.Contains(r.Header.Get("Accept"), "application/json") {
			m := map[string]string{}
			for k := range v {
				m[k] = v.Get(k)
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(m)
			return
		}
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
		_, _ = w.Write([]byte(v.Encode()))
	}
	fail := func(code, desc string) {
		reply(url.Values{"error": {code}, "error_description": {desc}, "error_uri": {"https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors"}})
	}
	if f.Get("client_id") != s.ClientID || f.Get("client_secret") != s.ClientSecret {
		fail("incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect.")
		return
	}
	s.mu.Lock()
	g, ok := s.codes[f.Get("code")]
	delete(s.codes, f.Get("code")) // single use, even when the request is refused
	s.mu.Unlock()
	if !ok || time.Now().After(g.expires) || g.clientID != f.Get("client_id") {
		fail("bad_verification_code", "The code passed is incorrect or expired.")
		return
	}
	if f.Get("redirect_uri") != "" && f.Get("redirect_uri") != g.redirectURI {
		fail("redirect_uri_mismatch", "The redirect_uri MUST match the registered callback URL for this application.")
		return
	}
	sum := sha256.Sum256([]byte(f.Get("code_verifier")))
	if base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
		fail("bad_verification_code", "The code passed is incorrect or expired.")
		return
	}
	tok := "gho_" + random(18)
	s.mu.Lock()
	s.tokens[tok] = g.user
	s.mu.Unlock()
	reply(url.Values{"access_token": {tok}, "token_type": {"bearer"}, "scope": {"read:user,user:email"}})
}

func (s *Server) api(view func(User) any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		tok := strings.TrimPrefix(strings.TrimPrefix(h, "Bearer "), "token ")
		s.mu.Lock()
		u, ok := s.tokens[tok]
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		if h == "" || !ok {
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(map[string]string{"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
			return
		}
		_ = json.NewEncoder(w).Encode(view(u))
	}
}

func random(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
