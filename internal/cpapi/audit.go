package cpapi

import (
	"context"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/go-chi/httprate"
	"github.com/google/uuid"

	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

// auditRecord collects what a handler knows about the call it served.
type auditRecord struct {
	action, resourceType, resourceID string
	caller                           *auth.Caller
	// team overrides the caller's team; teamOnSuccess does when the call
	// succeeds (a team route's team, which a failed call may not belong to).
	team, teamOnSuccess uuid.UUID
	// actorType/actorID describe unauthenticated callers (sign-in, hosts).
	actorType, actorID string
	skip               bool
	// platform records the entry outside any team (hosts, admin actions):
	// only platform admins see it.
	platform bool
	// anonymous is set once an unauthenticated request was weighed
	// against the per-address quota; recorded says whether it is within.
	anonymous, recorded bool
}

// platformAudit records the call as platform-level.
func platformAudit(ctx context.Context) {
	if rec := auditOf(ctx); rec != nil {
		rec.platform = true
	}
}

type auditKey struct{}

func auditOf(ctx context.Context) *auditRecord {
	rec, _ := ctx.Value(auditKey{}).(*auditRecord)
	return rec
}

// setActor names an unauthenticated actor (an email signing in, a host).
func setActor(ctx context.Context, actorType, actorID string, team uuid.UUID) {
	if rec := auditOf(ctx); rec != nil {
		rec.actorType, rec.actorID, rec.team = actorType, actorID, team
	}
}

// audit writes one audit entry for every state-changing call, after it
// has been served, with its outcome.
func (a *API) audit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			next.ServeHTTP(w, r)
			return
		}
		rec := &auditRecord{}
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r.WithContext(context.WithValue(r.Context(), auditKey{}, rec)))
		pattern := chi.RouteContext(r.Context()).RoutePattern()
		if rec.skip || pattern == "" {
			return
		}
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK
		}
		e := service.AuditEntry{Action: rec.action, ResourceType: rec.resourceType, ResourceID: rec.resourceID, Status: status, IP: clientIP(r), TeamID: rec.team}
		if status < 400 && rec.teamOnSuccess != uuid.Nil {
			e.TeamID = rec.teamOnSuccess
		}
		if e.Action == "" {
			e.Action = r.Method + " " + pattern
		}
		switch {
		case rec.caller != nil:
			e.ActorType, e.ActorID = service.ActorOf(*rec.caller)
			if e.TeamID == uuid.Nil {
				e.TeamID = rec.caller.TeamID
			}
		case rec.actorType != "":
			e.ActorType, e.ActorID = rec.actorType, rec.actorID
		default:
			if !a.recordAnonymous(r) {
				return
			}
			e.ActorType, e.ActorID = "anonymous", clientIP(r)
		}
		if rec.platform {
			e.TeamID = uuid.Nil
		}
		a.svc.Audit(r.Context(), e)
	})
}

// SetAudit names the action and resource of a state-changing call served
// by a handler outside this package (the E2B-compatible API, extensions).
func SetAudit(ctx context.Context, action, resourceType, resourceID string) {
	setAudit(ctx, action, resourceType, resourceID)
}

// NoteCaller tells the audit log who made a call that a handler outside
// this package authenticated.
func NoteCaller(ctx context.Context, c auth.Caller) {
	if rec := auditOf(ctx); rec != nil {
		rec.caller = &c
	}
}

// recordAnonymous says whether an unauthenticated request may still be
// logged and audited: each client address gets AnonymousAuditPerMinute a
// minute, so that requests nobody authenticated cannot fill the audit log
// and the log at will. Past it they are counted, and the count is logged
// now and then. One request is weighed once.
func (a *API) recordAnonymous(r *http.Request) bool {
	rec := auditOf(r.Context())
	if rec != nil && rec.anonymous {
		return rec.recorded
	}
	ok := !a.anonLimit.OnLimit(headerSink{}, r, httprate.CanonicalizeIP(clientIP(r)))
	if !ok {
		if n := a.anonDropped.Add(1); n%1000 == 1 {
			a.log.Warn("unauthenticated requests past the per-address quota are neither logged nor audited", "ip", clientIP(r), "dropped_so_far", n, "quota_per_minute", a.cfg.AnonymousAuditPerMinute)
		}
	}
	if rec != nil {
		rec.anonymous, rec.recorded = true, ok
	}
	return ok
}

// headerSink takes the rate-limit headers of a check that answers nobody.
type headerSink struct{}

func (headerSink) Header() http.Header         { return http.Header{} }
func (headerSink) Write(b []byte) (int, error) { return len(b), nil }
func (headerSink) WriteHeader(int)             {}

// auditStream records a WebSocket session (a terminal, a streamed exec)
// when it opens: it is a GET, which the audit middleware passes over, and
// it may last for hours.
func (a *API) auditStream(r *http.Request, action, sandboxID, detail string) {
	c := caller(r)
	actorType, actorID := service.ActorOf(c)
	a.svc.Audit(r.Context(), service.AuditEntry{TeamID: c.TeamID, ActorType: actorType, ActorID: actorID, Action: action,
		ResourceType: "sandbox", ResourceID: sandboxID, Status: http.StatusSwitchingProtocols, Detail: detail, IP: clientIP(r)})
}
