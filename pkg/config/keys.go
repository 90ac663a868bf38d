package config

import (
	"fmt"
	"os"
	"strings"

	"git.omukk.dev/wrenn/sandbox/pkg/settings"
)

// ConfigEnv names the configuration file when --config does not.
const ConfigEnv = "WRENN_CP_CONFIG"

// Keys is every setting of the control plane: its key in the TOML file,
// its environment variable (which takes precedence over the file) and the
// field it sets. A new setting is a field in Config, its default in
// Defaults, and one row here; the file, the environment, check-config and
// the key list in errors follow from the row.
func Keys(c *Config) []settings.Key {
	return []settings.Key{
		settings.String("listen", "WRENN_CP_LISTEN", &c.Listen, "the API's address"),
		{Name: "proxy_listen", Env: "WRENN_PROXY_LISTEN", Kind: settings.KindString, Empty: true, Help: "the sandbox proxy's address; empty turns it off",
			Set: func(v string) error { c.ProxyListen = v; return nil }},
		{Name: "metrics_listen", Env: "WRENN_METRICS_LISTEN", Kind: settings.KindString, Empty: true, Help: "address of the Prometheus /metrics listener (with /healthz and /readyz); empty turns it off",
			Set: func(v string) error { c.MetricsListen = v; return nil }},
		settings.String("sandbox_domain", "WRENN_SANDBOX_DOMAIN", &c.SandboxDomain, "route the proxy by Host: <port>-<sandboxID>.<domain>"),
		settings.String("database_url", "WRENN_DATABASE_URL", &c.DatabaseURL, "PostgreSQL connection string"),
		// The secret itself only from the environment; a file holds the
		// path of the file holding it. WRENN_CP_SECRET comes before
		// WRENN_CP_SECRET_FILE, so the latter wins when both are set.
		{Env: "WRENN_CP_SECRET", Kind: settings.KindString, Help: "the secret itself (at least 32 bytes)",
			Set: func(v string) error { c.Secret = []byte(v); return nil }},
		{Name: "secret_file", Env: "WRENN_CP_SECRET_FILE", Shadows: []string{"WRENN_CP_SECRET"}, Kind: settings.KindString,
			Help: "file holding the secret the session-signing and sealing keys derive from (at least 32 bytes; replicas share it)",
			Set: func(path string) error {
				b, err := os.ReadFile(path)
				if err != nil {
					return fmt.Errorf("read the secret: %w", err)
				}
				// Only the line ending an editor or `echo` adds: the rest,
				// even bytes that look like spaces, is the secret.
				c.Secret = []byte(strings.TrimRight(string(b), "\r\n"))
				return nil
			}},
		settings.Duration("session_ttl", "WRENN_SESSION_TTL", &c.SessionTTL, "how long a login lasts"),
		settings.Bool("allow_signup", "WRENN_ALLOW_SIGNUP", &c.AllowSignup, "let anyone create an account (never a platform admin: make one with `create-admin`)"),
		settings.Int("auth_rate_per_minute", "WRENN_AUTH_RATE_PER_MINUTE", &c.AuthRatePerMinute, "sign-up and login attempts per client IP and minute"),
		settings.Int("auth_account_rate_per_minute", "WRENN_AUTH_ACCOUNT_RATE_PER_MINUTE", &c.AuthAccountRatePerMinute, "sign-in attempts per account (email) and minute, from all addresses together"),
		settings.Int("anonymous_audit_per_minute", "WRENN_ANONYMOUS_AUDIT_PER_MINUTE", &c.AnonymousAuditPerMinute, "unauthenticated requests per client IP and minute written to the audit log (the rest are only counted)"),
		{Name: "trusted_proxies", Env: "WRENN_TRUSTED_PROXIES", Kind: settings.KindString, Help: "reverse proxies in front of the control plane, comma-separated addresses or CIDR ranges, whose X-Forwarded-For is believed",
			Set: func(v string) error { c.TrustedProxies = SplitList(v); return nil }},
		settings.Duration("stream_auth_interval", "WRENN_STREAM_AUTH_INTERVAL", &c.StreamAuthInterval, "how often an open stream's credential is checked again"),
		settings.Duration("heartbeat_timeout", "WRENN_HEARTBEAT_TIMEOUT", &c.HeartbeatTimeout, "a host without a heartbeat this long is unreachable"),
		settings.Duration("reconcile_interval", "WRENN_RECONCILE_INTERVAL", &c.ReconcileInterval, "how often agents' sandboxes are compared with the database"),
		settings.Duration("transition_grace", "WRENN_TRANSITION_GRACE", &c.TransitionGrace, "how long a sandbox may stay creating, pausing, … before the reconciler settles it"),
		settings.Int64("max_body_bytes", "WRENN_MAX_BODY_BYTES", &c.MaxBodyBytes, "largest JSON request body"),
		settings.Duration("host_token_ttl", "WRENN_HOST_TOKEN_TTL", &c.HostTokenTTL, "how long a host registration token stays valid"),
		settings.Duration("host_cert_ttl", "WRENN_HOST_CERT_TTL", &c.HostCertTTL, "how long a host's mutual-TLS certificate is valid; agents renew after two thirds of it"),
		settings.Int("max_disk_mib", "WRENN_MAX_DISK_MIB", &c.MaxDiskMiB, "largest disk one sandbox may ask for, in MiB"),
		settings.Int("exec_max_output_bytes", "WRENN_EXEC_MAX_OUTPUT_BYTES", &c.ExecMaxOutput, "bound on each of stdout and stderr POST /v1/sandboxes/{id}/exec returns (at most 64 MiB)"),
		settings.Int("quota_sandboxes", "WRENN_QUOTA_SANDBOXES", &c.Quota.Sandboxes, "a team's default quota: sandboxes not stopped, paused ones included"),
		settings.Int("quota_vcpus", "WRENN_QUOTA_VCPUS", &c.Quota.VCPUs, "a team's default quota: vCPUs of running sandboxes"),
		settings.Int64("quota_memory_mib", "WRENN_QUOTA_MEMORY_MIB", &c.Quota.MemoryMiB, "a team's default quota: memory of running sandboxes, in MiB"),
		settings.Int64("quota_disk_mib", "WRENN_QUOTA_DISK_MIB", &c.Quota.DiskMiB, "a team's default quota: disk of sandboxes not stopped, in MiB"),
		settings.Int("quota_snapshots", "WRENN_QUOTA_SNAPSHOTS", &c.Quota.Snapshots, "a team's default quota: snapshots kept"),
		settings.Int("quota_creates_per_minute", "WRENN_QUOTA_CREATES_PER_MINUTE", &c.Quota.CreatesPerMinute, "a team's default quota: sandbox creates per minute, failed ones included"),
		settings.Int("proxy_max_per_sandbox", "WRENN_PROXY_MAX_PER_SANDBOX", &c.ProxyMaxPerSandbox, "requests the sandbox proxy carries to one sandbox at once (past it, 503)"),
		settings.Int("proxy_max_per_client", "WRENN_PROXY_MAX_PER_CLIENT", &c.ProxyMaxPerClient, "requests the sandbox proxy carries from one client IP at once (past it, 429; its connections are bounded at twice it)"),
		settings.Duration("proxy_idle_timeout", "WRENN_PROXY_IDLE_TIMEOUT", &c.ProxyIdleTimeout, "the sandbox proxy closes a client's idle kept-alive connection after this"),
		settings.Duration("proxy_header_timeout", "WRENN_PROXY_HEADER_TIMEOUT", &c.ProxyHeaderTimeout, "a request's headers must reach the sandbox proxy within this"),
		settings.String("tls_cert_file", "WRENN_TLS_CERT_FILE", &c.TLSCertFile, "the API's certificate chain (PEM), read again when it changes"),
		settings.String("tls_key_file", "WRENN_TLS_KEY_FILE", &c.TLSKeyFile, "the API's private key (PEM)"),
		settings.String("proxy_tls_cert_file", "WRENN_PROXY_TLS_CERT_FILE", &c.ProxyTLSCertFile, "the sandbox proxy's certificate chain, a wildcard for *.<sandbox_domain> (default: the API's)"),
		settings.String("proxy_tls_key_file", "WRENN_PROXY_TLS_KEY_FILE", &c.ProxyTLSKeyFile, "the sandbox proxy's private key"),
		{Name: "public_url", Env: "WRENN_PUBLIC_URL", Kind: settings.KindString, Help: "where users reach the control plane (https://wrenn.example.com): GitHub's callback and the commands the dashboard shows",
			Set: func(v string) error { c.PublicURL = strings.TrimRight(v, "/"); return nil }},
		settings.String("github_client_id", "WRENN_GITHUB_CLIENT_ID", &c.GitHubClientID, "GitHub sign-in: the OAuth app's client ID (callback <public_url>/v1/auth/github/callback); off when empty"),
		{Env: "WRENN_GITHUB_CLIENT_SECRET", Kind: settings.KindString, Help: "GitHub sign-in: the OAuth app's client secret itself",
			Set: func(v string) error { c.GitHubClientSecret = v; return nil }},
		{Name: "github_client_secret_file", Env: "WRENN_GITHUB_CLIENT_SECRET_FILE", Shadows: []string{"WRENN_GITHUB_CLIENT_SECRET"}, Kind: settings.KindString,
			Help: "GitHub sign-in: file holding the OAuth app's client secret",
			Set: func(path string) error {
				b, err := os.ReadFile(path)
				if err != nil {
					return fmt.Errorf("read the GitHub client secret: %w", err)
				}
				c.GitHubClientSecret = strings.TrimRight(string(b), "\r\n")
				return nil
			}},
		{Name: "github_url", Env: "WRENN_GITHUB_URL", Kind: settings.KindString, Help: "GitHub's web base (GitHub Enterprise, tests)",
			Set: func(v string) error { c.GitHubURL = strings.TrimRight(v, "/"); return nil }},
		{Name: "github_api_url", Env: "WRENN_GITHUB_API_URL", Kind: settings.KindString, Help: "GitHub's API base (GitHub Enterprise, tests)",
			Set: func(v string) error { c.GitHubAPIURL = strings.TrimRight(v, "/"); return nil }},
		settings.Bool("plain_http", "WRENN_PLAIN_HTTP", &c.PlainHTTP, "serve plain HTTP without TLS (development, or behind a proxy that terminates TLS)"),
	}
}

// Load reads file (none when empty), then the WRENN_* variables, over
// the defaults.
func Load(file string) (Config, error) {
	c, _, err := LoadFrom(settings.Sources{File: file})
	return c, err
}

// LoadFrom is Load with the sources spelled out; it also says where each
// value came from.
func LoadFrom(src settings.Sources) (Config, settings.Applied, error) {
	c := Defaults()
	applied, err := settings.Load(Keys(&c), src)
	return c, applied, err
}
