// Package clientip resolves who a request comes from, for rate limits,
// per-client limits, the audit log and logs. Behind a reverse proxy the
// TCP peer is the proxy; the client is then read from X-Forwarded-For, but
// only when the peer is one of the configured trusted proxies (the
// right-most address not in a trusted range), so a client that reaches
// the server directly cannot choose its own address.
package clientip

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/go-chi/chi/v5/middleware"
)

// Middleware records each request's client address; trusted lists the
// proxies' addresses or CIDR ranges (none: the TCP peer is the client).
func Middleware(trusted []string) func(http.Handler) http.Handler {
	if len(trusted) == 0 {
		return middleware.ClientIPFromRemoteAddr
	}
	prefixes := make([]string, len(trusted))
	for i, t := range trusted {
		p, err := ParsePrefix(t)
		if err != nil {
			panic(err) // config.Validate refuses these first
		}
		prefixes[i] = p.String()
	}
	return middleware.ClientIPFromXFF(prefixes...)
}

// ParsePrefix reads a trusted proxy: a CIDR range or a single address.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("trusted proxy %q: want an address or a CIDR range", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// Of is the client address of a request that went through Middleware;
// without it (or when the forwarded chain was unusable) the TCP peer.
func Of(r *http.Request) string {
	if ip := middleware.GetClientIP(r.Context()); ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
