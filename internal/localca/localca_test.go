package localca

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
)

// TestOpenKeepsItsRoot: a CA opened twice from one directory is the same
// root (what a client was told to trust stays valid), its key is readable
// by its owner only, and a certificate it issues verifies against its
// ca.pem for the names asked, wildcards included.
func TestOpenKeepsItsRoot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	a, err := Open(dir, "test dev CA")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(dir, "test dev CA")
	if err != nil {
		t.Fatal(err)
	}
	if !a.Cert.Equal(b.Cert) {
		t.Fatal("a second Open made another root")
	}
	if fi, err := os.Stat(filepath.Join(dir, "ca.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key: %v %v", fi.Mode(), err)
	}
	certFile, keyFile, err := b.IssueFiles(dir, "proxy", "proxy", "*.wrenn.localhost", "wrenn.localhost")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	for _, name := range []string{"49983-isb123.wrenn.localhost", "wrenn.localhost"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "a.b.wrenn.localhost"}); err == nil {
		t.Error("the wildcard covered two labels")
	}
	if leaf.NotAfter.Sub(leaf.NotBefore) < 80*24*60*60*1e9 {
		t.Errorf("a dev certificate lasts %s", leaf.NotAfter.Sub(leaf.NotBefore))
	}

	// A key that does not load is said, not replaced silently.
	os.WriteFile(filepath.Join(dir, "ca.key"), []byte("junk"), 0o600)
	if _, err := Open(dir, "test dev CA"); err == nil {
		t.Error("a CA with a broken key opened")
	}
}
