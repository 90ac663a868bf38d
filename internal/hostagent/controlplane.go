package hostagent

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/cpclient"
	"git.omukk.dev/wrenn/sandbox/internal/sandbox"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
)

// credentials are what registration gave this host besides its
// certificate (identity); kept in the state directory (0600) so that a
// restarted agent does not need a new token. Secret is set only by a
// control plane serving plain HTTP (development: `wrenn dev`), where the
// host cannot present its certificate.
type credentials struct {
	ControlPlane string `json:"control_plane"`
	HostID       string `json:"host_id"`
	Secret       string `json:"secret,omitempty"`
}

func credentialsPath(stateDir string) string { return filepath.Join(stateDir, "control-plane.json") }

// savedCredentials reads the credentials saved in stateDir; a missing
// file is not an error (ok is false).
func savedCredentials(stateDir string) (c credentials, ok bool, err error) {
	path := credentialsPath(stateDir)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, false, nil
	}
	if err != nil {
		return c, false, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, false, fmt.Errorf("read %s: %w (delete it to register again)", path, err)
	}
	return c, true, nil
}

// RegisteredHost is the host ID this agent's state directory is
// registered as, if any.
func RegisteredHost(stateDir string) (string, error) {
	c, _, err := savedCredentials(stateDir)
	return c.HostID, err
}

// ForgetRegistration removes the saved credentials and certificate, so
// that the agent registers again (with a new token) on its next start.
func ForgetRegistration(stateDir string) error {
	for _, name := range []string{credentialsPath(stateDir), filepath.Join(stateDir, certFile), filepath.Join(stateDir, keyFile), filepath.Join(stateDir, caFile)} {
		if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// joinControlPlane returns this host's credentials and certificate for
// the control plane at base: the saved ones, or new ones from registering
// with token and a request for a key made here.
func joinControlPlane(ctx context.Context, stateDir, base, token, name, address string, cpRoots *x509.CertPool) (credentials, *identity, error) {
	base = strings.TrimRight(base, "/")
	path := credentialsPath(stateDir)
	c, ok, err := savedCredentials(stateDir)
	if err != nil {
		return c, nil, err
	}
	if ok && c.ControlPlane == base && c.HostID != "" {
		id, err := loadIdentity(stateDir, c.HostID)
		if errors.Is(err, os.ErrNotExist) && c.Secret != "" {
			// Registered before mutual TLS: the secret gets the first
			// certificate, once.
			id, err = firstCertificate(ctx, stateDir, c, name, cpRoots)
		}
		if errors.Is(err, os.ErrNotExist) {
			return c, nil, fmt.Errorf("this host is registered as %s but has no certificate in %s: remove %s and register again with a new token", c.HostID, stateDir, path)
		}
		if err != nil {
			return c, nil, err
		}
		id.cpRoots = cpRoots
		return c, id, nil
	}
	if token == "" {
		return credentials{}, nil, fmt.Errorf("this host is not registered with %s: pass a registration token (--registration-token-file or WRENN_REGISTRATION_TOKEN; an admin creates one with POST /v1/hosts/tokens)", base)
	}
	keyPEM, csrPEM, err := newKeyAndCSR(name)
	if err != nil {
		return credentials{}, nil, err
	}
	cp := cpclient.New(base, controlPlaneClient(cpRoots, 30*time.Second))
	res, err := cp.Register(ctx, hostapi.RegisterRequest{Token: token, Name: name, Address: address, CSR: string(csrPEM)})
	if err != nil {
		return credentials{}, nil, fmt.Errorf("register with %s: %w", base, err)
	}
	id, err := newIdentity(stateDir, res.HostID, []byte(res.Certificate), keyPEM, []byte(res.CA))
	if err != nil {
		return credentials{}, nil, fmt.Errorf("register with %s: %w", base, err)
	}
	id.cpRoots = cpRoots
	if err := saveIdentity(stateDir, keyPEM, []byte(res.Certificate), []byte(res.CA)); err != nil {
		return credentials{}, nil, err
	}
	// The credentials go last: without them the next start registers
	// again rather than trust a partial identity.
	c = credentials{ControlPlane: base, HostID: res.HostID, Secret: res.Secret}
	b, _ := json.Marshal(c)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return c, nil, err
	}
	return c, id, os.Rename(tmp, path)
}

// firstCertificate gets a certificate for a host registered before mutual
// TLS, authenticated by its secret.
func firstCertificate(ctx context.Context, stateDir string, c credentials, name string, cpRoots *x509.CertPool) (*identity, error) {
	keyPEM, csrPEM, err := newKeyAndCSR(name)
	if err != nil {
		return nil, err
	}
	cp := cpclient.New(c.ControlPlane, controlPlaneClient(cpRoots, 30*time.Second))
	var res hostapi.HostCertificate
	if err := cp.Call(ctx, http.MethodPost, "/v1/hosts/"+c.HostID+hostapi.CertificatePath, c.Secret, hostapi.RenewRequest{CSR: string(csrPEM)}, &res); err != nil {
		return nil, fmt.Errorf("get this host's first certificate from %s: %w", c.ControlPlane, err)
	}
	id, err := newIdentity(stateDir, c.HostID, []byte(res.Certificate), keyPEM, []byte(res.CA))
	if err != nil {
		return nil, err
	}
	return id, saveIdentity(stateDir, keyPEM, []byte(res.Certificate), []byte(res.CA))
}

// heartbeat reports this host's capacity to the control plane until ctx
// ends; ready learns whether the last one got through.
func heartbeat(ctx context.Context, log *slog.Logger, c credentials, id *identity, address string, m *sandbox.Manager, ready *readiness) {
	cp := cpclient.New(c.ControlPlane, id.client(10*time.Second))
	interval := 10 * time.Second
	failing := false
	for {
		res, err := cp.Heartbeat(ctx, c.HostID, c.Secret, hostapi.Heartbeat{Address: address, Capacity: capacityOf(m)})
		if err == nil && res.IntervalSeconds > 0 {
			interval = time.Duration(res.IntervalSeconds) * time.Second
		}
		ready.heartbeatOK.Store(err == nil)
		switch {
		case err != nil && ctx.Err() == nil:
			var ce *cpclient.Error
			if errors.As(err, &ce) && ce.Status == http.StatusUnauthorized {
				log.Error("control plane rejects this host's credentials (was the host deleted?): remove "+credentialsPath(m.Config().StateDir)+" and register with a new token", "err", err)
			} else if !failing {
				log.Warn("heartbeat failed; retrying", "err", err)
			}
			failing = true
		case err == nil && failing:
			log.Info("heartbeats reach the control plane again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}
