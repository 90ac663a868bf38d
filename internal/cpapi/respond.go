package cpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"git.omukk.dev/wrenn/sandbox/pkg/fault"
)

// apiError is the one error shape every route returns.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// WriteJSON writes v as a JSON response with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) { WriteJSON(w, status, v) }

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Code: code, Message: msg})
}

// ServiceStatus maps an error's fault kind to its HTTP status and stable
// code; the E2B-compatible API shares it.
func ServiceStatus(err error) (int, string) {
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
	}
	return http.StatusInternalServerError, "internal"
}

// fail writes err; errors the service did not classify are logged and
// reported without their details.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code := ServiceStatus(err)
	msg := err.Error()
	if status == http.StatusInternalServerError {
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "internal error; the control plane's log has the details"
	}
	writeError(w, status, code, msg)
}

// decodeOptional is decode for bodies whose every field is optional: an
// empty body means all defaults.
func (a *API) decodeOptional(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.ContentLength == 0 {
		return true
	}
	return a.decode(w, r, v)
}

// decode reads a JSON body into v: bounded, one object, no unknown fields.
func (a *API) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send the body as application/json")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body exceeds %d bytes", a.cfg.MaxBodyBytes))
		case errors.Is(err, io.EOF):
			writeError(w, http.StatusBadRequest, "invalid_argument", "a JSON body is required")
		default:
			writeError(w, http.StatusBadRequest, "invalid_argument", "malformed JSON body: "+err.Error())
		}
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "invalid_argument", "the body must hold a single JSON object")
		return false
	}
	return true
}
