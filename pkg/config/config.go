// Package config is the control plane's configuration: its fields, their
// defaults, and the table of keys (keys.go) through which they are read
// from a TOML file and the environment.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/clientip"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
	"git.omukk.dev/wrenn/sandbox/pkg/limits"
)

// Config configures wrenn-cp.
type Config struct {
	// Listen is the API's address (WRENN_CP_LISTEN, default :8080).
	Listen string
	// ProxyListen is the sandbox traffic proxy's address
	// (WRENN_PROXY_LISTEN, default :8081; empty turns it off).
	ProxyListen string
	// MetricsListen is where Prometheus scrapes /metrics (also /healthz,
	// /readyz) (WRENN_METRICS_LISTEN; empty, the default, turns it off).
	// A listener of its own, never the API's: bind it to loopback or a
	// private interface that only the Prometheus server reaches.
	MetricsListen string
	// SandboxDomain routes proxy requests by Host: <port>-<sandboxID>.<domain>
	// (WRENN_SANDBOX_DOMAIN). Without it, requests are routed by the
	// E2b-Sandbox-Id and E2b-Sandbox-Port headers only. A port may follow
	// (sandbox.example.com:8443) when the proxy is not on 443: clients
	// build URLs from the domain as given, the proxy matches Host without it.
	SandboxDomain string
	// DatabaseURL is a PostgreSQL connection string (WRENN_DATABASE_URL).
	DatabaseURL string
	// Secret derives the session-signing and sealing keys; at least 32
	// bytes (WRENN_CP_SECRET, or the file named by WRENN_CP_SECRET_FILE).
	Secret []byte
	// SessionTTL is how long a login lasts (WRENN_SESSION_TTL, default 24h).
	SessionTTL time.Duration
	// AllowSignup lets anyone who reaches the API create an account
	// (WRENN_ALLOW_SIGNUP, default false). Signing up never makes a
	// platform admin: the first one is made on the host with
	// `control-plane create-admin`.
	AllowSignup bool
	// AuthRatePerMinute limits sign-up, sign-in and host registration
	// attempts per client address (WRENN_AUTH_RATE_PER_MINUTE, default 20).
	AuthRatePerMinute int
	// AuthAccountRatePerMinute limits sign-in attempts per account (email),
	// from all addresses together (WRENN_AUTH_ACCOUNT_RATE_PER_MINUTE,
	// default 10).
	AuthAccountRatePerMinute int
	// AnonymousAuditPerMinute bounds how many unauthenticated requests per
	// client address are written to the audit log and the log each minute
	// (WRENN_ANONYMOUS_AUDIT_PER_MINUTE, default 30); past it they are
	// still refused, and only counted.
	AnonymousAuditPerMinute int
	// StreamAuthInterval is how often an open WebSocket stream's
	// credential is checked again: a stream ends within it once its key
	// or session is revoked or its user deactivated
	// (WRENN_STREAM_AUTH_INTERVAL, default 5s).
	StreamAuthInterval time.Duration
	// Quota is what one team may hold by default; admins set other
	// limits per team (PUT /v1/admin/teams/{teamID}/quota).
	Quota Quota
	// MaxDiskMiB bounds the disk one sandbox may ask for
	// (WRENN_MAX_DISK_MIB, default 65536); a host refuses more than it
	// has free beside what its sandboxes were promised.
	MaxDiskMiB int
	// ProxyMaxPerSandbox bounds the requests the sandbox proxy carries to
	// one sandbox at once (WRENN_PROXY_MAX_PER_SANDBOX, default 200; past
	// it, 503), and ProxyMaxPerClient those from one client address
	// (WRENN_PROXY_MAX_PER_CLIENT, default 100; past it, 429, and a
	// client's TCP connections are bounded at twice it).
	ProxyMaxPerSandbox int
	ProxyMaxPerClient  int
	// ProxyIdleTimeout closes a client's idle kept-alive connection to
	// the proxy (WRENN_PROXY_IDLE_TIMEOUT, default 60s); headers must
	// arrive within ProxyHeaderTimeout (WRENN_PROXY_HEADER_TIMEOUT,
	// default 10s).
	ProxyIdleTimeout   time.Duration
	ProxyHeaderTimeout time.Duration
	// ExecMaxOutput bounds each of stdout and stderr that POST
	// /v1/sandboxes/{id}/exec returns (WRENN_EXEC_MAX_OUTPUT_BYTES,
	// default 16 MiB, at most 64 MiB); the response says when it cut.
	ExecMaxOutput int
	// TrustedProxies are the reverse proxies in front of the control plane
	// (addresses or CIDR ranges; WRENN_TRUSTED_PROXIES, comma-separated).
	// A request from one of them is attributed to the right-most address
	// of its X-Forwarded-For that is not a trusted proxy; X-Forwarded-For
	// from anyone else is ignored. Without it every client is its TCP peer.
	TrustedProxies []string
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
	// HostCertTTL is how long a host's certificate (control plane <->
	// agent mutual TLS) is valid (WRENN_HOST_CERT_TTL, default 720h);
	// agents renew theirs after two thirds of it.
	HostCertTTL time.Duration
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

// Quota is a team's limits.
type Quota struct {
	// Sandboxes that are not stopped, paused ones included
	// (WRENN_QUOTA_SANDBOXES, default 10).
	Sandboxes int
	// VCPUs and MemoryMiB of running sandboxes (WRENN_QUOTA_VCPUS,
	// default 16; WRENN_QUOTA_MEMORY_MIB, default 16384).
	VCPUs     int
	MemoryMiB int64
	// DiskMiB of sandboxes that are not stopped (WRENN_QUOTA_DISK_MIB,
	// default 102400).
	DiskMiB int64
	// Snapshots kept (WRENN_QUOTA_SNAPSHOTS, default 20).
	Snapshots int
	// CreatesPerMinute counts sandbox creates, failed ones included
	// (WRENN_QUOTA_CREATES_PER_MINUTE, default 30).
	CreatesPerMinute int
}

// GitHubEnabled reports whether GitHub sign-in is configured.
func (c Config) GitHubEnabled() bool { return c.GitHubClientID != "" && c.GitHubClientSecret != "" }

// Defaults returns a Config with every default filled in.
func Defaults() Config {
	return Config{
		Listen: ":8080", ProxyListen: ":8081", SessionTTL: 24 * time.Hour, AuthRatePerMinute: 20, AuthAccountRatePerMinute: 10, AnonymousAuditPerMinute: 30,
		HeartbeatTimeout: 30 * time.Second, ReconcileInterval: 30 * time.Second, TransitionGrace: 2 * time.Minute,
		MaxBodyBytes: 1 << 20, HostTokenTTL: time.Hour, HostCertTTL: 30 * 24 * time.Hour, StreamAuthInterval: 5 * time.Second, MaxDiskMiB: 65536,
		ExecMaxOutput: hostapi.DefaultExecOutput, ProxyMaxPerSandbox: 200, ProxyMaxPerClient: 100, ProxyIdleTimeout: 60 * time.Second, ProxyHeaderTimeout: 10 * time.Second,
		Quota:     Quota{Sandboxes: 10, VCPUs: 16, MemoryMiB: 16384, DiskMiB: 102400, Snapshots: 20, CreatesPerMinute: 30},
		GitHubURL: "https://github.com", GitHubAPIURL: "https://api.github.com",
	}
}

// FromEnv reads the file WRENN_CP_CONFIG names, if any, and the WRENN_*
// variables over it: what cpserver.Run uses without WithConfig, so a
// distribution built on it reads the same file.
func FromEnv() (Config, error) { return Load(os.Getenv(ConfigEnv)) }

// SplitList splits a comma-separated setting, dropping empty items.
func SplitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Validate names the first missing or unusable setting, by its key in the
// file and its environment variable.
func (c Config) Validate() error {
	for _, p := range c.TrustedProxies {
		if _, err := clientip.ParsePrefix(p); err != nil {
			return fmt.Errorf("trusted_proxies: %w", err)
		}
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return fmt.Errorf("metrics_listen: %q is not host:port (for example 127.0.0.1:9464): %w", c.MetricsListen, err)
		}
	}
	switch {
	case c.DatabaseURL == "":
		return fmt.Errorf("no database: set database_url or WRENN_DATABASE_URL (for example postgres://wrenn@localhost/wrenn)")
	case len(c.Secret) < 32:
		return fmt.Errorf("the control plane secret must be at least 32 bytes: set secret_file or WRENN_CP_SECRET_FILE to a file holding one (head -c 32 /dev/urandom | base64 > secret)")
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"session_ttl", c.SessionTTL}, {"heartbeat_timeout", c.HeartbeatTimeout}, {"reconcile_interval", c.ReconcileInterval}, {"transition_grace", c.TransitionGrace}, {"host_token_ttl", c.HostTokenTTL}, {"host_cert_ttl", c.HostCertTTL},
		{"stream_auth_interval", c.StreamAuthInterval}, {"proxy_idle_timeout", c.ProxyIdleTimeout}, {"proxy_header_timeout", c.ProxyHeaderTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("%s must be positive, not %s", d.key, d.v)
		}
	}
	for _, n := range []struct {
		key string
		v   int64
	}{{"auth_rate_per_minute", int64(c.AuthRatePerMinute)}, {"auth_account_rate_per_minute", int64(c.AuthAccountRatePerMinute)},
		{"anonymous_audit_per_minute", int64(c.AnonymousAuditPerMinute)}, {"max_disk_mib", int64(c.MaxDiskMiB)},
		{"proxy_max_per_sandbox", int64(c.ProxyMaxPerSandbox)}, {"proxy_max_per_client", int64(c.ProxyMaxPerClient)}} {
		if n.v <= 0 {
			return fmt.Errorf("%s must be positive, not %d", n.key, n.v)
		}
	}
	for _, n := range []struct {
		key string
		v   int64
	}{{"quota_sandboxes", int64(c.Quota.Sandboxes)}, {"quota_vcpus", int64(c.Quota.VCPUs)}, {"quota_memory_mib", c.Quota.MemoryMiB},
		{"quota_disk_mib", c.Quota.DiskMiB}, {"quota_snapshots", int64(c.Quota.Snapshots)}, {"quota_creates_per_minute", int64(c.Quota.CreatesPerMinute)}} {
		if n.v < 0 {
			return fmt.Errorf("%s cannot be negative, not %d", n.key, n.v)
		}
	}
	if c.MaxDiskMiB > limits.MaxDiskMiB {
		return fmt.Errorf("max_disk_mib must be at most %d, not %d", limits.MaxDiskMiB, c.MaxDiskMiB)
	}
	if c.ExecMaxOutput < 1 || c.ExecMaxOutput > hostapi.MaxExecOutput {
		return fmt.Errorf("exec_max_output_bytes must be 1 to %d, not %d", hostapi.MaxExecOutput, c.ExecMaxOutput)
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
