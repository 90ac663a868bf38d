package hostagent

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"syscall"

	"git.omukk.dev/wrenn/sandbox/internal/sandbox"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
)

// withGuestProxy serves proxied requests (those naming a sandbox) into the
// sandbox's network, on any port, streamed both ways; everything else goes
// to next. An agent run alone checks the secret in HeaderProxySecret
// (secret not empty); one registered with a control plane has
// authenticated the caller by its certificate already (secret empty).
func withGuestProxy(m *sandbox.Manager, secret string, log *slog.Logger, next http.Handler) http.Handler {
	want := []byte(secret)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(hostapi.HeaderProxySandbox)
		if id == "" {
			next.ServeHTTP(w, r)
			return
		}
		if secret != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get(hostapi.HeaderProxySecret)), want) != 1 {
			log.Warn("unauthenticated proxy request", "remote", r.RemoteAddr, "sandbox", id)
			hostapi.WriteProxyError(w, http.StatusUnauthorized, "", "unauthenticated", "a valid agent secret is required")
			return
		}
		port, err := strconv.Atoi(r.Header.Get(hostapi.HeaderProxyPort))
		if err != nil || port < 1 || port > 65535 {
			hostapi.WriteProxyError(w, http.StatusBadRequest, id, "invalid_port", "the port must be 1 to 65535")
			return
		}
		rt, addr, guestCtx, err := m.GuestEndpoint(id)
		switch {
		case errors.Is(err, sandbox.ErrNotFound):
			hostapi.WriteProxyError(w, http.StatusBadGateway, id, "sandbox_not_found", "The sandbox was not found")
			return
		case err != nil:
			hostapi.WriteProxyError(w, http.StatusBadGateway, id, "sandbox_not_running", err.Error())
			return
		}
		target := net.JoinHostPort(addr, strconv.Itoa(port))
		rp := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.Out.URL.Scheme, pr.Out.URL.Host = "http", target
				pr.Out.Host = pr.In.Host
				for _, h := range []string{hostapi.HeaderProxySecret, hostapi.HeaderProxySandbox, hostapi.HeaderProxyPort} {
					pr.Out.Header.Del(h)
				}
			},
			Transport:     rt,
			FlushInterval: -1, // streams (Connect, SSE, PTY output) pass at once
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				if errors.Is(err, syscall.ECONNREFUSED) {
					hostapi.WriteProxyError(w, http.StatusBadGateway, id, "port_not_open", "nothing listens on port "+strconv.Itoa(port)+" in the sandbox")
					return
				}
				if r.Context().Err() == nil {
					log.Warn("proxy into sandbox", "sandbox", id, "port", port, "err", err)
				}
				hostapi.WriteProxyError(w, http.StatusBadGateway, id, "upstream_error", "the sandbox did not answer on port "+strconv.Itoa(port)+": "+err.Error())
			},
		}
		// The request ends with its client, or when the guest goes away.
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		stop := context.AfterFunc(guestCtx, cancel)
		defer stop()
		hostapi.ServeProxied(w, r.WithContext(ctx), rp)
	})
}
