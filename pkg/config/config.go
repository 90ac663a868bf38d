// Package config is the control plane's configuration: its fields, their
// defaults, and how they are read from the environment.
package config

import (
	"fmt"
	"os"
	"strconv"
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

// FromEnv reads the WRENN_* variables over the defaults.
func FromEnv() (Config, error) {
	c := Defaults()
	if v := os.Getenv("WRENN_CP_LISTEN"); v != "" {
		c.Listen = v
	}
	if v, ok := os.LookupEnv("WRENN_PROXY_LISTEN"); ok {
		c.ProxyListen = v
	}
	c.SandboxDomain = os.Getenv("WRENN_SANDBOX_DOMAIN")
	c.DatabaseURL = os.Getenv("WRENN_DATABASE_URL")
	if f := os.Getenv("WRENN_CP_SECRET_FILE"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return c, fmt.Errorf("read WRENN_CP_SECRET_FILE: %w", err)
		}
		// Only the line ending an editor or `echo` adds: the rest, even
		// bytes that look like spaces, is the secret.
		c.Secret = []byte(strings.TrimRight(string(b), "\r\n"))
	} else if v := os.Getenv("WRENN_CP_SECRET"); v != "" {
		c.Secret = []byte(v)
	}
	c.PublicURL = strings.TrimRight(os.Getenv("WRENN_PUBLIC_URL"), "/")
	c.GitHubClientID = os.Getenv("WRENN_GITHUB_CLIENT_ID")
	if f := os.Getenv("WRENN_GITHUB_CLIENT_SECRET_FILE"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return c, fmt.Errorf("read WRENN_GITHUB_CLIENT_SECRET_FILE: %w", err)
		}
		c.GitHubClientSecret = strings.TrimRight(string(b), "\r\n")
	} else {
		c.GitHubClientSecret = os.Getenv("WRENN_GITHUB_CLIENT_SECRET")
	}
	if v := os.Getenv("WRENN_GITHUB_URL"); v != "" {
		c.GitHubURL = strings.TrimRight(v, "/")
	}
	if v := os.Getenv("WRENN_GITHUB_API_URL"); v != "" {
		c.GitHubAPIURL = strings.TrimRight(v, "/")
	}
	var err error
	dur := func(name string, into *time.Duration) {
		if v := os.Getenv(name); v != "" && err == nil {
			if *into, err = time.ParseDuration(v); err != nil {
				err = fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	dur("WRENN_SESSION_TTL", &c.SessionTTL)
	dur("WRENN_HEARTBEAT_TIMEOUT", &c.HeartbeatTimeout)
	dur("WRENN_RECONCILE_INTERVAL", &c.ReconcileInterval)
	dur("WRENN_TRANSITION_GRACE", &c.TransitionGrace)
	if v := os.Getenv("WRENN_ALLOW_SIGNUP"); v != "" && err == nil {
		if c.AllowSignup, err = strconv.ParseBool(v); err != nil {
			err = fmt.Errorf("WRENN_ALLOW_SIGNUP: %w", err)
		}
	}
	if v := os.Getenv("WRENN_AUTH_RATE_PER_MINUTE"); v != "" && err == nil {
		if c.AuthRatePerMinute, err = strconv.Atoi(v); err != nil {
			err = fmt.Errorf("WRENN_AUTH_RATE_PER_MINUTE: %w", err)
		}
	}
	return c, err
}

// Validate names the first missing or unusable setting.
func (c Config) Validate() error {
	switch {
	case c.DatabaseURL == "":
		return fmt.Errorf("no database: set WRENN_DATABASE_URL (for example postgres://wrenn@localhost/wrenn)")
	case len(c.Secret) < 32:
		return fmt.Errorf("the control plane secret must be at least 32 bytes: set WRENN_CP_SECRET_FILE to a file holding one (head -c 32 /dev/urandom | base64 > secret)")
	case c.SessionTTL <= 0 || c.HeartbeatTimeout <= 0 || c.ReconcileInterval <= 0:
		return fmt.Errorf("durations must be positive")
	case (c.GitHubClientID == "") != (c.GitHubClientSecret == ""):
		return fmt.Errorf("GitHub sign-in needs both WRENN_GITHUB_CLIENT_ID and WRENN_GITHUB_CLIENT_SECRET (or _FILE)")
	}
	for name, u := range map[string]string{"WRENN_PUBLIC_URL": c.PublicURL, "WRENN_GITHUB_URL": c.GitHubURL, "WRENN_GITHUB_API_URL": c.GitHubAPIURL} {
		if u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return fmt.Errorf("%s must be an http:// or https:// URL, got %q", name, u)
		}
	}
	return nil
}
