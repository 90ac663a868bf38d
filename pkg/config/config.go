// Package config is the control plane's configuration: its fields, their
// defaults, and the table of keys (keys.go) through which they are read
// from a TOML file and the environment.
package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Config configures wrenn-cp.
type Config struct {
	// Listen is the API's address (WRENN_CP_LISTEN, default :8080).
	Listen string
	// ProxyListen is the sandbox traffic proxy's address
	// (WRENN_PROXY_LISTEN, default :8081; empty turns it off).
	ProxyListen string
	// SandboxDomain routes proxy requests by Host: <port>-<sandboxID>.<domain>
	// (WRENN_SANDBOX_DOMAIN). Without it, requests are routed by the
	// E2b-Sandbox-Id and E2b-Sandbox-Port headers only.
	SandboxDomain string
	// DatabaseURL is a PostgreSQL connection string (WRENN_DATABASE_URL).
	DatabaseURL string
	// Secret derives the session-signing and sealing keys; at least 32
	// bytes (WRENN_CP_SECRET, or the file named by WRENN_CP_SECRET_FILE).
	Secret []byte
	// SessionTTL is how long a login lasts (WRENN_SESSION_TTL, default 24h).
	SessionTTL time.Duration
	// AllowSignup lets anyone create an account (WRENN_ALLOW_SIGNUP,
	// default true). The first account is the platform admin.
	AllowSignup bool
	// AuthRatePerMinute limits signup/login attempts per client IP
	// (WRENN_AUTH_RATE_PER_MINUTE, default 20).
	AuthRatePerMinute int
	// HeartbeatTimeout marks a host unreachable after this long without a
	// heartbeat (WRENN_HEARTBEAT_TIMEOUT, default 30s).
	HeartbeatTimeout time.Duration
	// ReconcileInterval is how often agents' sandboxes are compared with
	// the database (WRENN_RECONCILE_INTERVAL, default 30s).
	ReconcileInterval time.Duration
	// TransitionGrace is how long a sandbox may sit in a transitional
	// state (creating, pausing, …) before the reconciler settles it from
	// what its agent reports; another replica may still be working on it
	// (WRENN_TRANSITION_GRACE, default 2m).
	TransitionGrace time.Duration
	// MaxBodyBytes bounds JSON request bodies (file uploads stream and
	// are bounded by the sandbox's disk instead). Default 1 MiB.
	MaxBodyBytes int64
	// HostTokenTTL is how long a host registration token stays valid.
	HostTokenTTL time.Duration
	// TLSCertFile and TLSKeyFile are the API's certificate chain and key
	// (PEM), read again when they change.
	TLSCertFile, TLSKeyFile string
	// ProxyTLSCertFile and ProxyTLSKeyFile are the sandbox proxy's,
	// typically a wildcard for *.SandboxDomain (default: the API's pair).
	ProxyTLSCertFile, ProxyTLSKeyFile string
	// PlainHTTP serves both listeners without TLS: for development, or
	// behind a proxy that terminates TLS on the same host.
	PlainHTTP bool
	// PublicURL is where users reach the control plane, e.g.
	// https://wrenn.example.com (WRENN_PUBLIC_URL). It names GitHub's
	// callback and the commands the dashboard shows; without it they are
	// derived from each request.
	PublicURL string
	// GitHub sign-in: an OAuth app's client ID and secret
	// (WRENN_GITHUB_CLIENT_ID, WRENN_GITHUB_CLIENT_SECRET or the file named
	// by WRENN_GITHUB_CLIENT_SECRET_FILE). Its callback URL is
	// <public URL>/v1/auth/github/callback. Off without a client ID.
	GitHubClientID, GitHubClientSecret string
	// GitHubURL and GitHubAPIURL are GitHub's web and API bases
	// (WRENN_GITHUB_URL, default https://github.com; WRENN_GITHUB_API_URL,
	// default https://api.github.com), for GitHub Enterprise or tests.
	GitHubURL, GitHubAPIURL string
}

// GitHubEnabled reports whether GitHub sign-in is configured.
func (c Config) GitHubEnabled() bool { return c.GitHubClientID != "" && c.GitHubClientSecret != "" }

// Defaults returns a Config with every default filled in.
func Defaults() Config {
	return Config{
		Listen: ":8080", ProxyListen: ":8081", SessionTTL: 24 * time.Hour, AllowSignup: true, AuthRatePerMinute: 20,
		HeartbeatTimeout: 30 * time.Second, ReconcileInterval: 30 * time.Second, TransitionGrace: 2 * time.Minute,
		MaxBodyBytes: 1 << 20, HostTokenTTL: time.Hour,
		GitHubURL: "https://github.com", GitHubAPIURL: "https://api.github.com",
	}
}

// FromEnv reads the file WRENN_CP_CONFIG names, if any, and the WRENN_*
// variables over it: what cpserver.Run uses without WithConfig, so a
// distribution built on it reads the same file.
func FromEnv() (Config, error) { return Load(os.Getenv(ConfigEnv)) }

// Validate names the first missing or unusable setting, by its key in the
// file and its environment variable.
func (c Config) Validate() error {
	switch {
	case c.DatabaseURL == "":
		return fmt.Errorf("no database: set database_url or WRENN_DATABASE_URL (for example postgres://wrenn@localhost/wrenn)")
	case len(c.Secret) < 32:
		return fmt.Errorf("the control plane secret must be at least 32 bytes: set secret_file or WRENN_CP_SECRET_FILE to a file holding one (head -c 32 /dev/urandom | base64 > secret)")
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"session_ttl", c.SessionTTL}, {"heartbeat_timeout", c.HeartbeatTimeout}, {"reconcile_interval", c.ReconcileInterval}, {"transition_grace", c.TransitionGrace}, {"host_token_ttl", c.HostTokenTTL}} {
		if d.v <= 0 {
			return fmt.Errorf("%s must be positive, not %s", d.key, d.v)
		}
	}
	if c.AuthRatePerMinute <= 0 {
		return fmt.Errorf("auth_rate_per_minute must be positive, not %d", c.AuthRatePerMinute)
	}
	if c.MaxBodyBytes <= 0 {
		return fmt.Errorf("max_body_bytes must be positive, not %d", c.MaxBodyBytes)
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return errors.New("tls_cert_file and tls_key_file go together: set both or neither")
	}
	if (c.ProxyTLSCertFile == "") != (c.ProxyTLSKeyFile == "") {
		return errors.New("proxy_tls_cert_file and proxy_tls_key_file go together: set both or neither")
	}
	switch {
	case c.PlainHTTP && (c.TLSCertFile != "" || c.ProxyTLSCertFile != ""):
		return errors.New("plain_http and a TLS certificate are both set: choose one")
	case !c.PlainHTTP && c.TLSCertFile == "":
		return errors.New("no TLS certificate: set tls_cert_file and tls_key_file (WRENN_TLS_CERT_FILE, WRENN_TLS_KEY_FILE), or plain_http = true (WRENN_PLAIN_HTTP) for development")
	}
	if (c.GitHubClientID == "") != (c.GitHubClientSecret == "") {
		return errors.New("GitHub sign-in needs both github_client_id and github_client_secret_file (WRENN_GITHUB_CLIENT_ID, WRENN_GITHUB_CLIENT_SECRET or WRENN_GITHUB_CLIENT_SECRET_FILE)")
	}
	for _, u := range []struct{ key, v string }{{"public_url", c.PublicURL}, {"github_url", c.GitHubURL}, {"github_api_url", c.GitHubAPIURL}} {
		if u.v != "" && !strings.HasPrefix(u.v, "http://") && !strings.HasPrefix(u.v, "https://") {
			return fmt.Errorf("%s must be an http:// or https:// URL, not %q", u.key, u.v)
		}
	}
	return nil
}

// ProxyCert is the sandbox proxy's certificate pair: its own, or the API's.
func (c Config) ProxyCert() (certFile, keyFile string) {
	if c.ProxyTLSCertFile != "" {
		return c.ProxyTLSCertFile, c.ProxyTLSKeyFile
	}
	return c.TLSCertFile, c.TLSKeyFile
}
