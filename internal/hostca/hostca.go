// Package hostca is the certificate authority of control plane <-> agent
// mutual TLS: the control plane's root, the certificates it signs for hosts
// (from the CSR an agent makes with a key that never leaves the host) and
// for itself, and the checks each side makes of the other's certificate.
//
// Identities are URI SANs: wrenn://control-plane for the control plane,
// wrenn://host/<host ID> for a host. A host's certificate also names its
// advertised address (IP or DNS SAN) so that ordinary TLS tools verify it.
// Revocation is not this package's: the control plane checks each host
// certificate's serial against PostgreSQL on every request.
package hostca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"
)

// ControlPlaneURI is the control plane's identity in its certificates.
const ControlPlaneURI = "wrenn://control-plane"

const hostURIPrefix = "wrenn://host/"

// HostURI is a host's identity in its certificates.
func HostURI(hostID string) string { return hostURIPrefix + hostID }

// DefaultHostTTL is how long a host certificate is valid; agents renew
// theirs after two thirds of it.
const DefaultHostTTL = 30 * 24 * time.Hour

// caTTL is the root's lifetime.
const caTTL = 20 * 365 * 24 * time.Hour

// CA is a root certificate and its key.
type CA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
	pool    *x509.CertPool

	mu sync.Mutex
	cp *tls.Certificate
}

// New makes a new root (ECDSA P-256).
func New() (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Wrenn control plane host CA", Organization: []string{"Wrenn"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caTTL),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return Parse(pemBlock("CERTIFICATE", der), keyDER)
}

// Parse loads a root from its certificate (PEM) and its key (PKCS #8 DER).
func Parse(certPEM, keyDER []byte) (*CA, error) {
	cert, err := ParseCertificate(certPEM)
	if err != nil {
		return nil, fmt.Errorf("host CA certificate: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil {
		return nil, fmt.Errorf("host CA key: %w", err)
	}
	key, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("host CA key cannot sign")
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{cert: cert, key: key, certPEM: certPEM, pool: pool}, nil
}

// KeyDER is the root's key, PKCS #8 DER: seal it before storing it.
func (ca *CA) KeyDER() ([]byte, error) { return x509.MarshalPKCS8PrivateKey(ca.key) }

// CertPEM is the root's certificate, which agents trust.
func (ca *CA) CertPEM() []byte { return ca.certPEM }

// Pool trusts this root only.
func (ca *CA) Pool() *x509.CertPool { return ca.pool }

// SignHost issues a certificate for hostID from an agent's CSR (PEM),
// naming address (host:port) as an IP or DNS SAN, valid for ttl. Whatever
// names the CSR asks for are ignored: the CA decides them.
func (ca *CA) SignHost(csrPEM []byte, hostID, address string, ttl time.Duration) (*x509.Certificate, []byte, error) {
	b, _ := pem.Decode(csrPEM)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, nil, errors.New("csr must be a PEM \"CERTIFICATE REQUEST\"")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, nil, fmt.Errorf("csr signature: %w", err)
	}
	if k, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		return nil, nil, errors.New("csr: the key must be ECDSA P-256")
	}
	u, _ := url.Parse(HostURI(hostID))
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hostID, Organization: []string{"Wrenn hosts"}},
		URIs:        []*url.URL{u},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if host, _, err := net.SplitHostPort(address); err == nil && host != "" {
		if ip := net.ParseIP(host); ip != nil {
			tmpl.IPAddresses = []net.IP{ip}
		} else {
			tmpl.DNSNames = []string{host}
		}
	}
	return ca.sign(tmpl, csr.PublicKey, ttl)
}

func (ca *CA) sign(tmpl *x509.Certificate, pub any, ttl time.Duration) (*x509.Certificate, []byte, error) {
	now := time.Now()
	tmpl.SerialNumber = serial()
	// A little back-dating absorbs clock skew between hosts (a tenth of
	// a short lifetime, so that renewing at two thirds stays before
	// expiry).
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-min(5*time.Minute, ttl/10)), now.Add(ttl)
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, pemBlock("CERTIFICATE", der), err
}

// cpTTL is the lifetime of the control plane's own certificate, which
// lives only in memory and is made again after two thirds of it.
const cpTTL = 24 * time.Hour

// ControlPlaneCertificate is the control plane's client certificate for
// calling agents, made on first use and again after two thirds of its
// lifetime (connections open with the old one live on).
func (ca *CA) ControlPlaneCertificate() (*tls.Certificate, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.cp != nil && !RenewDue(ca.cp.Leaf, time.Now()) {
		return ca.cp, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(ControlPlaneURI)
	leaf, _, err := ca.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "wrenn-control-plane", Organization: []string{"Wrenn"}},
		URIs:        []*url.URL{u},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, &key.PublicKey, cpTTL)
	if err != nil {
		return nil, err
	}
	ca.cp = &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	return ca.cp, nil
}

// RenewDue reports whether cert has lived two thirds of its lifetime.
func RenewDue(cert *x509.Certificate, now time.Time) bool {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return !now.Before(cert.NotBefore.Add(life * 2 / 3))
}

// Identity is the wrenn:// URI a certificate names, or "".
func Identity(cert *x509.Certificate) string {
	for _, u := range cert.URIs {
		if s := u.String(); strings.HasPrefix(s, "wrenn://") {
			return s
		}
	}
	return ""
}

// HostID is the host a certificate names, or "".
func HostID(cert *x509.Certificate) string {
	id, ok := strings.CutPrefix(Identity(cert), hostURIPrefix)
	if !ok {
		return ""
	}
	return id
}

// Verify checks that cert chains to roots for usage and names identity
// want; intermediates are refused (the CA signs leaves directly).
func Verify(roots *x509.CertPool, cert *x509.Certificate, usage x509.ExtKeyUsage, want string) error {
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return fmt.Errorf("certificate of %q: %w", Identity(cert), err)
	}
	if got := Identity(cert); got != want {
		return fmt.Errorf("certificate names %q, not %q", got, want)
	}
	return nil
}

// VerifyConnection returns a tls.Config.VerifyConnection that accepts a
// peer only if its certificate chains to roots for usage and names want.
// (The config sets InsecureSkipVerify or ClientAuth RequireAnyClientCert
// so that this is the one check, made on every handshake.)
func VerifyConnection(roots *x509.CertPool, usage x509.ExtKeyUsage, want string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("no certificate presented")
		}
		return Verify(roots, cs.PeerCertificates[0], usage, want)
	}
}

// NewKey makes a host's private key (ECDSA P-256).
func NewKey() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

// CSR is a certificate request (PEM) for key, naming hostName only as a
// courtesy: the CA sets the certificate's names.
func CSR(key *ecdsa.PrivateKey, hostName string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: hostName}}, key)
	if err != nil {
		return nil, err
	}
	return pemBlock("CERTIFICATE REQUEST", der), nil
}

// MarshalKey is key as PEM ("PRIVATE KEY", PKCS #8).
func MarshalKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pemBlock("PRIVATE KEY", der), nil
}

// ParseCertificate reads the first certificate of a PEM bundle.
func ParseCertificate(certPEM []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

// SerialText is how a certificate's serial is stored: hexadecimal.
func SerialText(cert *x509.Certificate) string { return cert.SerialNumber.Text(16) }

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
