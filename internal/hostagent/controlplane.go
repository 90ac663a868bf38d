package hostagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

// credentials are what registration gave this host; kept in the state
// directory (0600) so that a restarted agent does not need a new token.
type credentials struct {
	ControlPlane string `json:"control_plane"`
	HostID       string `json:"host_id"`
	Secret       string `json:"secret"`
}

func credentialsPath(stateDir string) string { return filepath.Join(stateDir, "control-plane.json") }

// cpClient talks to the control plane.
type cpClient struct {
	base string
	http *http.Client
}

func (c *cpClient) post(ctx context.Context, path, bearer string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode/100 != 2 {
		var e struct{ Code, Message string }
		_ = json.Unmarshal(data, &e)
		return &cpError{Status: res.StatusCode, Code: e.Code, Message: e.Message}
	}
	return json.Unmarshal(data, out)
}

type cpError struct {
	Status        int
	Code, Message string
}

func (e *cpError) Error() string {
	return fmt.Sprintf("control plane: %d %s: %s", e.Status, e.Code, e.Message)
}

// joinControlPlane returns this host's credentials for the control plane
// at base: the saved ones, or new ones from registering with token.
func joinControlPlane(ctx context.Context, stateDir, base, token, name, address string) (credentials, error) {
	base = strings.TrimRight(base, "/")
	path := credentialsPath(stateDir)
	if b, err := os.ReadFile(path); err == nil {
		var c credentials
		if err := json.Unmarshal(b, &c); err != nil {
			return c, fmt.Errorf("read %s: %w (delete it to register again)", path, err)
		}
		if c.ControlPlane == base && c.HostID != "" && c.Secret != "" {
			return c, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return credentials{}, err
	}
	if token == "" {
		return credentials{}, fmt.Errorf("this host is not registered with %s: pass a registration token (--registration-token-file or WRENN_REGISTRATION_TOKEN; an admin creates one with POST /v1/hosts/tokens)", base)
	}
	cp := &cpClient{base: base, http: &http.Client{Timeout: 30 * time.Second}}
	var res hostapi.RegisterResponse
	if err := cp.post(ctx, "/v1/hosts/register", "", hostapi.RegisterRequest{Token: token, Name: name, Address: address}, &res); err != nil {
		return credentials{}, fmt.Errorf("register with %s: %w", base, err)
	}
	c := credentials{ControlPlane: base, HostID: res.HostID, Secret: res.Secret}
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

// heartbeat reports this host to the control plane until ctx ends.
func heartbeat(ctx context.Context, log *slog.Logger, c credentials, address string, svc *Service, ready *readiness) {
	cp := &cpClient{base: c.ControlPlane, http: &http.Client{Timeout: 10 * time.Second}}
	interval := 10 * time.Second
	failing := false
	for {
		info, err := svc.HostInfo(ctx, connect.NewRequest(&pb.HostInfoRequest{}))
		if err == nil {
			var res hostapi.HeartbeatResponse
			err = cp.post(ctx, "/v1/hosts/"+c.HostID+"/heartbeat", c.Secret, heartbeatOf(info.Msg, address), &res)
			if err == nil && res.IntervalSeconds > 0 {
				interval = time.Duration(res.IntervalSeconds) * time.Second
			}
		}
		ready.heartbeatOK.Store(err == nil)
		switch {
		case err != nil && ctx.Err() == nil:
			var ce *cpError
			if errors.As(err, &ce) && ce.Status == http.StatusUnauthorized {
				log.Error("control plane rejects this host's credentials (was the host deleted?): remove "+credentialsPath(svc.M.Config().StateDir)+" and register with a new token", "err", err)
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

func heartbeatOf(i *pb.HostInfoResponse, address string) hostapi.Heartbeat {
	return hostapi.Heartbeat{
		Address: address, Runtime: i.GetRuntime(), Accelerator: i.GetAccelerator(), CPUs: int32(i.GetCpus()),
		MemoryMiB: int64(i.GetMemoryMib()), DiskFreeMiB: int64(i.GetDiskFreeMib()), MaxSandboxes: int32(i.GetMaxSandboxes()),
		Sandboxes: int32(i.GetSandboxes()), CommittedVCPUs: int32(i.GetCommittedVcpus()), CommittedMemoryMiB: int64(i.GetCommittedMemoryMib()),
		Templates: i.GetTemplates(),
	}
}
