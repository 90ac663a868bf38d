package hostagent

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/cpclient"
	"git.omukk.dev/wrenn/sandbox/internal/hostca"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
)

// The files of this host's identity in its state directory: its key
// (made here, never sent), the certificate the control plane's host CA
// issued for it, and that CA's root.
const (
	keyFile  = "host.key"
	certFile = "host.crt"
	caFile   = "host-ca.crt"
)

// identity is this host's certificate for mutual TLS with the control
// plane. The agent's API serves it and the agent presents it to the
// control plane; a renewal swaps it for new handshakes while connections
// made with the old one live on.
type identity struct {
	dir    string
	hostID string
	roots  *x509.CertPool
	caPEM  []byte
	cert   atomic.Pointer[tls.Certificate]
	// cpRoots verify the control plane's HTTPS certificate (nil: the
	// system's trust store).
	cpRoots *x509.CertPool

	mu sync.Mutex
	// transports are the clients' (client), whose idle connections a
	// renewal closes: a kept-alive connection presents the certificate
	// it was made with, which the control plane stops honouring when it
	// expires.
	transports []*http.Transport
}

// loadIdentity reads the identity saved in dir; a missing certificate is
// os.ErrNotExist.
func loadIdentity(dir, hostID string) (*identity, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, certFile))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, keyFile))
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, caFile))
	if err != nil {
		return nil, err
	}
	return newIdentity(dir, hostID, certPEM, keyPEM, caPEM)
}

func newIdentity(dir, hostID string, certPEM, keyPEM, caPEM []byte) (*identity, error) {
	id := &identity{dir: dir, hostID: hostID, caPEM: caPEM, roots: x509.NewCertPool()}
	if !id.roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s: no certificate", filepath.Join(dir, caFile))
	}
	if err := id.set(certPEM, keyPEM); err != nil {
		return nil, err
	}
	return id, nil
}

// set checks a certificate and key and makes them current.
func (id *identity) set(certPEM, keyPEM []byte) error {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("host certificate: %w", err)
	}
	if err := hostca.Verify(id.roots, pair.Leaf, x509.ExtKeyUsageServerAuth, hostca.HostURI(id.hostID)); err != nil {
		return fmt.Errorf("host certificate: %w", err)
	}
	id.cert.Store(&pair)
	return nil
}

// save writes a key, certificate and CA root: the key 0600, each file
// whole (a temporary file renamed) so that a crash leaves the old one.
func saveIdentity(dir string, keyPEM, certPEM, caPEM []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{keyFile, keyPEM}, {certFile, certPEM}, {caFile, caPEM}} {
		path := filepath.Join(dir, f.name)
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	return nil
}

// newKeyAndCSR makes a key and a request for it.
func newKeyAndCSR(name string) (keyPEM, csrPEM []byte, err error) {
	var key *ecdsa.PrivateKey
	if key, err = hostca.NewKey(); err != nil {
		return nil, nil, err
	}
	if keyPEM, err = hostca.MarshalKey(key); err != nil {
		return nil, nil, err
	}
	csrPEM, err = hostca.CSR(key, name)
	return keyPEM, csrPEM, err
}

// serverTLS serves the agent's API: this host's current certificate, and
// only clients that present the control plane's certificate from the
// same CA.
func (id *identity) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return id.cert.Load(), nil },
		// VerifyConnection makes the whole check (CA, usage, identity).
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: hostca.VerifyConnection(id.roots, x509.ExtKeyUsageClientAuth, hostca.ControlPlaneURI),
		NextProtos:       []string{"h2", "http/1.1"},
	}
}

// client is an HTTP client of the control plane that presents this
// host's current certificate.
func (id *identity) client(timeout time.Duration) *http.Client {
	c := controlPlaneClient(id.cpRoots, timeout)
	t := c.Transport.(*http.Transport)
	t.TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return id.cert.Load(), nil
	}
	id.mu.Lock()
	id.transports = append(id.transports, t)
	id.mu.Unlock()
	return c
}

// reconnect closes the clients' idle connections, so that their next
// requests present the current certificate; requests in flight finish
// on theirs.
func (id *identity) reconnect() {
	id.mu.Lock()
	defer id.mu.Unlock()
	for _, t := range id.transports {
		t.CloseIdleConnections()
	}
}

// controlPlaneClient is an HTTP client of the control plane that checks
// its HTTPS certificate against roots (nil: the system's trust store,
// which SSL_CERT_FILE replaces).
func controlPlaneClient(roots *x509.CertPool, timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	return &http.Client{Transport: t, Timeout: timeout}
}

// LoadRoots reads a PEM bundle of CA certificates.
func LoadRoots(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	return p, nil
}

// renewDue is when the current certificate is to be renewed: after two
// thirds of its lifetime.
func (id *identity) renewDue() time.Time {
	leaf := id.cert.Load().Leaf
	return leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 2 / 3)
}

// renew asks the control plane for a certificate for a new key, made
// with the current certificate (or, to a control plane serving plain
// HTTP, the secret), saves it and makes it current.
func (id *identity) renew(ctx context.Context, cp *cpclient.Client, secret, name string) error {
	keyPEM, csrPEM, err := newKeyAndCSR(name)
	if err != nil {
		return err
	}
	var res hostapi.HostCertificate
	if err := cp.Call(ctx, http.MethodPost, "/v1/hosts/"+id.hostID+hostapi.CertificatePath, secret, hostapi.RenewRequest{CSR: string(csrPEM)}, &res); err != nil {
		return err
	}
	if err := id.set([]byte(res.Certificate), keyPEM); err != nil {
		return err
	}
	id.reconnect()
	return saveIdentity(id.dir, keyPEM, []byte(res.Certificate), id.caPEM)
}

// keepRenewed renews the certificate when due until ctx ends; a failed
// renewal is tried again every minute (or sooner, for short lifetimes)
// while the current certificate is still valid.
func (id *identity) keepRenewed(ctx context.Context, log *slog.Logger, cp *cpclient.Client, secret, name string) {
	for {
		wait := time.Until(id.renewDue())
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(wait, 0)):
		}
		err := id.renew(ctx, cp, secret, name)
		if err == nil {
			log.Info("host certificate renewed", "not_after", id.cert.Load().Leaf.NotAfter)
			continue
		}
		if ctx.Err() != nil {
			return
		}
		leaf := id.cert.Load().Leaf
		var ce *cpclient.Error
		if errors.As(err, &ce) && ce.Status == http.StatusUnauthorized {
			log.Error("the control plane refuses this host's certificate (was the host deleted?)", "err", err)
		} else {
			log.Warn("renew the host certificate; retrying", "err", err, "not_after", leaf.NotAfter)
		}
		retry := min(time.Minute, max(leaf.NotAfter.Sub(leaf.NotBefore)/30, time.Second))
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
}
