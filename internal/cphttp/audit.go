package cphttp

import (
	"context"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/google/uuid"

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
}

type recordKey struct{}

// with runs f on the call's record, if the call is audited.
func with(ctx context.Context, f func(*record)) {
	if rec, _ := ctx.Value(recordKey{}).(*record); rec != nil {
		f(rec)
	}
}

// Audit writes one audit entry for every state-changing call, after it
// has been served, with its outcome.
func Audit(svc *service.Service) func(http.Handler) http.Handler {
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
			e := service.AuditEntry{Action: rec.action, ResourceType: rec.resourceType, ResourceID: rec.resourceID, Status: status, IP: ClientIP(r), TeamID: rec.team}
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
				e.ActorType, e.ActorID = "anonymous", ClientIP(r)
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
