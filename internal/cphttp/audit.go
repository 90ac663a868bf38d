package cphttp

import (
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/go-chi/httprate"
	"github.com/google/uuid"

	"git.omukk.dev/wrenn/sandbox/internal/clientip"
	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

// record collects what a handler knows about the call it served.
type record struct {
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

type recordKey struct{}

// with runs f on the call's record, if the call is audited.
func with(ctx context.Context, f func(*record)) {
	if rec, _ := ctx.Value(recordKey{}).(*record); rec != nil {
		f(rec)
	}
}

// Audit writes one audit entry for every state-changing call, after it
// has been served, with its outcome; an unauthenticated call only while
// anon lets its address be recorded.
func Audit(svc *service.Service, anon *AnonymousQuota) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.Method {
			case http.MethodGet, http.MethodHead, http.MethodOptions:
				next.ServeHTTP(w, r)
				return
			}
			rec := &record{}
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			next.ServeHTTP(ww, r.WithContext(context.WithValue(r.Context(), recordKey{}, rec)))
			pattern := chi.RouteContext(r.Context()).RoutePattern()
			if rec.skip || pattern == "" {
				return
			}
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK
			}
			e := service.AuditEntry{Action: rec.action, ResourceType: rec.resourceType, ResourceID: rec.resourceID, Status: status, IP: clientip.Of(r), TeamID: rec.team}
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
				if !anon.Allow(r) {
					return
				}
				e.ActorType, e.ActorID = "anonymous", clientip.Of(r)
			}
			if rec.platform {
				e.TeamID = uuid.Nil
			}
			svc.Audit(r.Context(), e)
		})
	}
}

// SetAudit names the action and resource a state-changing call touched.
func SetAudit(ctx context.Context, action, resourceType, resourceID string) {
	with(ctx, func(rec *record) { rec.action, rec.resourceType, rec.resourceID = action, resourceType, resourceID })
}

// NoteCaller names the authenticated caller who made the call.
func NoteCaller(ctx context.Context, c auth.Caller) {
	with(ctx, func(rec *record) { rec.caller = &c })
}

// SetActor names an unauthenticated actor (an email signing in, a host).
func SetActor(ctx context.Context, actorType, actorID string, team uuid.UUID) {
	with(ctx, func(rec *record) { rec.actorType, rec.actorID, rec.team = actorType, actorID, team })
}

// TeamOnSuccess records a successful call under team (a team route's
// team, which a failed call may not belong to).
func TeamOnSuccess(ctx context.Context, team uuid.UUID) {
	with(ctx, func(rec *record) { rec.teamOnSuccess = team })
}

// PlatformAudit records the call as platform-level.
func PlatformAudit(ctx context.Context) {
	with(ctx, func(rec *record) { rec.platform = true })
}

// SkipAudit leaves the call out of the log (host heartbeats: every few
// seconds per host, not worth an entry each).
func SkipAudit(ctx context.Context) {
	with(ctx, func(rec *record) { rec.skip = true })
}

// AnonymousQuota bounds what unauthenticated requests put in the audit log
// and the log: each client address gets a number of records a minute, so
// that requests nobody authenticated cannot fill either at will. Past it
// they are counted, and the count is logged now and then.
type AnonymousQuota struct {
	perMinute int
	limit     *httprate.RateLimiter
	dropped   atomic.Int64
	log       *slog.Logger
}

// NewAnonymousQuota allows perMinute records per client address.
func NewAnonymousQuota(perMinute int, log *slog.Logger) *AnonymousQuota {
	return &AnonymousQuota{perMinute: perMinute, limit: httprate.NewRateLimiter(perMinute, time.Minute), log: log}
}

// Allow says whether an unauthenticated request may still be logged and
// audited. One request is weighed once, however many times it is asked.
func (q *AnonymousQuota) Allow(r *http.Request) bool {
	rec, _ := r.Context().Value(recordKey{}).(*record)
	if rec != nil && rec.anonymous {
		return rec.recorded
	}
	ok := !q.limit.OnLimit(headerSink{}, r, httprate.CanonicalizeIP(clientip.Of(r)))
	if !ok {
		if n := q.dropped.Add(1); n%1000 == 1 {
			q.log.Warn("unauthenticated requests past the per-address quota are neither logged nor audited", "ip", clientip.Of(r), "dropped_so_far", n, "quota_per_minute", q.perMinute)
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

// AuditStream records a WebSocket session (a terminal, a streamed exec)
// when it opens: it is a GET, which the audit middleware passes over, and
// it may last for hours.
func AuditStream(svc *service.Service, r *http.Request, c auth.Caller, action, sandboxID, detail string) {
	actorType, actorID := service.ActorOf(c)
	svc.Audit(r.Context(), service.AuditEntry{TeamID: c.TeamID, ActorType: actorType, ActorID: actorID, Action: action,
		ResourceType: "sandbox", ResourceID: sandboxID, Status: http.StatusSwitchingProtocols, Detail: detail, IP: clientip.Of(r)})
}
