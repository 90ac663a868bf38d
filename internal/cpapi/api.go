// Package cpapi is wrenn-cp's HTTP API under /v1: routes, authentication
// and audit middleware, request and response shapes, WebSocket streams,
// and the OpenAPI document that describes them.
package cpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/go-chi/httprate"
	"github.com/google/uuid"

	"git.omukk.dev/wrenn/sandbox/internal/clientip"
	"git.omukk.dev/wrenn/sandbox/internal/cphttp"
	"git.omukk.dev/wrenn/sandbox/internal/metrics"
	"git.omukk.dev/wrenn/sandbox/internal/wiretext"
	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/config"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

// API serves the control plane's routes.
type API struct {
	svc *service.Service
	cfg config.Config
	log *slog.Logger
	// Root is the whole router; V1 is the authenticated /v1 group, where
	// extensions add routes that need a caller.
	Root chi.Router
	V1   chi.Router
	// accountLimit bounds sign-in attempts per account from all addresses.
	accountLimit *httprate.RateLimiter
	// anon bounds what unauthenticated requests put in the audit log and
	// the log, per client address.
	anon *cphttp.AnonymousQuota
}

// New builds the router.
func New(svc *service.Service, cfg config.Config, log *slog.Logger) *API {
	a := &API{svc: svc, cfg: cfg, log: log, accountLimit: httprate.NewRateLimiter(cfg.AuthAccountRatePerMinute, time.Minute),
		anon: cphttp.NewAnonymousQuota(cfg.AnonymousAuditPerMinute, log)}
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Use(clientip.Middleware(cfg.TrustedProxies))
	r.Use(cphttp.Audit(svc, a.anon))
	r.Use(checkText)
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such route")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed on this route")
	})

	r.Get("/health", func(w http.ResponseWriter, r *http.Request) {
		if err := svc.Pool.Ping(r.Context()); err != nil {
			writeError(w, http.StatusServiceUnavailable, "unavailable", "database unreachable")
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	// Public probes for load balancers and service managers: /healthz
	// while the process serves, /readyz while it can also reach the
	// database.
	r.Method(http.MethodGet, "/healthz", metrics.Healthz())
	r.Method(http.MethodGet, "/readyz", metrics.Readyz(func(ctx context.Context) error {
		if err := svc.Pool.Ping(ctx); err != nil {
			return errors.New("database unreachable")
		}
		return nil
	}, log))
	r.Get("/openapi.yaml", serveSpec)
	r.Get("/docs", serveDocs)
	r.Get("/docs/*", serveDocs)

	r.Route("/v1", func(r chi.Router) {
		// Public: sign-in and host registration, rate-limited per client.
		r.Group(func(r chi.Router) {
			r.Use(httprate.LimitBy(cfg.AuthRatePerMinute, time.Minute, func(r *http.Request) (string, error) {
				return httprate.CanonicalizeIP(clientIP(r)), nil
			}, httprate.WithLimitHandler(func(w http.ResponseWriter, r *http.Request) {
				a.log.Warn("auth rate limit", "ip", clientIP(r), "path", r.URL.Path)
				writeError(w, http.StatusTooManyRequests, "rate_limited", "too many attempts from this address; wait a minute")
			})))
			r.Post("/auth/signup", a.signup)
			r.Post("/auth/login", a.login)
			r.Post("/hosts/register", a.registerHost)
			r.Get("/auth/github/login", a.githubLogin)
			r.Get("/auth/github/callback", a.githubCallback)
			r.Post("/auth/github/exchange", a.githubExchange)
		})
		// Public: what the sign-in page offers, and the browser's session.
		r.Get("/auth/providers", a.providers)
		r.Get("/auth/session", a.browserSession)
		// Hosts authenticate with their certificates (authenticateHost).
		r.Post("/hosts/{hostID}/heartbeat", a.heartbeat)
		r.Post("/hosts/{hostID}"+hostapi.CertificatePath, a.renewHostCert)
		r.Post("/hosts/{hostID}"+hostapi.SandboxesChangedPath, a.sandboxesChanged)

		// WebSocket streams: their own group, their own authentication
		// (which also accepts ?token= because browsers cannot set headers
		// on a WebSocket).
		r.Route("/ws", func(r chi.Router) {
			r.Use(a.authenticate(true))
			r.Get("/sandboxes/{sandboxID}/pty", a.wsPty)
			r.Get("/sandboxes/{sandboxID}/exec", a.wsExec)
		})

		r.Group(func(r chi.Router) {
			r.Use(a.authenticate(false))
			a.V1 = r
			r.Post("/auth/logout", a.logout)
			r.Get("/auth/me", a.me)
			r.Post("/auth/switch-team", a.switchTeam)
			r.Patch("/auth/me", a.updateMe)
			r.Post("/auth/password", a.changePassword)
			r.Post("/auth/github/link", a.githubLink)
			r.Delete("/auth/github", a.githubUnlink)

			r.Get("/api-keys", a.listKeys)
			r.Post("/api-keys", a.createKey)
			r.Delete("/api-keys/{keyID}", a.revokeKey)

			r.Get("/teams", a.listTeams)
			r.Post("/teams", a.createTeam)
			r.Get("/teams/{teamID}", a.getTeam)
			r.Patch("/teams/{teamID}", a.renameTeam)
			r.Delete("/teams/{teamID}", a.deleteTeam)
			r.Get("/teams/{teamID}/members", a.listMembers)
			r.Get("/teams/{teamID}/invitations", a.listTeamInvitations)
			r.Post("/teams/{teamID}/invitations", a.invite)
			r.Delete("/teams/{teamID}/invitations/{invitationID}", a.revokeInvitation)
			r.Get("/invitations", a.myInvitations)
			r.Post("/invitations/{invitationID}/accept", a.acceptInvitation)
			r.Post("/invitations/{invitationID}/decline", a.declineInvitation)
			r.Patch("/teams/{teamID}/members/{userID}", a.setMemberRole)
			r.Delete("/teams/{teamID}/members/{userID}", a.removeMember)

			r.Get("/templates", a.listTemplates)
			a.templateRoutes(r)

			r.Get("/sandboxes", a.listSandboxes)
			r.Post("/sandboxes", a.createSandbox)
			r.Get("/sandboxes/{sandboxID}", a.getSandbox)
			r.Delete("/sandboxes/{sandboxID}", a.destroySandbox)
			r.Post("/sandboxes/{sandboxID}/timeout", a.setTimeout)
			r.Put("/sandboxes/{sandboxID}/network", a.setNetwork)
			r.Post("/sandboxes/{sandboxID}/pause", a.pauseSandbox)
			r.Post("/sandboxes/{sandboxID}/resume", a.resumeSandbox)
			r.Post("/sandboxes/{sandboxID}/exec", a.exec)
			r.Get("/sandboxes/{sandboxID}/processes", a.listProcesses)
			r.Get("/sandboxes/{sandboxID}/metrics", a.metrics)
			r.Get("/sandboxes/{sandboxID}/logs", a.sandboxLogs)
			r.Get("/sandboxes/{sandboxID}/files", a.downloadFile)
			r.Put("/sandboxes/{sandboxID}/files", a.uploadFile)
			r.Delete("/sandboxes/{sandboxID}/files", a.removeFile)
			r.Get("/sandboxes/{sandboxID}/files/list", a.listDir)
			r.Post("/sandboxes/{sandboxID}/files/mkdir", a.makeDir)
			r.Post("/sandboxes/{sandboxID}/files/move", a.moveFile)
			r.Get("/sandboxes/{sandboxID}/ports", a.listPorts)

			r.Get("/snapshots", a.listSnapshots)
			r.Post("/snapshots", a.createSnapshot)
			r.Get("/snapshots/{snapshotID}", a.getSnapshot)
			r.Delete("/snapshots/{snapshotID}", a.deleteSnapshot)

			r.Get("/audit", a.listAudit)
			r.Get("/usage", a.usage)

			r.Post("/hosts/tokens", a.createHostToken)
			r.Get("/hosts", a.listHosts)
			r.Get("/hosts/{hostID}", a.getHost)
			r.Post("/hosts/{hostID}/drain", a.drainHost)
			r.Delete("/hosts/{hostID}", a.deleteHost)

			r.Get("/admin/users", a.adminUsers)
			r.Post("/admin/users/{userID}/activate", a.adminActivate)
			r.Post("/admin/users/{userID}/deactivate", a.adminDeactivate)
			r.Get("/admin/teams", a.adminTeams)
			r.Put("/admin/teams/{teamID}/quota", a.adminSetQuota)
			r.Get("/admin/sandboxes", a.adminSandboxes)
			r.Get("/admin/audit", a.adminAudit)
		})
	})
	a.Root = r
	return a
}

// checkText refuses a NUL byte or invalid UTF-8 in the path or the query
// (PostgreSQL cannot store them; a guest cannot take them) with a 400.
func checkText(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := wiretext.CheckQuery(r.URL.Path, r.URL.Query()); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_argument", err.Error())
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ServeHTTP serves the API.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.Root.ServeHTTP(w, r) }

// TeamHeader names, on every authenticated response, the team the call
// acted in, so that a switch of team is never silent.
const TeamHeader = "Wrenn-Team"

// credential is the bearer token or API key a request carries.
func credential(r *http.Request, allowQuery bool) (string, string) {
	if k := r.Header.Get("X-API-Key"); k != "" {
		return k, "header"
	}
	if h := r.Header.Get("Authorization"); h != "" {
		if tok, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(tok), "header"
		}
		return "", "malformed"
	}
	if allowQuery {
		if t := r.URL.Query().Get("token"); t != "" {
			return t, "query"
		}
	}
	return "", ""
}

// authenticate requires a session or API key. Upgrade headers play no
// part: a request is let through on its credential alone.
func (a *API) authenticate(allowQuery bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cred, _ := credential(r, allowQuery)
			fromCookie := false
			if cred == "" {
				cred = cookieCredential(r)
				fromCookie = cred != ""
			}
			c, err := a.svc.Authenticate(r.Context(), cred)
			if err != nil {
				if a.anon.Allow(r) {
					a.log.Warn("authentication failed", "ip", clientIP(r), "method", r.Method, "path", wiretext.Clean(r.URL.Path, 200), "credential", describeCredential(cred), "reason", err.Error())
				}
				a.fail(w, r, err)
				return
			}
			if fromCookie && !a.csrfOK(r, c, allowQuery) {
				a.log.Warn("CSRF token missing or wrong", "ip", clientIP(r), "method", r.Method, "path", r.URL.Path)
				writeError(w, http.StatusForbidden, "csrf", "a request authenticated by the session cookie needs its CSRF token in "+csrfHeader)
				return
			}
			cphttp.NoteCaller(r.Context(), c)
			if c.HasTeam() {
				w.Header().Set(TeamHeader, id.Format(id.Team, c.TeamID))
			}
			next.ServeHTTP(w, r.WithContext(auth.WithCaller(r.Context(), c)))
		})
	}
}

// describeCredential names a credential for logs without revealing it.
func describeCredential(cred string) string {
	switch {
	case cred == "":
		return "none"
	case strings.Count(cred, ".") == 2:
		return "session token"
	default:
		if len(cred) > 12 {
			return "api key " + wiretext.Clean(cred[:12], 12) + "…"
		}
		return "malformed key"
	}
}

func caller(r *http.Request) auth.Caller {
	c, _ := auth.CallerFrom(r.Context())
	return c
}

// pathID parses a wire ID from the route; a malformed one is a 400.
func pathID(w http.ResponseWriter, r *http.Request, param string, kind id.Kind) (uuid.UUID, bool) {
	u, err := id.Parse(kind, chi.URLParam(r, param))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_id", err.Error())
		return u, false
	}
	return u, true
}
