package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A secret file's bytes are the secret, whatever they are, except the
// trailing newline an editor adds.
func TestSecretFileKeepsItsBytes(t *testing.T) {
	secret := []byte(" \t\x0bsecret-with-space-like-bytes-at-both-ends \x0c")
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, append(append([]byte{}, secret...), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WRENN_CP_SECRET_FILE", path)
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Secret) != string(secret) {
		t.Fatalf("secret %q, want %q", c.Secret, secret)
	}
}

func TestValidateNamesWhatIsMissing(t *testing.T) {
	c := Defaults()
	if err := c.Validate(); err == nil {
		t.Fatal("no database accepted")
	}
	c.DatabaseURL = "postgres://x"
	c.Secret = []byte("short")
	if err := c.Validate(); err == nil {
		t.Fatal("short secret accepted")
	}
	c.Secret = make([]byte, 32)
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "tls_cert_file") {
		t.Fatalf("no certificate and no plain_http: %v", err)
	}
	c.PlainHTTP = true
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.TLSCertFile = "/cert.pem"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "tls_key_file") {
		t.Fatalf("a certificate without its key: %v", err)
	}
	c.TLSKeyFile = "/key.pem"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "plain_http") {
		t.Fatalf("plain_http with a certificate: %v", err)
	}
	c.PlainHTTP = false
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.SessionTTL = -time.Second
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "session_ttl") {
		t.Fatalf("negative session_ttl: %v", err)
	}
}

// The file's values apply over the defaults and every environment
// variable over the file; a bad value names the file, the key and why.
func TestFileThenEnvironment(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "cp.toml")
	body := `listen = ":443"
database_url = "postgres://file/wrenn"
secret_file = "` + secretFile + `"
session_ttl = "2h"
allow_signup = false
tls_cert_file = "/etc/wrenn/tls/cert.pem"
tls_key_file = "/etc/wrenn/tls/key.pem"
`
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WRENN_DATABASE_URL", "postgres://env/wrenn")
	t.Setenv("WRENN_ALLOW_SIGNUP", "true")
	c, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":443" || c.DatabaseURL != "postgres://env/wrenn" || !c.AllowSignup || c.SessionTTL != 2*time.Hour ||
		string(c.Secret) != "0123456789abcdef0123456789abcdef" || c.TLSCertFile != "/etc/wrenn/tls/cert.pem" || c.ProxyListen != ":8081" {
		t.Fatalf("loaded %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if cert, _ := c.ProxyCert(); cert != c.TLSCertFile {
		t.Errorf("the proxy does not default to the API's certificate: %s", cert)
	}
	t.Setenv("WRENN_CP_SECRET", "from-the-environment-at-least-32-bytes")
	if c, _ = Load(file); string(c.Secret) != "from-the-environment-at-least-32-bytes" {
		t.Errorf("WRENN_CP_SECRET did not take precedence over the file's secret_file: %q", c.Secret)
	}

	if err := os.WriteFile(file, []byte("heartbeat_timeout = \"10\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(file)
	if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), `"heartbeat_timeout"`) || !strings.Contains(err.Error(), "missing unit") {
		t.Fatalf("bad duration: %v", err)
	}
}

func TestTrustedProxies(t *testing.T) {
	t.Setenv("WRENN_TRUSTED_PROXIES", " 10.0.0.0/8, 192.0.2.1 ,")
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	c.DatabaseURL, c.Secret, c.PlainHTTP = "postgres://x", make([]byte, 32), true
	if len(c.TrustedProxies) != 2 || c.Validate() != nil {
		t.Fatalf("trusted proxies %q: %v", c.TrustedProxies, c.Validate())
	}
	c.TrustedProxies = []string{"proxy.example.com"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "trusted_proxies") {
		t.Fatalf("a host name as a trusted proxy: %v", err)
	}
}

// The security limits are keys of the file like any other, and a bad one
// is refused by its key.
func TestSecurityLimitKeys(t *testing.T) {
	file := filepath.Join(t.TempDir(), "cp.toml")
	text := `trusted_proxies = "10.1.0.0/16"
quota_vcpus = 4
quota_memory_mib = 2048
max_disk_mib = 4096
exec_max_output_bytes = 1024
proxy_idle_timeout = "5s"
stream_auth_interval = "1s"
auth_account_rate_per_minute = 3
`
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.TrustedProxies) != 1 || c.Quota.VCPUs != 4 || c.Quota.MemoryMiB != 2048 || c.MaxDiskMiB != 4096 || c.ExecMaxOutput != 1024 ||
		c.ProxyIdleTimeout != 5*time.Second || c.StreamAuthInterval != time.Second || c.AuthAccountRatePerMinute != 3 {
		t.Fatalf("loaded %+v", c)
	}
	t.Setenv("WRENN_QUOTA_VCPUS", "8")
	if c, err = Load(file); err != nil || c.Quota.VCPUs != 8 {
		t.Fatalf("the environment over the file: %d %v", c.Quota.VCPUs, err)
	}
	c.DatabaseURL, c.Secret, c.PlainHTTP = "postgres://x", make([]byte, 32), true
	for key, bad := range map[string]func(*Config){
		"quota_snapshots":       func(c *Config) { c.Quota.Snapshots = -1 },
		"exec_max_output_bytes": func(c *Config) { c.ExecMaxOutput = 65<<20 + 1 },
		"proxy_max_per_client":  func(c *Config) { c.ProxyMaxPerClient = 0 },
		"stream_auth_interval":  func(c *Config) { c.StreamAuthInterval = 0 },
	} {
		b := c
		bad(&b)
		if err := b.Validate(); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("bad %s: %v", key, err)
		}
	}
}

func TestMetricsListen(t *testing.T) {
	t.Setenv("WRENN_METRICS_LISTEN", "127.0.0.1:9464")
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	c.DatabaseURL, c.Secret, c.PlainHTTP = "postgres://x", make([]byte, 32), true
	if c.MetricsListen != "127.0.0.1:9464" || c.Validate() != nil {
		t.Fatalf("metrics_listen %q: %v", c.MetricsListen, c.Validate())
	}
	c.MetricsListen = "9464"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "metrics_listen") {
		t.Fatalf("metrics_listen without a host part: %v", err)
	}
}
