package config

import (
	"os"
	"path/filepath"
	"testing"
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
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestTrustedProxies(t *testing.T) {
	t.Setenv("WRENN_TRUSTED_PROXIES", " 10.0.0.0/8, 192.0.2.1 ,")
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	c.DatabaseURL, c.Secret = "postgres://x", make([]byte, 32)
	if len(c.TrustedProxies) != 2 || c.Validate() != nil {
		t.Fatalf("trusted proxies %q: %v", c.TrustedProxies, c.Validate())
	}
	c.TrustedProxies = []string{"proxy.example.com"}
	if err := c.Validate(); err == nil {
		t.Fatal("a host name was accepted as a trusted proxy")
	}
}
