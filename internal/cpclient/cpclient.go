// Package cpclient is the one small client of the control plane's HTTP
// API inside Wrenn: the agent registers and heartbeats with it, `wrenn
// dev` bootstraps its admin, key and host token with it, and the tests'
// control plane harness (cptest) drives the API with it. It speaks JSON
// with a bearer credential and reads the API's error shape.
package cpclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
)

// Client calls one control plane.
type Client struct {
	base string
	http *http.Client
}

// New returns a client of the control plane at base (its URL); hc nil is
// http.DefaultClient.
func New(base string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimRight(base, "/"), http: hc}
}

// URL is the control plane's base URL.
func (c *Client) URL() string { return c.base }

// Response is an API response, read whole.
type Response struct {
	Status int
	Body   []byte
	Header http.Header
	// Method and Path name the request, for errors.
	Method, Path string
}

// JSON decodes the body into v.
func (r Response) JSON(v any) error { return json.Unmarshal(r.Body, v) }

// Map decodes an object body.
func (r Response) Map() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(r.Body, &m)
	return m
}

// Code is the error code of an error body.
func (r Response) Code() string {
	s, _ := r.Map()["code"].(string)
	return s
}

func (r Response) String() string {
	return fmt.Sprintf("%d %s", r.Status, strings.TrimSpace(string(r.Body)))
}

// Err is the response as an *Error, or nil for a 2xx status.
func (r Response) Err() error {
	if r.Status/100 == 2 {
		return nil
	}
	var body struct{ Code, Message string }
	if json.Unmarshal(r.Body, &body) != nil || body.Message == "" {
		body.Message = strings.TrimSpace(string(r.Body))
	}
	return &Error{Method: r.Method, Path: r.Path, Status: r.Status, Code: body.Code, Message: body.Message}
}

// Error is an error the API answered with.
type Error struct {
	Method, Path  string
	Status        int
	Code, Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("control plane: %s %s: %d %s: %s", e.Method, e.Path, e.Status, e.Code, e.Message)
}

// Do sends a request with token as its bearer credential (none if empty)
// and returns the response whatever its status. body is JSON-encoded
// unless it is a json.RawMessage (sent as is, as JSON, even if malformed),
// a []byte or an io.Reader (sent as is, as octets).
func (c *Client) Do(ctx context.Context, method, path, token string, body any) (Response, error) {
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case json.RawMessage:
		rd, ct = bytes.NewReader(b), "application/json"
	case []byte:
		rd, ct = bytes.NewReader(b), "application/octet-stream"
	case io.Reader:
		rd, ct = b, "application/octet-stream"
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return Response{}, err
		}
		rd, ct = bytes.NewReader(data), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return Response{}, err
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	return Response{Status: res.StatusCode, Body: data, Header: res.Header, Method: method, Path: path}, err
}

// Call is Do for JSON calls: a status other than 2xx is an *Error, and
// out, if not nil, receives the decoded body.
func (c *Client) Call(ctx context.Context, method, path, token string, body, out any) error {
	r, err := c.Do(ctx, method, path, token, body)
	if err != nil {
		return err
	}
	if err := r.Err(); err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := r.JSON(out); err != nil {
		return fmt.Errorf("control plane: %s %s: decode the answer: %w", method, path, err)
	}
	return nil
}

// Register exchanges a one-time registration token for a host's ID and
// secret.
func (c *Client) Register(ctx context.Context, req hostapi.RegisterRequest) (hostapi.RegisterResponse, error) {
	var res hostapi.RegisterResponse
	err := c.Call(ctx, http.MethodPost, "/v1/hosts/register", "", req, &res)
	return res, err
}

// Heartbeat reports a host, authenticated with its secret.
func (c *Client) Heartbeat(ctx context.Context, hostID, secret string, hb hostapi.Heartbeat) (hostapi.HeartbeatResponse, error) {
	var res hostapi.HeartbeatResponse
	err := c.Call(ctx, http.MethodPost, "/v1/hosts/"+hostID+"/heartbeat", secret, hb, &res)
	return res, err
}

// SandboxesChanged reports sandboxes a host changed on its own,
// authenticated with its secret.
func (c *Client) SandboxesChanged(ctx context.Context, hostID, secret string, ids []string) error {
	return c.Call(ctx, http.MethodPost, "/v1/hosts/"+hostID+hostapi.SandboxesChangedPath, secret, hostapi.SandboxesChanged{Sandboxes: ids}, nil)
}
