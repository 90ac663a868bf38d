// Package envdclient is the agent's client of the envd inside a sandbox:
// processes (commands, streams, terminals) and files in the agent's terms
// (process.go and fs.go translate envd's Connect protocol once for all
// callers), /files transfers, /init, /health and /metrics. Unary calls
// share a client with a 2-minute timeout; streams and file transfers use
// one without, so long transfers are not cut.
package envdclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/internal/envdapi"
	"git.omukk.dev/wrenn/sandbox/pkg/fault"
	"git.omukk.dev/wrenn/sandbox/proto/envd/filesystem/filesystemconnect"
	"git.omukk.dev/wrenn/sandbox/proto/envd/process/processconnect"
)

// UnaryTimeout bounds every call that is not a stream or a transfer.
const UnaryTimeout = 2 * time.Minute

// Client talks to one sandbox's envd.
type Client struct {
	base      string
	token     string
	unary     *http.Client
	streaming *http.Client

	// The Connect clients carry the access token on every call; streams
	// use processStream, which has no timeout.
	process       processconnect.ProcessClient
	fs            filesystemconnect.FilesystemClient
	processStream processconnect.ProcessClient
}

// New makes a client for envd at base (http://host:port).
func New(base, token string) *Client {
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     30 * time.Second,
	}
	c := &Client{
		base:      strings.TrimRight(base, "/"),
		token:     token,
		unary:     &http.Client{Transport: &tokenTransport{token: token, next: transport}, Timeout: UnaryTimeout},
		streaming: &http.Client{Transport: &tokenTransport{token: token, next: transport}},
	}
	// What envd answers comes from code in the sandbox: no message is
	// taken in beyond a bound.
	limit := connect.WithReadMaxBytes(MaxMessageBytes)
	c.process = processconnect.NewProcessClient(c.unary, c.base, limit)
	c.processStream = processconnect.NewProcessClient(c.streaming, c.base, limit)
	c.fs = filesystemconnect.NewFilesystemClient(c.unary, c.base, limit)
	return c
}

// CloseIdle closes idle connections, as before a snapshot, so their FINs
// reach the guest while it still runs.
func (c *Client) CloseIdle() {
	c.unary.CloseIdleConnections()
	c.streaming.CloseIdleConnections()
}

type tokenTransport struct {
	token string
	next  http.RoundTripper
}

func (t *tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.token != "" && r.Header.Get("X-Access-Token") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("X-Access-Token", t.token)
	}
	return t.next.RoundTrip(r)
}

// WaitHealthy polls /health until envd answers, ctx ends, or gone closes
// (the guest died: no point waiting).
func (c *Client) WaitHealthy(ctx context.Context, gone <-chan struct{}) error {
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, c.base+"/health", nil)
		resp, err := c.unary.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("envd did not become ready: %w", ctx.Err())
		case <-gone:
			return errors.New("the guest exited before envd became ready")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// InitRequest is envd's /init body.
type InitRequest struct {
	AccessToken    string            `json:"accessToken,omitempty"`
	EnvVars        map[string]string `json:"envVars,omitempty"`
	DefaultUser    string            `json:"defaultUser,omitempty"`
	DefaultWorkdir string            `json:"defaultWorkdir,omitempty"`
	Timestamp      time.Time         `json:"timestamp"`
	// CurrentToken, if envd already holds a different token (a clone of
	// a snapshot), authorises the change: sent as X-Access-Token.
	CurrentToken string `json:"-"`
}

// Init sends /init (after boot and after every resume) and returns the
// protocol version envd states in its answer.
func (c *Client) Init(ctx context.Context, r InitRequest) (version string, err error) {
	body, _ := json.Marshal(r)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/init", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if r.CurrentToken != "" {
		req.Header.Set("X-Access-Token", r.CurrentToken)
	}
	resp, err := c.unary.Do(req)
	if err != nil {
		return "", fmt.Errorf("envd /init: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return "", fmt.Errorf("envd /init: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	version = resp.Header.Get(envdapi.VersionHeader)
	if version == "" {
		return "", fmt.Errorf("envd /init: the answer states no %s: is this Wrenn's envd?", envdapi.VersionHeader)
	}
	return version, nil
}

// PrepareSnapshot asks envd to quiesce before its guest is paused.
func (c *Client) PrepareSnapshot(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/snapshot/prepare", nil)
	resp, err := c.unary.Do(req)
	if err != nil {
		return fmt.Errorf("envd /snapshot/prepare: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return httpError(resp)
	}
	return nil
}

// Metrics is envd's /metrics.
type Metrics struct {
	Timestamp  int64   `json:"ts"`
	CPUCount   uint32  `json:"cpu_count"`
	CPUUsedPct float32 `json:"cpu_used_pct"`
	MemTotal   uint64  `json:"mem_total"`
	MemUsed    uint64  `json:"mem_used"`
	MemCache   uint64  `json:"mem_cache"`
	DiskUsed   uint64  `json:"disk_used"`
	DiskTotal  uint64  `json:"disk_total"`
}

// Metrics fetches /metrics.
func (c *Client) Metrics(ctx context.Context) (*Metrics, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/metrics", nil)
	resp, err := c.unary.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("envd /metrics: %s", resp.Status)
	}
	body, err := readLimited(resp.Body, MaxMetricsBytes, "/metrics")
	if err != nil {
		return nil, err
	}
	var m Metrics
	return &m, json.Unmarshal(body, &m)
}

// Error is an envd HTTP error.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("envd: %d: %s", e.Status, e.Message) }

// Unwrap classifies the error by envd's status: what envd refuses for the
// request's sake keeps its kind (403: the sandbox user may not touch the
// path); the rest, a refused access token (401) included, is the agent's
// problem.
func (e *Error) Unwrap() error {
	switch e.Status {
	case http.StatusBadRequest:
		return fault.Invalid
	case http.StatusForbidden:
		return fault.Forbidden
	case http.StatusNotFound:
		return fault.NotFound
	case http.StatusInsufficientStorage:
		return fault.NoSpace
	}
	return fault.Internal
}

func httpError(resp *http.Response) error {
	var body struct {
		Message string `json:"message"`
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(raw, &body) != nil || body.Message == "" {
		body.Message = strings.TrimSpace(string(raw))
	}
	return &Error{Status: resp.StatusCode, Message: body.Message}
}

func filesURL(base, path, user string) string {
	q := url.Values{"path": {path}}
	if user != "" {
		q.Set("username", user)
	}
	return base + "/files?" + q.Encode()
}

// WriteFile streams src to path in the sandbox.
func (c *Client) WriteFile(ctx context.Context, path, user string, src io.Reader, size int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, filesURL(c.base, path, user), src)
	if err != nil {
		return err
	}
	if size >= 0 {
		req.ContentLength = size
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.streaming.Do(req)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return httpError(resp)
	}
	return nil
}

// ReadFile opens path in the sandbox for reading; the caller closes it.
func (c *Client) ReadFile(ctx context.Context, path, user string) (io.ReadCloser, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, filesURL(c.base, path, user), nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.streaming.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, 0, httpError(resp)
	}
	return resp.Body, resp.ContentLength, nil
}
