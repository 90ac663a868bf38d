// Package agentclient dials a host agent's hostagent.v1 API: over mutual
// TLS for the control plane (NewTLS, with a transport whose TLS config
// presents the control plane's certificate and checks the host's), or
// with a bearer secret for an agent run alone (New: benchmarks, tests). Errors come back as the fault kinds the agent sent them with
// (fault.Interceptor decodes them), so callers classify them with
// fault.KindOf or errors.Is(err, fault.NotFound).
package agentclient

import (
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/pkg/fault"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
	"git.omukk.dev/wrenn/sandbox/proto/hostagent/v1/hostagentv1connect"
)

// New returns a client for the agent at addr ("host:port" or a URL).
func New(addr, secret string) hostagentv1connect.HostAgentServiceClient {
	return NewWithTransport(addr, secret, shared)
}

var shared = Transport()

// Transport is how to reach agents: HTTP/2, unencrypted (h2c, which
// agents serve) for http:// addresses. Over HTTP/1.1 a client stream
// that the agent ends early (an upload into a full disk) loses the
// agent's answer whenever the agent closes the connection on the rest of
// the upload, which Go's server does; HTTP/2 ends only the stream, after
// the answer. A connection that goes quiet is pinged, so that a host
// that vanished fails its calls instead of holding them.
func Transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	var p http.Protocols
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	t.Protocols = &p
	t.HTTP2 = &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 15 * time.Second}
	return t
}

// NewTLS is a client of the agent at addr ("host:port") over rt, whose TLS
// configuration authenticates both sides.
func NewTLS(addr string, rt http.RoundTripper) hostagentv1connect.HostAgentServiceClient {
	return hostagentv1connect.NewHostAgentServiceClient(&http.Client{Transport: rt}, "https://"+addr,
		connect.WithReadMaxBytes(hostapi.MaxAgentResponse), connect.WithInterceptors(fault.Interceptor()))
}

// NewWithTransport is New over a transport the caller owns.
func NewWithTransport(addr, secret string, rt http.RoundTripper) hostagentv1connect.HostAgentServiceClient {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return hostagentv1connect.NewHostAgentServiceClient(&http.Client{Transport: bearer{secret, rt}}, addr,
		connect.WithReadMaxBytes(hostapi.MaxAgentResponse), connect.WithInterceptors(fault.Interceptor()))
}

type bearer struct {
	secret string
	next   http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.secret)
	return b.next.RoundTrip(r)
}
