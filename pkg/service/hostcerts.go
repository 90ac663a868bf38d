package service

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"git.omukk.dev/wrenn/sandbox/internal/agentclient"
	"git.omukk.dev/wrenn/sandbox/internal/hostca"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
)

// LoadHostCA loads the control plane's host CA from PostgreSQL, making it
// on the first start. Replicas starting together agree on one: the first
// insert wins and everyone reads it back.
func (s *Service) LoadHostCA(ctx context.Context) error {
	row, err := s.Q.GetHostCA(ctx)
	if errors.Is(err, pgx.ErrNoRows) {
		if err := s.createHostCA(ctx); err != nil {
			return err
		}
		row, err = s.Q.GetHostCA(ctx)
	}
	if err != nil {
		return fmt.Errorf("load the host CA: %w", err)
	}
	key, err := s.Keys.Open(row.KeyEnc)
	if err != nil {
		return fmt.Errorf("open the host CA's key (was the control plane's secret changed?): %w", err)
	}
	ca, err := hostca.Parse([]byte(row.CertPem), []byte(key))
	if err != nil {
		return err
	}
	s.CA = ca
	return nil
}

func (s *Service) createHostCA(ctx context.Context) error {
	ca, err := hostca.New()
	if err != nil {
		return fmt.Errorf("make the host CA: %w", err)
	}
	key, err := ca.KeyDER()
	if err != nil {
		return err
	}
	if err := s.Q.CreateHostCA(ctx, db.CreateHostCAParams{CertPem: string(ca.CertPEM()), KeyEnc: s.Keys.Seal(string(key))}); err != nil {
		return fmt.Errorf("store the host CA: %w", err)
	}
	s.Log.Info("made the host CA for control plane <-> agent mutual TLS (kept in PostgreSQL, its key sealed)")
	return nil
}

// issueHostCert signs csr for host h and records the certificate, whose
// serial is then honoured until it expires or the host is deleted.
func (s *Service) issueHostCert(ctx context.Context, q *db.Queries, h db.Host, csr []byte) (string, error) {
	if s.CA == nil {
		return "", errors.New("the host CA is not loaded")
	}
	cert, certPEM, err := s.CA.SignHost(csr, id.Format(id.Host, h.ID), h.Address, s.Config.HostCertTTL)
	if err != nil {
		return "", errf(ErrInvalid, "%v", err)
	}
	if err := q.PruneHostCertificates(ctx, h.ID); err != nil {
		return "", err
	}
	if err := q.AddHostCertificate(ctx, db.AddHostCertificateParams{Serial: hostca.SerialText(cert), HostID: h.ID, NotAfter: cert.NotAfter}); err != nil {
		return "", err
	}
	return string(certPEM), nil
}

// RenewHostCert issues host h a new certificate for csr; its older ones
// stay valid until they expire, so connections made with them live on.
func (s *Service) RenewHostCert(ctx context.Context, h db.Host, csr []byte) (string, error) {
	return s.issueHostCert(ctx, s.Q, h, csr)
}

// AuthenticateHostCert checks a certificate the TLS layer has already
// verified against the host CA: it must name host and be on record for
// it. The record is read on every call, so that deleting a host refuses
// its certificate at its next request.
func (s *Service) AuthenticateHostCert(ctx context.Context, host uuid.UUID, cert *x509.Certificate) (db.Host, error) {
	if hostca.HostID(cert) != id.Format(id.Host, host) {
		return db.Host{}, errf(ErrUnauthorized, "the client certificate is not this host's")
	}
	ok, err := s.Q.HostCertificateValid(ctx, db.HostCertificateValidParams{Serial: hostca.SerialText(cert), HostID: host})
	if err != nil {
		return db.Host{}, err
	}
	if !ok {
		return db.Host{}, errf(ErrUnauthorized, "this host's certificate is revoked (the host was deleted) or expired")
	}
	h, err := s.Q.GetHost(ctx, host)
	if errors.Is(err, pgx.ErrNoRows) {
		return h, errf(ErrUnauthorized, "unknown host")
	}
	return h, err
}

// AuthenticateHostWithoutCert checks the secret of a host that was
// registered before mutual TLS and has never had a certificate: its one
// way to its first (the secret was its credential until then). Once it has
// one, only certificates authenticate it.
func (s *Service) AuthenticateHostWithoutCert(ctx context.Context, host uuid.UUID, secret string) (db.Host, error) {
	h, err := s.AuthenticateHost(ctx, host, secret)
	if err != nil {
		return h, err
	}
	n, err := s.Q.CountHostCertificates(ctx, host)
	if err != nil {
		return h, err
	}
	if n > 0 {
		return db.Host{}, errf(ErrUnauthorized, "this host has a certificate: authenticate with it (mutual TLS)")
	}
	return h, nil
}

// AgentTLS is how the control plane reaches host h: it presents its own
// certificate, and accepts only a server certificate the host CA issued
// for h. Revoking h's certificates needs no check here: a deleted host is
// never called.
func (s *Service) AgentTLS(host uuid.UUID) *tls.Config {
	ca := s.CA
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return ca.ControlPlaneCertificate()
		},
		// VerifyConnection makes the whole check: the CA, and that the
		// certificate is the host's we meant to reach (the address alone
		// could have moved to another host).
		InsecureSkipVerify: true,
		VerifyConnection:   hostca.VerifyConnection(ca.Pool(), x509.ExtKeyUsageServerAuth, hostca.HostURI(id.Format(id.Host, host))),
	}
}

// agentTransports are a host's two transports: HTTP/2 for the agent's
// API, HTTP/1.1 for the sandbox proxy (WebSocket upgrades need it).
func (s *Service) agentTransports(h db.Host) (rpc, proxy *http.Transport) {
	tc := s.AgentTLS(h.ID)
	rpc = agentclient.Transport()
	rpc.TLSClientConfig = tc
	proxy = http.DefaultTransport.(*http.Transport).Clone()
	proxy.TLSClientConfig = tc.Clone()
	proxy.ForceAttemptHTTP2 = false
	proxy.TLSClientConfig.NextProtos = []string{"http/1.1"}
	proxy.MaxIdleConnsPerHost = 256
	proxy.IdleConnTimeout = 60 * time.Second
	return rpc, proxy
}
