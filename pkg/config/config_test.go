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
