package sandbox

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"
)

// newGuestTransport makes the HTTP transport for proxied requests into one
// guest. Its idle connections are closed before every pause, like the
// agent's own envd connections, so their FINs reach the guest first.
func newGuestTransport() *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 0, // long polls and streams
		ForceAttemptHTTP2:     false,
	}
}

// closeIdle drops the idle connections into the guest (envd's and the
// proxy's).
func (s *Sandbox) closeIdle() {
	s.envd.CloseIdle()
	if s.guestHTTP != nil {
		s.guestHTTP.CloseIdleConnections()
	}
}

// cutGuestTraffic ends the proxied requests in flight into a guest that is
// gone or paused: its network is torn down without a reset reaching
// anyone, so they would otherwise hang until their clients' timeouts.
func (s *Sandbox) cutGuestTraffic() {
	if s.guestCancel != nil {
		s.guestCancel()
	}
}

// GuestEndpoint returns the transport into a running sandbox, the host
// address that reaches it, and a context that ends when the guest stops
// or pauses.
func (m *Manager) GuestEndpoint(id string) (http.RoundTripper, string, context.Context, error) {
	s, err := m.get(id)
	if err != nil {
		return nil, "", nil, err
	}
	s.infoMu.RLock()
	defer s.infoMu.RUnlock()
	if s.info.State != Running || s.guestHTTP == nil {
		return nil, "", nil, fmt.Errorf("%w: sandbox %s is %s", ErrNotRunning, id, s.info.State)
	}
	return s.guestHTTP, s.info.HostAddress, s.guestCtx, nil
}
