// Package sandboxproxy is the control plane's sandbox traffic proxy: it
// routes a request by Host (<port>-<sandboxID>.<domain>) or by the
// E2b-Sandbox-Id / E2b-Sandbox-Port headers to the agent that runs the
// sandbox, which forwards it into the sandbox's network. Bodies stream
// both ways; WebSocket upgrades pass through; a client that goes away
// cancels the request all the way down.
package sandboxproxy

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"git.omukk.dev/wrenn/sandbox/internal/clientip"
	"git.omukk.dev/wrenn/sandbox/internal/envd/files"
	"git.omukk.dev/wrenn/sandbox/internal/envdapi"
	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

// TrafficTokenHeader carries a sandbox's traffic token for its
// non-public ports.
const TrafficTokenHeader = "E2b-Traffic-Access-Token"

// Proxy serves sandbox traffic.
type Proxy struct {
	svc    *service.Service
	domain string
	log    *slog.Logger
	// Requests in flight per client address and per sandbox, each
	// bounded (config.ProxyMaxPerClient, ProxyMaxPerSandbox).
	clients, sandboxes inFlight
}

// New returns a proxy; domain may be empty (header routing only).
func New(svc *service.Service, domain string, log *slog.Logger) *Proxy {
	// A port in the domain is for clients building URLs (the proxy is not
	// on 443); Host is matched without one.
	if h, _, err := net.SplitHostPort(domain); err == nil {
		domain = h
	}
	return &Proxy{svc: svc, domain: strings.TrimPrefix(strings.ToLower(domain), "."), log: log}
}

// Close does nothing: the connections to agents are the service's
// (service.ProxyTarget's transport, one per host, over mutual TLS).
func (p *Proxy) Close() {}

// route finds the sandbox and port a request is for.
func (p *Proxy) route(r *http.Request) (sandboxID string, port int, ok bool) {
	host := strings.ToLower(r.Host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	byHeaders := host == "localhost" || net.ParseIP(strings.Trim(host, "[]")) != nil
	if p.domain != "" && strings.HasSuffix(host, "."+p.domain) {
		label := strings.TrimSuffix(host, "."+p.domain)
		if label == "sandbox" {
			byHeaders = true
		} else if portStr, sid, found := strings.Cut(label, "-"); found {
			n, err := strconv.Atoi(portStr)
			return sid, n, err == nil
		}
	}
	if !byHeaders {
		return "", 0, false
	}
	n, err := strconv.Atoi(r.Header.Get("E2b-Sandbox-Port"))
	return r.Header.Get("E2b-Sandbox-Id"), n, err == nil && r.Header.Get("E2b-Sandbox-Id") != ""
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sid, port, ok := p.route(r)
	if !ok {
		hostapi.WriteProxyError(w, http.StatusBadRequest, "", "no_route",
			"address a sandbox by Host <port>-<sandboxID>.<domain>, or by the E2b-Sandbox-Id and E2b-Sandbox-Port headers")
		return
	}
	if port < 1 || port > 65535 {
		hostapi.WriteProxyError(w, http.StatusBadRequest, sid, "invalid_port", "the port must be 1 to 65535")
		return
	}
	uid, err := id.Parse(id.Sandbox, sid)
	if err != nil {
		hostapi.WriteProxyError(w, http.StatusBadGateway, sid, "sandbox_not_found", "The sandbox was not found")
		return
	}
	// Every request in flight holds descriptors here and at the agent:
	// one client, or one sandbox's traffic, gets a bounded share.
	cfg := p.svc.Config
	client := clientip.Of(r)
	if !p.admit(w, &p.clients, client, cfg.ProxyMaxPerClient, sid, http.StatusTooManyRequests, "too_many_requests",
		"this client has %d requests in flight through the sandbox proxy already; wait for some to finish") {
		return
	}
	defer p.clients.release(client)
	if !p.admit(w, &p.sandboxes, sid, cfg.ProxyMaxPerSandbox, sid, http.StatusServiceUnavailable, "sandbox_busy",
		"the sandbox has %d requests in flight through the proxy already; try again shortly") {
		return
	}
	defer p.sandboxes.release(sid)
	// Who may reach the sandbox is decided before anything is done for
	// the request: a request that may not reach it must not resume it.
	t, err := p.svc.ProxyTarget(r.Context(), uid)
	if err != nil {
		p.fail(w, sid, err)
		return
	}
	switch t.Sandbox.State {
	case "stopping", "stopped", "error":
		p.fail(w, sid, errGone)
		return
	}
	// envd checks its own token: its port needs no traffic token.
	if port != envdapi.Port && !t.Sandbox.AllowPublicTraffic {
		got := r.Header.Get(TrafficTokenHeader)
		if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(p.svc.TrafficToken(t.Sandbox))) != 1 {
			hostapi.WriteProxyError(w, http.StatusForbidden, sid, "traffic_token_required",
				"this sandbox's ports are private: send its traffic access token in "+TrafficTokenHeader)
			return
		}
	}
	if t.Sandbox.State != "running" || pausingOnHost(t.Sandbox) {
		// envd checks its own token, but only once the sandbox runs: to
		// resume one, a request for envd's port carries that token.
		resume := port != envdapi.Port || p.envdAuthorized(r, t.Sandbox)
		if t, err = p.target(r.Context(), uid, resume); err != nil {
			p.fail(w, sid, err)
			return
		}
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "https", t.Address
			pr.Out.Host = pr.In.Host
			pr.Out.Header.Del(hostapi.HeaderProxySecret)
			pr.Out.Header.Set(hostapi.HeaderProxySandbox, sid)
			pr.Out.Header.Set(hostapi.HeaderProxyPort, strconv.Itoa(port))
			pr.Out.Header.Del(TrafficTokenHeader)
			pr.SetXForwarded()
		},
		Transport:     t.Transport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client went away; the request below is cancelled
			}
			p.log.Warn("proxy to agent", "sandbox", sid, "agent", t.Address, "err", err)
			hostapi.WriteProxyError(w, http.StatusBadGateway, sid, "host_unreachable", "the sandbox's host did not answer")
		},
	}
	hostapi.ServeProxied(w, r, rp)
}

// admit takes one of key's max places in f, or answers status with code
// and msg (formatted with max), logs it, and reports false.
func (p *Proxy) admit(w http.ResponseWriter, f *inFlight, key string, max int, sid string, status int, code, msg string) bool {
	if f.acquire(key, max) {
		return true
	}
	p.log.Warn("sandbox proxy: request refused past a limit", "limit", code, "key", key, "max", max)
	hostapi.WriteProxyError(w, status, sid, code, fmt.Sprintf(msg, max))
	return false
}

// envdAuthorized reports whether a request for envd's port carries the
// sandbox's envd token, in X-Access-Token or as a signed /files URL, as
// envd itself would accept it.
func (p *Proxy) envdAuthorized(r *http.Request, sb db.Sandbox) bool {
	token := p.svc.EnvdToken(sb)
	if token == "" {
		return false
	}
	if got := r.Header.Get("X-Access-Token"); got != "" {
		return subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
	}
	q := r.URL.Query()
	sig := q.Get("signature")
	if r.URL.Path != "/files" || sig == "" {
		return false
	}
	op := "read"
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		op = "write"
	}
	exp, _ := strconv.ParseInt(q.Get("signature_expiration"), 10, 64)
	if exp != 0 && time.Now().Unix() > exp {
		return false
	}
	want := files.Signature(q.Get("path"), op, q.Get("username"), token, exp)
	return subtle.ConstantTimeCompare([]byte(sig), []byte(want)) == 1
}

// target resolves a sandbox, resuming it first if it is paused, asks for
// that, and the request may resume it.
func (p *Proxy) target(ctx context.Context, uid uuid.UUID, mayResume bool) (service.ProxyTarget, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		t, err := p.svc.ProxyTarget(ctx, uid)
		if err != nil {
			return t, err
		}
		switch t.Sandbox.State {
		case "running":
			if !pausingOnHost(t.Sandbox) {
				return t, nil
			}
			// Its host may have paused it a moment ago, and its report
			// be on the way: ask the host.
			st, err := p.svc.SyncSandbox(ctx, uid)
			if err != nil {
				return t, err
			}
			if st == "running" {
				return p.svc.ProxyTarget(ctx, uid)
			}
		case "paused":
			if !t.Sandbox.AutoResume || !mayResume {
				return t, errPaused
			}
			c := auth.Caller{Kind: auth.System, TeamID: t.Sandbox.TeamID, Role: "member"}
			_, err := p.svc.ResumeSandbox(ctx, c, uid, 0)
			if err != nil && !errors.Is(err, service.ErrConflict) {
				return t, err
			}
			if err == nil {
				p.svc.Audit(ctx, service.AuditEntry{TeamID: t.Sandbox.TeamID, ActorType: "system", ActorID: "sandbox-proxy",
					Action: "sandbox.auto_resume", ResourceType: "sandbox", ResourceID: id.Format(id.Sandbox, uid), Status: http.StatusOK})
			}
		case "resuming", "creating", "pausing":
			// Another request's resume, the create, or a pause is under
			// way.
		default:
			return t, errGone
		}
		if time.Now().After(deadline) {
			return t, errors.New("the sandbox did not come up in time")
		}
		select {
		case <-ctx.Done():
			return t, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pausingOnHost reports whether a sandbox recorded as running is past its
// end with a pause to follow: its host pauses it, or has just done so.
func pausingOnHost(sb db.Sandbox) bool {
	return sb.State == "running" && sb.OnTimeout == "pause" && sb.ExpiresAt != nil && time.Now().After(*sb.ExpiresAt)
}

var (
	errPaused = errors.New("paused")
	errGone   = errors.New("gone")
)

func (p *Proxy) fail(w http.ResponseWriter, sid string, err error) {
	switch {
	case errors.Is(err, service.ErrNotFound), errors.Is(err, errGone):
		hostapi.WriteProxyError(w, http.StatusBadGateway, sid, "sandbox_not_found", "The sandbox was not found")
	case errors.Is(err, errPaused):
		hostapi.WriteProxyError(w, http.StatusBadGateway, sid, "sandbox_paused", "The sandbox is paused and does not resume on traffic: resume it (Sandbox.connect) first")
	case errors.Is(err, service.ErrUnavailable):
		hostapi.WriteProxyError(w, http.StatusBadGateway, sid, "host_unreachable", err.Error())
	default:
		p.log.Error("sandbox proxy", "sandbox", sid, "err", err)
		hostapi.WriteProxyError(w, http.StatusBadGateway, sid, "proxy_error", err.Error())
	}
}
