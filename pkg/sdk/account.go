package sdk

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Calls only Wrenn's API has: sign-in, API keys and hosts. Against an
// E2B endpoint they fail with ErrUnsupported.

// Login signs in with email and password and returns a session token,
// to use as the API key of a Client (WithAPIKey).
func (c *Client) Login(ctx context.Context, email, password string) (string, error) {
	if err := c.wrennOnly("log in"); err != nil {
		return "", err
	}
	var s struct {
		Token string `json:"token"`
	}
	_, err := c.call(ctx, "log in", http.MethodPost, "/v1/auth/login", nil, map[string]string{"email": email, "password": password}, &s)
	return s.Token, err
}

// Logout ends the client's session (a session token; an API key is
// revoked with RevokeAPIKey instead).
func (c *Client) Logout(ctx context.Context) error {
	if err := c.wrennOnly("log out"); err != nil {
		return err
	}
	_, err := c.call(ctx, "log out", http.MethodPost, "/v1/auth/logout", nil, nil, nil)
	return err
}

// User is who a credential acts for.
type User struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
	Admin bool   `json:"admin"`
}

// Team is a team the user belongs to, with their role.
type Team struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Role string `json:"role"`
}

// Identity is the answer to "who am I".
type Identity struct {
	User         User   `json:"user"`
	Teams        []Team `json:"teams"`
	ActiveTeamID string `json:"active_team_id"`
}

// Whoami returns the user and team the client's credential acts for.
func (c *Client) Whoami(ctx context.Context) (Identity, error) {
	if err := c.wrennOnly("whoami"); err != nil {
		return Identity{}, err
	}
	var id struct {
		User         User    `json:"user"`
		Teams        []Team  `json:"teams"`
		ActiveTeamID *string `json:"active_team_id"`
	}
	_, err := c.call(ctx, "whoami", http.MethodGet, "/v1/auth/me", nil, nil, &id)
	return Identity{User: id.User, Teams: id.Teams, ActiveTeamID: deref(id.ActiveTeamID)}, err
}

// APIKey is a team's API key. Key, the secret, is set only in the
// answer to CreateAPIKey.
type APIKey struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	TeamID     string     `json:"team_id"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	Key        string     `json:"key,omitempty"`
}

// CreateAPIKey creates an API key in the active team; its secret is in
// the answer only.
func (c *Client) CreateAPIKey(ctx context.Context, name string) (APIKey, error) {
	if err := c.wrennOnly("create API key"); err != nil {
		return APIKey{}, err
	}
	var k APIKey
	_, err := c.call(ctx, "create API key", http.MethodPost, "/v1/api-keys", nil, map[string]string{"name": name}, &k)
	return k, err
}

// ListAPIKeys lists the active team's keys.
func (c *Client) ListAPIKeys(ctx context.Context) ([]APIKey, error) {
	if err := c.wrennOnly("list API keys"); err != nil {
		return nil, err
	}
	var ks []APIKey
	_, err := c.call(ctx, "list API keys", http.MethodGet, "/v1/api-keys", nil, nil, &ks)
	return ks, err
}

// RevokeAPIKey revokes a key by ID.
func (c *Client) RevokeAPIKey(ctx context.Context, id string) error {
	if err := c.wrennOnly("revoke API key"); err != nil {
		return err
	}
	_, err := c.call(ctx, "revoke API key "+id, http.MethodDelete, "/v1/api-keys/"+url.PathEscape(id), nil, nil, nil)
	return err
}

// Host is a machine running a host agent (admins only).
type Host struct {
	ID                 string     `json:"id"`
	Name               string     `json:"name"`
	Address            string     `json:"address"`
	Status             string     `json:"status"`
	Runtime            string     `json:"runtime"`
	Accelerator        string     `json:"accelerator"`
	CPUs               int        `json:"cpus"`
	MemoryMiB          int64      `json:"memory_mib"`
	DiskFreeMiB        int64      `json:"disk_free_mib"`
	MaxSandboxes       int        `json:"max_sandboxes"`
	Sandboxes          int        `json:"sandboxes"`
	CommittedVCPUs     int        `json:"committed_vcpus"`
	CommittedMemoryMiB int64      `json:"committed_memory_mib"`
	Templates          []string   `json:"templates"`
	LastHeartbeatAt    *time.Time `json:"last_heartbeat_at"`
	CreatedAt          time.Time  `json:"created_at"`
}

// ListHosts lists the platform's hosts (admins only).
func (c *Client) ListHosts(ctx context.Context) ([]Host, error) {
	if err := c.wrennOnly("list hosts"); err != nil {
		return nil, err
	}
	var hs []Host
	_, err := c.call(ctx, "list hosts", http.MethodGet, "/v1/hosts", nil, nil, &hs)
	return hs, err
}

// HostToken is a one-time registration token for a new host agent.
type HostToken struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// CreateHostToken creates a registration token (admins only): give it to
// `host-agent --registration-token-file`.
func (c *Client) CreateHostToken(ctx context.Context) (HostToken, error) {
	if err := c.wrennOnly("create host token"); err != nil {
		return HostToken{}, err
	}
	var t HostToken
	_, err := c.call(ctx, "create host token", http.MethodPost, "/v1/hosts/tokens", nil, nil, &t)
	return t, err
}

// DrainHost stops placing sandboxes on a host (admins only); the ones it
// runs stay.
func (c *Client) DrainHost(ctx context.Context, id string) (Host, error) {
	if err := c.wrennOnly("drain host"); err != nil {
		return Host{}, err
	}
	var h Host
	_, err := c.call(ctx, "drain host "+id, http.MethodPost, "/v1/hosts/"+url.PathEscape(id)+"/drain", nil, nil, &h)
	return h, err
}
