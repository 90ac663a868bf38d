package hostca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

// TestSignHost: the CA names the host and its address whatever the CSR
// asks for, refuses malformed requests and other key types, and a
// certificate verifies only against its own CA and for its identity.
func TestSignHost(t *testing.T) {
	ca, err := New()
	if err != nil {
		t.Fatal(err)
	}
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "evil"},
		DNSNames: []string{"cp.example.com"}, URIs: nil}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	cert, _, err := ca.SignHost(csr, "host-1", "db.internal:7070", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if HostID(cert) != "host-1" || len(cert.DNSNames) != 1 || cert.DNSNames[0] != "db.internal" || cert.IsCA {
		t.Fatalf("names: host %q DNS %v", HostID(cert), cert.DNSNames)
	}
	if err := Verify(ca.Pool(), cert, x509.ExtKeyUsageServerAuth, HostURI("host-1")); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ca.Pool(), cert, x509.ExtKeyUsageServerAuth, ControlPlaneURI); err == nil {
		t.Error("a host certificate passed for the control plane")
	}
	other, _ := New()
	if err := Verify(other.Pool(), cert, x509.ExtKeyUsageClientAuth, HostURI("host-1")); err == nil {
		t.Error("verified against another CA")
	}
	cp, err := ca.ControlPlaneCertificate()
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(ca.Pool(), cp.Leaf, x509.ExtKeyUsageClientAuth, ControlPlaneURI); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ca.Pool(), cp.Leaf, x509.ExtKeyUsageServerAuth, ControlPlaneURI); err == nil {
		t.Error("the control plane's client certificate passed as a server's")
	}
	if again, _ := ca.ControlPlaneCertificate(); again != cp {
		t.Error("the control plane's certificate was made again before it was due")
	}

	rsaLike, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der384, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, rsaLike)
	for name, in := range map[string][]byte{
		"not PEM":    []byte("hello"),
		"wrong type": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"P-384":      pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der384}),
		"tampered":   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tamper(der)}),
	} {
		if _, _, err := ca.SignHost(in, "host-1", "127.0.0.1:1", time.Hour); err == nil || !strings.Contains(err.Error(), "csr") {
			t.Errorf("%s: %v", name, err)
		}
	}

	// Reloaded from its stored form, the CA is the same one.
	keyDER, _ := ca.KeyDER()
	back, err := Parse(ca.CertPEM(), keyDER)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(back.Pool(), cert, x509.ExtKeyUsageServerAuth, HostURI("host-1")); err != nil {
		t.Fatal(err)
	}
}

// TestRenewDue: two thirds of a short lifetime falls before expiry,
// back-dating included.
func TestRenewDue(t *testing.T) {
	ca, _ := New()
	key, _ := NewKey()
	csr, _ := CSR(key, "h")
	cert, _, err := ca.SignHost(csr, "h", "127.0.0.1:1", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if RenewDue(cert, time.Now()) {
		t.Error("due at once")
	}
	if !RenewDue(cert, cert.NotAfter.Add(-500*time.Millisecond)) {
		t.Error("not due half a second before expiry")
	}
}

func tamper(der []byte) []byte {
	b := append([]byte(nil), der...)
	b[len(b)-5] ^= 0xff
	return b
}
