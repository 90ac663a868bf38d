package sdk

import (
	"connectrpc.com/connect"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"

	"git.omukk.dev/wrenn/sandbox/proto/envd/filesystem/filesystemconnect"
	"git.omukk.dev/wrenn/sandbox/proto/envd/process/processconnect"
)

// keepaliveSeconds asks envd for a keepalive event on quiet streams, so
// that proxies in between do not close them as idle.
const keepaliveSeconds = "30"

// envdConn reaches one sandbox's envd through the sandbox proxy.
type envdConn struct {
	sandboxID string
	token     string
	base      string // envd's URL (the proxy, or <port>-<id>.<domain>)
	byHeader  bool   // the proxy routes by E2b-Sandbox-Id/Port headers
	user      string
	parent    *Client
	httpc     *http.Client
	proc      processconnect.ProcessClient
	fs        filesystemconnect.FilesystemClient
}

func (c *Client) newEnvd(sandboxID, token, domain, user string) (*envdConn, error) {
	e := &envdConn{sandboxID: sandboxID, token: token, user: user, parent: c}
	switch {
	case c.sandboxURL != "":
		e.base, e.byHeader = c.sandboxURL, true
	case c.domain != "" || domain != "":
		if domain == "" {
			domain = c.domain
		}
		e.base = fmt.Sprintf("https://%d-%s.%s", EnvdPort, sandboxID, domain)
	default:
		return nil, &APIError{Op: "reach sandbox " + sandboxID, kind: ErrInvalid,
			Message: "no sandbox proxy configured: set " + EnvSandboxURL + " (or " + EnvE2BSandboxURL + "), or pass WithSandboxURL or WithSandboxDomain"}
	}
	e.setClients()
	return e, nil
}

// setClients builds the Connect clients for the current user.
func (e *envdConn) setClients() {
	e.httpc = &http.Client{Transport: &envdTransport{e: e, next: e.parent.httpc.Transport}, CheckRedirect: e.parent.httpc.CheckRedirect}
	// No gzip on streams: output, terminals and file events are mostly
	// incompressible or small, and compressing every message costs envd
	// (inside the sandbox) more than sending it.
	noGzip := connect.WithAcceptCompression("gzip", nil, nil)
	e.proc = processconnect.NewProcessClient(e.httpc, e.base, noGzip)
	e.fs = filesystemconnect.NewFilesystemClient(e.httpc, e.base, noGzip)
}

// envdTransport adds what every request to envd carries: the routing
// headers, the access token, the user and the keepalive interval.
type envdTransport struct {
	e    *envdConn
	next http.RoundTripper
}

func (t *envdTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	e := t.e
	if e.byHeader {
		r.Header.Set("E2b-Sandbox-Id", e.sandboxID)
		r.Header.Set("E2b-Sandbox-Port", strconv.Itoa(EnvdPort))
	}
	if e.token != "" {
		r.Header.Set("X-Access-Token", e.token)
	}
	if e.user != "" && r.Header.Get("Authorization") == "" {
		r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(e.user+":")))
	}
	r.Header.Set("Keepalive-Ping-Interval", keepaliveSeconds)
	r.Header.Set("User-Agent", e.parent.userAgent)
	next := t.next
	if next == nil {
		next = http.DefaultTransport
	}
	return next.RoundTrip(r)
}
