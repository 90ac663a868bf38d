// Package envstate holds what POST /init configures and every envd service
// reads: the default user and workdir, the default environment variables and
// the access token.
package envstate

import (
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/envd/osuser"
)

// State is safe for concurrent use.
type State struct {
	mu          sync.RWMutex
	defaultUser string
	workdir     string
	envVars     map[string]string // set by /init, replaced as a whole
	systemVars  map[string]string // E2B_* vars that /init never removes
	token       string
	lastInit    time.Time
	// local is envd's own account in --local mode, with the home directory
	// of envd's environment rather than the password database's.
	local *osuser.User
}

// New starts with the given default user and the built-in variables.
func New(defaultUser string, systemVars map[string]string) *State {
	return &State{defaultUser: defaultUser, envVars: map[string]string{}, systemVars: maps.Clone(systemVars)}
}

// SetLocalUser makes u (envd's own account) stand for its name: in --local
// mode, commands run as the developer in the developer's $HOME.
func (s *State) SetLocalUser(u *osuser.User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := *u
	s.local = &c
}

// DefaultUser is the account used when a request names none.
func (s *State) DefaultUser() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.defaultUser
}

// Workdir is the default working directory, "" for the user's home.
func (s *State) Workdir() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.workdir
}

// Env is the default environment of every process: system vars, then /init's.
func (s *State) Env() map[string]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := maps.Clone(s.systemVars)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, s.envVars)
	return out
}

// HasToken reports whether an access token protects envd.
func (s *State) HasToken() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.token != ""
}

// Token returns the current access token ("" when envd is open).
func (s *State) Token() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.token
}

// TokenMatches compares in constant time; with no token set nothing matches.
func (s *State) TokenMatches(candidate string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.token == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(s.token), []byte(candidate)) == 1
}

// InitRequest is the body of POST /init.
type InitRequest struct {
	AccessToken    *string           `json:"accessToken,omitempty"`
	EnvVars        map[string]string `json:"envVars,omitempty"`
	DefaultUser    string            `json:"defaultUser,omitempty"`
	DefaultWorkdir string            `json:"defaultWorkdir,omitempty"`
	Timestamp      *time.Time        `json:"timestamp,omitempty"`
}

// Authorize decides whether an /init request may change the state: it must
// carry the current token, in its body or in the X-Access-Token header
// (headerToken; how the host replaces the token frozen in a snapshot with
// a clone's own), or there must be no token yet.
func (s *State) Authorize(req *InitRequest, headerToken string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.token == "" {
		return true
	}
	if headerToken != "" && subtle.ConstantTimeCompare([]byte(s.token), []byte(headerToken)) == 1 {
		return true
	}
	if req.AccessToken == nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(s.token), []byte(*req.AccessToken)) == 1
}

// Apply stores an /init request. It returns false when the request's
// timestamp is not newer than the last one applied (a replayed or reordered
// /init), in which case nothing changes.
func (s *State) Apply(req *InitRequest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.Timestamp != nil {
		if !req.Timestamp.After(s.lastInit) {
			return false
		}
		s.lastInit = *req.Timestamp
	}
	if req.AccessToken != nil {
		s.token = *req.AccessToken
	} else {
		s.token = ""
	}
	if req.EnvVars != nil {
		s.envVars = maps.Clone(req.EnvVars)
	}
	if req.DefaultUser != "" {
		s.defaultUser = req.DefaultUser
	}
	if req.DefaultWorkdir != "" {
		s.workdir = req.DefaultWorkdir
	}
	return true
}

// UserFromHeader picks the account from HTTP Basic auth ("name:" with an
// empty password), falling back to the default user.
func (s *State) UserFromHeader(h http.Header) (*osuser.User, error) {
	name := ""
	if auth := h.Get("Authorization"); auth != "" {
		const prefix = "Basic "
		if !strings.HasPrefix(auth, prefix) {
			return nil, fmt.Errorf("authorization header: only Basic auth selects a user")
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(auth[len(prefix):]))
		if err != nil {
			return nil, fmt.Errorf("authorization header: invalid base64: %w", err)
		}
		name, _, _ = strings.Cut(string(raw), ":")
	}
	return s.User(name)
}

// User resolves name, or the default user when name is empty, and checks
// that envd may act as it.
func (s *State) User(name string) (*osuser.User, error) {
	s.mu.RLock()
	if name == "" {
		name = s.defaultUser
	}
	local := s.local
	s.mu.RUnlock()
	if local != nil && name == local.Name {
		c := *local
		return &c, nil
	}
	u, err := osuser.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("invalid username: '%s': %w", name, err)
	}
	if err := osuser.CanActAs(u); err != nil {
		return nil, err
	}
	return u, nil
}
