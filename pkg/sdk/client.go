// Package sdk is the Go client for Wrenn: its /v1 API (sandboxes,
// snapshots, keys, hosts) and, through the sandbox proxy, the envd inside
// every sandbox (commands, files, terminals), over the same Connect and
// HTTP protocol as E2B's SDKs.
//
// It speaks E2B's wire protocol too: configured with E2B_API_URL,
// E2B_API_KEY and E2B_SANDBOX_URL or E2B_DOMAIN (or WithProtocol(ProtocolE2B)),
// it works against E2B or any E2B-compatible endpoint, such as Wrenn's
// own under /e2b; calls only Wrenn has then fail with ErrUnsupported.
//
// A Client holds no mutable state after New and is safe for concurrent
// use; so are a Sandbox and the handles it returns. Every call takes a
// context first. Failures match one of ErrNotFound, ErrAuth, ErrInvalid,
// ErrConflict, ErrCapacity, ErrTimeout, ErrUnavailable or ErrUnsupported
// with errors.Is, and *APIError with errors.As; a command that exits
// non-zero is an *ExitError.
package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// Version is this SDK's version, sent in its User-Agent.
const Version = "0.1.0"

// EnvdPort is the port envd serves on inside every sandbox.
const EnvdPort = 49983

// Protocol is the API a Client talks to.
type Protocol int

const (
	// ProtocolWrenn is Wrenn's /v1 API.
	ProtocolWrenn Protocol = iota
	// ProtocolE2B is E2B's REST API (E2B itself, or Wrenn's /e2b).
	ProtocolE2B
)

func (p Protocol) String() string {
	if p == ProtocolE2B {
		return "e2b"
	}
	return "wrenn"
}

// Environment variables New reads (unless WithoutEnv).
const (
	EnvAPIURL        = "WRENN_API_URL"        // the control plane, e.g. http://127.0.0.1:8080
	EnvAPIKey        = "WRENN_API_KEY"        // an API key or a session token
	EnvSandboxURL    = "WRENN_SANDBOX_URL"    // the sandbox proxy (header routing)
	EnvSandboxDomain = "WRENN_SANDBOX_DOMAIN" // or its wildcard domain: <port>-<sandbox>.<domain>
	EnvE2BAPIURL     = "E2B_API_URL"
	EnvE2BAPIKey     = "E2B_API_KEY"
	EnvE2BSandboxURL = "E2B_SANDBOX_URL"
	EnvE2BDomain     = "E2B_DOMAIN"
)

// Client talks to one Wrenn (or E2B-compatible) endpoint.
type Client struct {
	proto      Protocol
	apiURL     string
	apiKey     string
	sandboxURL string
	domain     string
	httpc      *http.Client
	userAgent  string
}

// Option configures a Client.
type Option func(*Client)

// WithAPIURL sets the API's base URL: Wrenn's control plane (without
// /v1), or an E2B API (e.g. http://127.0.0.1:8080/e2b).
func WithAPIURL(u string) Option { return func(c *Client) { c.apiURL = strings.TrimRight(u, "/") } }

// WithAPIKey sets the credential: an API key, or (Wrenn) a session token.
func WithAPIKey(k string) Option { return func(c *Client) { c.apiKey = k } }

// WithSandboxURL sets the sandbox proxy's URL; requests name their
// sandbox and port in the E2b-Sandbox-Id and E2b-Sandbox-Port headers.
func WithSandboxURL(u string) Option {
	return func(c *Client) { c.sandboxURL = strings.TrimRight(u, "/") }
}

// WithSandboxDomain routes sandbox traffic by host name instead:
// https://<port>-<sandbox>.<domain>.
func WithSandboxDomain(d string) Option { return func(c *Client) { c.domain = d } }

// WithProtocol chooses the API (default: ProtocolWrenn, or ProtocolE2B
// when only E2B_* variables are set).
func WithProtocol(p Protocol) Option { return func(c *Client) { c.proto = p } }

// WithHTTPClient sets the HTTP client for every request. It must not
// have a Timeout: streams last as long as their commands; use contexts.
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.httpc = h } }

// WithUserAgent adds a product to the User-Agent.
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.userAgent = ua + " " + c.userAgent }
}

// WithoutEnv ignores the environment: only options configure the Client.
// Give it first.
func WithoutEnv() Option {
	return func(c *Client) { *c = Client{httpc: c.httpc, userAgent: c.userAgent} }
}

// New returns a Client configured from the environment, then opts.
// WRENN_API_URL, WRENN_API_KEY, WRENN_SANDBOX_URL and
// WRENN_SANDBOX_DOMAIN select Wrenn's API; failing those, E2B_API_URL,
// E2B_API_KEY, E2B_SANDBOX_URL and E2B_DOMAIN select E2B's (with E2B's
// defaults: https://api.<domain>, domain e2b.app).
func New(opts ...Option) (*Client, error) {
	c := &Client{userAgent: "wrenn-go-sdk/" + Version}
	switch {
	case os.Getenv(EnvAPIURL) != "" || os.Getenv(EnvAPIKey) != "":
		c.apiURL = strings.TrimRight(os.Getenv(EnvAPIURL), "/")
		c.apiKey = os.Getenv(EnvAPIKey)
		c.sandboxURL = strings.TrimRight(os.Getenv(EnvSandboxURL), "/")
		c.domain = os.Getenv(EnvSandboxDomain)
	case os.Getenv(EnvE2BAPIURL) != "" || os.Getenv(EnvE2BAPIKey) != "" || os.Getenv(EnvE2BDomain) != "":
		c.proto = ProtocolE2B
		c.domain = os.Getenv(EnvE2BDomain)
		c.apiURL = strings.TrimRight(os.Getenv(EnvE2BAPIURL), "/")
		c.apiKey = os.Getenv(EnvE2BAPIKey)
		c.sandboxURL = strings.TrimRight(os.Getenv(EnvE2BSandboxURL), "/")
		if c.sandboxURL == "" && c.domain == "" {
			c.domain = "e2b.app"
		}
		if c.apiURL == "" {
			c.apiURL = "https://api." + c.domain
		}
	}
	for _, o := range opts {
		o(c)
	}
	if c.apiURL == "" {
		return nil, &APIError{Op: "configure client", Message: "no API URL: set " + EnvAPIURL + " (or " + EnvE2BAPIURL + "), or pass WithAPIURL", kind: ErrInvalid}
	}
	if _, err := url.Parse(c.apiURL); err != nil {
		return nil, &APIError{Op: "configure client", Message: "API URL: " + err.Error(), kind: ErrInvalid}
	}
	if c.httpc == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// Streams of output and files: larger buffers mean fewer reads
		// and writes; several streams and calls to one proxy at once
		// keep their connections.
		t.ReadBufferSize, t.WriteBufferSize = 64<<10, 64<<10
		t.MaxIdleConnsPerHost = 16
		c.httpc = &http.Client{Transport: t}
	}
	return c, nil
}

// Protocol is the API the client speaks.
func (c *Client) Protocol() Protocol { return c.proto }

// APIURL is the API's base URL.
func (c *Client) APIURL() string { return c.apiURL }

// SandboxURL is the sandbox proxy's URL (empty when routing by domain).
func (c *Client) SandboxURL() string { return c.sandboxURL }

// wrennOnly refuses a call an E2B endpoint has no counterpart for.
func (c *Client) wrennOnly(op string) error {
	if c.proto != ProtocolWrenn {
		return unsupported(op, "only Wrenn's API has this; the client speaks E2B's")
	}
	return nil
}

// open sends a request to the API and returns a successful answer with
// its body unread (a stream); an unsuccessful one is the error.
func (c *Client) open(ctx context.Context, op, method, path string, q url.Values, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		rd = bytes.NewReader(b)
	}
	u := c.apiURL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if c.apiKey != "" {
		if c.proto == ProtocolE2B {
			req.Header.Set("X-API-Key", c.apiKey)
		} else {
			req.Header.Set("Authorization", "Bearer "+c.apiKey)
		}
	}
	res, err := c.httpc.Do(req)
	if err != nil {
		return nil, requestError(op, err)
	}
	if res.StatusCode/100 != 2 {
		defer res.Body.Close()
		data, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
		if err != nil {
			return nil, requestError(op, err)
		}
		return nil, httpError(op, res.StatusCode, data)
	}
	return res, nil
}

// call sends a JSON request to the API and decodes a JSON answer into out
// (when not nil); it returns the response headers.
func (c *Client) call(ctx context.Context, op, method, path string, q url.Values, body, out any) (http.Header, error) {
	res, err := c.open(ctx, op, method, path, q, body)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return nil, requestError(op, err)
	}
	if out != nil && len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return res.Header, fmt.Errorf("%s: decode the answer: %w", op, err)
		}
	}
	return res.Header, nil
}

// requestError wraps a transport failure: a context's end keeps its own
// error (errors.Is(err, context.Canceled) holds), anything else is the
// endpoint being unreachable.
func requestError(op string, err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", op, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w (%w)", op, ErrTimeout, err)
	}
	return fmt.Errorf("%s: %w (%w)", op, ErrUnavailable, err)
}

// httpError decodes an error body: Wrenn's {"code": "...", "message"},
// E2B's {"code": <status>, "message"}, or text.
func httpError(op string, status int, body []byte) error {
	e := &APIError{Op: op, Status: status}
	var m struct {
		Code      any    `json:"code"`
		Message   string `json:"message"`
		ErrorCode string `json:"error_code"`
	}
	if json.Unmarshal(body, &m) == nil && (m.Message != "" || m.Code != nil) {
		e.Message = m.Message
		if s, ok := m.Code.(string); ok {
			e.Code = s
		} else if m.ErrorCode != "" {
			e.Code = m.ErrorCode
		}
	} else {
		e.Message = strings.TrimSpace(string(body))
		if len(e.Message) > 300 {
			e.Message = e.Message[:300] + "…"
		}
	}
	e.kind = kindOfCode(e.Code)
	if e.kind == nil {
		e.kind = kindOfStatus(status)
	}
	if e.kind == nil && status == http.StatusServiceUnavailable {
		e.kind = ErrUnavailable
	}
	return e
}
