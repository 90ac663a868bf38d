// Package config is the control plane's configuration: its fields, their
// defaults, and how they are read from the environment.
package config

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/clientip"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
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

// Defaults returns a Config with every default filled in.
func Defaults() Config {
	return Config{
		Listen: ":8080", ProxyListen: ":8081", SessionTTL: 24 * time.Hour, AuthRatePerMinute: 20, AuthAccountRatePerMinute: 10, AnonymousAuditPerMinute: 30,
		HeartbeatTimeout: 30 * time.Second, ReconcileInterval: 30 * time.Second, TransitionGrace: 2 * time.Minute,
		MaxBodyBytes: 1 << 20, HostTokenTTL: time.Hour, StreamAuthInterval: 5 * time.Second, MaxDiskMiB: 65536,
		ExecMaxOutput: hostapi.DefaultExecOutput, ProxyMaxPerSandbox: 200, ProxyMaxPerClient: 100, ProxyIdleTimeout: 60 * time.Second, ProxyHeaderTimeout: 10 * time.Second,
		Quota: Quota{Sandboxes: 10, VCPUs: 16, MemoryMiB: 16384, DiskMiB: 102400, Snapshots: 20, CreatesPerMinute: 30},
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
	var errs []error
	env := func(name string, set func(string) error) {
		if v := os.Getenv(name); v != "" {
			if err := set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	}
	dur := func(name string, into *time.Duration) { env(name, parseInto(into, time.ParseDuration)) }
	num := func(name string, into *int) { env(name, parseInto(into, strconv.Atoi)) }
	num64 := func(name string, into *int64) {
		env(name, parseInto(into, func(v string) (int64, error) { return strconv.ParseInt(v, 10, 64) }))
	}
	dur("WRENN_SESSION_TTL", &c.SessionTTL)
	dur("WRENN_HEARTBEAT_TIMEOUT", &c.HeartbeatTimeout)
	dur("WRENN_RECONCILE_INTERVAL", &c.ReconcileInterval)
	dur("WRENN_TRANSITION_GRACE", &c.TransitionGrace)
	dur("WRENN_STREAM_AUTH_INTERVAL", &c.StreamAuthInterval)
	dur("WRENN_PROXY_IDLE_TIMEOUT", &c.ProxyIdleTimeout)
	dur("WRENN_PROXY_HEADER_TIMEOUT", &c.ProxyHeaderTimeout)
	env("WRENN_ALLOW_SIGNUP", parseInto(&c.AllowSignup, strconv.ParseBool))
	num("WRENN_AUTH_RATE_PER_MINUTE", &c.AuthRatePerMinute)
	num("WRENN_AUTH_ACCOUNT_RATE_PER_MINUTE", &c.AuthAccountRatePerMinute)
	num("WRENN_ANONYMOUS_AUDIT_PER_MINUTE", &c.AnonymousAuditPerMinute)
	num("WRENN_MAX_DISK_MIB", &c.MaxDiskMiB)
	num("WRENN_EXEC_MAX_OUTPUT_BYTES", &c.ExecMaxOutput)
	num("WRENN_PROXY_MAX_PER_SANDBOX", &c.ProxyMaxPerSandbox)
	num("WRENN_PROXY_MAX_PER_CLIENT", &c.ProxyMaxPerClient)
	num("WRENN_QUOTA_SANDBOXES", &c.Quota.Sandboxes)
	num("WRENN_QUOTA_VCPUS", &c.Quota.VCPUs)
	num("WRENN_QUOTA_SNAPSHOTS", &c.Quota.Snapshots)
	num("WRENN_QUOTA_CREATES_PER_MINUTE", &c.Quota.CreatesPerMinute)
	num64("WRENN_QUOTA_MEMORY_MIB", &c.Quota.MemoryMiB)
	num64("WRENN_QUOTA_DISK_MIB", &c.Quota.DiskMiB)
	c.TrustedProxies = SplitList(os.Getenv("WRENN_TRUSTED_PROXIES"))
	return c, errors.Join(errs...)
}

// parseInto makes a setter of into from a parser.
func parseInto[T any](into *T, parse func(string) (T, error)) func(string) error {
	return func(v string) error {
		x, err := parse(v)
		if err == nil {
			*into = x
		}
		return err
	}
}

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

// Validate names the first missing or unusable setting.
func (c Config) Validate() error {
	for _, p := range c.TrustedProxies {
		if _, err := clientip.ParsePrefix(p); err != nil {
			return fmt.Errorf("WRENN_TRUSTED_PROXIES: %w", err)
		}
	}
	switch {
	case c.DatabaseURL == "":
		return fmt.Errorf("no database: set WRENN_DATABASE_URL (for example postgres://wrenn@localhost/wrenn)")
	case len(c.Secret) < 32:
		return fmt.Errorf("the control plane secret must be at least 32 bytes: set WRENN_CP_SECRET_FILE to a file holding one (head -c 32 /dev/urandom | base64 > secret)")
	case c.SessionTTL <= 0 || c.HeartbeatTimeout <= 0 || c.ReconcileInterval <= 0 || c.StreamAuthInterval <= 0:
		return fmt.Errorf("durations must be positive")
	case c.Quota.Sandboxes < 0 || c.Quota.VCPUs < 0 || c.Quota.MemoryMiB < 0 || c.Quota.DiskMiB < 0 || c.Quota.Snapshots < 0 || c.Quota.CreatesPerMinute < 0:
		return fmt.Errorf("WRENN_QUOTA_* limits cannot be negative")
	case c.ProxyMaxPerSandbox < 1 || c.ProxyMaxPerClient < 1 || c.ProxyIdleTimeout <= 0 || c.ProxyHeaderTimeout <= 0:
		return fmt.Errorf("the WRENN_PROXY_* limits must be positive")
	case c.ExecMaxOutput < 1 || c.ExecMaxOutput > hostapi.MaxExecOutput:
		return fmt.Errorf("WRENN_EXEC_MAX_OUTPUT_BYTES must be 1 to %d", hostapi.MaxExecOutput)
	case c.MaxDiskMiB < 1:
		return fmt.Errorf("WRENN_MAX_DISK_MIB must be at least 1")
	case c.AuthRatePerMinute < 1 || c.AuthAccountRatePerMinute < 1 || c.AnonymousAuditPerMinute < 1:
		return fmt.Errorf("WRENN_AUTH_RATE_PER_MINUTE, WRENN_AUTH_ACCOUNT_RATE_PER_MINUTE and WRENN_ANONYMOUS_AUDIT_PER_MINUTE must be at least 1")
	}
	return nil
}
