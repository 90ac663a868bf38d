package cpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"git.omukk.dev/wrenn/sandbox/internal/clientip"
	"git.omukk.dev/wrenn/sandbox/internal/cphttp"
	"git.omukk.dev/wrenn/sandbox/internal/wiretext"
)

// apiError is the one error shape every route returns.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Shorter names for the helpers this package shares with the
// E2B-compatible API.
var (
	writeJSON     = cphttp.WriteJSON
	clientIP      = clientip.Of
	setAudit      = cphttp.SetAudit
	setActor      = cphttp.SetActor
	platformAudit = cphttp.PlatformAudit
)

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Code: code, Message: msg})
}

// fail writes err with the status of its kind; internal errors are logged
// and reported without their details.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code := cphttp.Status(err)
	if status == http.StatusInternalServerError {
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, status, code, cphttp.PublicMessage(err))
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
	if err := wiretext.Check(v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", err.Error())
		return false
	}
	return true
}
