package hostagent

import (
	"context"
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

// credentials are what registration gave this host; kept in the state
// directory (0600) so that a restarted agent does not need a new token.
type credentials struct {
	ControlPlane string `json:"control_plane"`
	HostID       string `json:"host_id"`
	Secret       string `json:"secret"`
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

// ForgetRegistration removes the saved credentials, so that the agent
// registers again (with a new token) on its next start.
func ForgetRegistration(stateDir string) error {
	err := os.Remove(credentialsPath(stateDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// joinControlPlane returns this host's credentials for the control plane
// at base: the saved ones, or new ones from registering with token.
func joinControlPlane(ctx context.Context, stateDir, base, token, name, address string) (credentials, error) {
	base = strings.TrimRight(base, "/")
	path := credentialsPath(stateDir)
	c, ok, err := savedCredentials(stateDir)
	if err != nil {
		return c, err
	}
	if ok && c.ControlPlane == base && c.HostID != "" && c.Secret != "" {
		return c, nil
	}
	if token == "" {
		return credentials{}, fmt.Errorf("this host is not registered with %s: pass a registration token (--registration-token-file or WRENN_REGISTRATION_TOKEN; an admin creates one with POST /v1/hosts/tokens)", base)
	}
	cp := cpclient.New(base, &http.Client{Timeout: 30 * time.Second})
	res, err := cp.Register(ctx, hostapi.RegisterRequest{Token: token, Name: name, Address: address})
	if err != nil {
		return credentials{}, fmt.Errorf("register with %s: %w", base, err)
	}
	c = credentials{ControlPlane: base, HostID: res.HostID, Secret: res.Secret}
	b, _ := json.Marshal(c)
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return c, err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return c, err
	}
	return c, os.Rename(tmp, path)
}

// heartbeat reports this host's capacity to the control plane until ctx
// ends; ready learns whether the last one got through.
func heartbeat(ctx context.Context, log *slog.Logger, c credentials, address string, m *sandbox.Manager, ready *readiness) {
	cp := cpclient.New(c.ControlPlane, &http.Client{Timeout: 10 * time.Second})
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
