// Package cphttp is what the control plane's HTTP APIs share (wrenn's own
// under /v1, the E2B-compatible one under /e2b): JSON responses, the one
// mapping of error kinds to HTTP statuses, and the audit middleware that
// records every state-changing call.
package cphttp

import (
	"encoding/json"
	"net/http"

	"git.omukk.dev/wrenn/sandbox/pkg/fault"
)

// WriteJSON writes v as a JSON response with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v)
	}
}

// Status is the HTTP status of err's fault kind and the stable code /v1
// reports with it.
func Status(err error) (int, string) {
	switch fault.KindOf(err) {
	case fault.Invalid:
		return http.StatusBadRequest, "invalid_argument"
	case fault.Unauthenticated:
		return http.StatusUnauthorized, "unauthenticated"
	case fault.Forbidden:
		return http.StatusForbidden, "forbidden"
	case fault.NotFound:
		return http.StatusNotFound, "not_found"
	case fault.Exists, fault.Conflict:
		return http.StatusConflict, "conflict"
	case fault.NoCapacity:
		return http.StatusServiceUnavailable, "no_capacity"
	case fault.Unavailable:
		return http.StatusServiceUnavailable, "unavailable"
	case fault.Timeout:
		return http.StatusGatewayTimeout, "timeout"
	case fault.Unsupported:
		return http.StatusNotImplemented, "unsupported"
	case fault.Upstream:
		return http.StatusBadGateway, "host_error"
	case fault.Quota:
		return http.StatusTooManyRequests, "quota_exceeded"
	case fault.NoSpace:
		return http.StatusInsufficientStorage, "insufficient_storage"
	}
	return http.StatusInternalServerError, "internal"
}

// PublicMessage is what a response may say about err: its message, except
// for an internal error, whose details stay in the log.
func PublicMessage(err error) string {
	if fault.KindOf(err) == fault.Internal {
		return "internal error; the control plane's log has the details"
	}
	return err.Error()
}
