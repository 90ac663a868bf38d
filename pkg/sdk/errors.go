package sdk

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"connectrpc.com/connect"
)

// Kinds of failure. Every error the SDK returns for a failed call matches
// at most one of them with errors.Is, whichever API or protocol it came
// from; errors.As with *APIError gives the details.
var (
	// ErrNotFound: the sandbox, process, file, snapshot or key does not
	// exist (or belongs to another team).
	ErrNotFound = errors.New("not found")
	// ErrAuth: the credential is missing, wrong, expired, or lacks the
	// right (unauthenticated or forbidden).
	ErrAuth = errors.New("not authorized")
	// ErrInvalid: the request was refused as malformed or out of range.
	ErrInvalid = errors.New("invalid request")
	// ErrConflict: the resource is in a state that does not allow the
	// operation (a paused sandbox asked to pause, a name already taken).
	ErrConflict = errors.New("conflict")
	// ErrCapacity: no host has room, a quota or rate limit was hit, or a
	// disk is full.
	ErrCapacity = errors.New("no capacity")
	// ErrTimeout: a deadline passed (the caller's, the command's, or the
	// sandbox's own timeout).
	ErrTimeout = errors.New("timed out")
	// ErrUnavailable: the sandbox or the platform cannot be reached now:
	// the sandbox was killed or paused under a running call, a host is
	// down, or a stream was cut.
	ErrUnavailable = errors.New("unavailable")
	// ErrUnsupported: the endpoint (or this SDK against it) cannot do
	// what was asked, e.g. a Wrenn-only call against an E2B endpoint.
	ErrUnsupported = errors.New("unsupported")
)

// APIError is a failed call to the control plane's API or to a sandbox's
// envd, with what the server said.
type APIError struct {
	// Op names the call, e.g. "create sandbox" or "read /etc/hosts".
	Op string
	// Status is the HTTP status, 0 for a Connect error.
	Status int
	// Code is the server's error code: the /v1 API's stable code, the
	// Connect code, or empty.
	Code    string
	Message string
	kind    error
}

func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	b.WriteString(": ")
	switch {
	case e.Message != "":
		b.WriteString(e.Message)
	case e.kind != nil:
		b.WriteString(e.kind.Error())
	default:
		b.WriteString("failed")
	}
	switch {
	case e.Code != "" && e.Status != 0:
		fmt.Fprintf(&b, " (%d %s)", e.Status, e.Code)
	case e.Status != 0:
		fmt.Fprintf(&b, " (%d)", e.Status)
	case e.Code != "":
		fmt.Fprintf(&b, " (%s)", e.Code)
	}
	return b.String()
}

// Is matches the error's kind.
func (e *APIError) Is(target error) bool { return e.kind != nil && target == e.kind }

// Unwrap returns the kind.
func (e *APIError) Unwrap() error { return e.kind }

// ExitError is returned by Run and Wait when a command exits with a
// non-zero code; its Result holds the output.
type ExitError struct {
	Result CommandResult
}

func (e *ExitError) Error() string {
	if e.Result.Error != "" {
		return fmt.Sprintf("command exited with code %d: %s", e.Result.ExitCode, e.Result.Error)
	}
	return fmt.Sprintf("command exited with code %d", e.Result.ExitCode)
}

// ExitCode is the command's exit code (-1 when a signal ended it).
func (e *ExitError) ExitCode() int { return e.Result.ExitCode }

// kindOfStatus maps an HTTP status to a kind.
func kindOfStatus(status int) error {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
		return ErrInvalid
	case http.StatusUnauthorized, http.StatusForbidden:
		return ErrAuth
	case http.StatusNotFound, http.StatusGone:
		return ErrNotFound
	case http.StatusConflict:
		return ErrConflict
	case http.StatusTooManyRequests, http.StatusInsufficientStorage:
		return ErrCapacity
	case http.StatusRequestTimeout, http.StatusGatewayTimeout:
		return ErrTimeout
	case http.StatusNotImplemented:
		return ErrUnsupported
	case http.StatusBadGateway:
		return ErrUnavailable
	case http.StatusServiceUnavailable:
		return nil // decided by the body's code (no_capacity or unavailable)
	}
	return nil
}

// kindOfCode maps a /v1 error code to a kind.
func kindOfCode(code string) error {
	switch code {
	case "invalid_argument", "invalid_id", "body_too_large", "unsupported_media_type":
		return ErrInvalid
	case "unauthenticated", "forbidden", "permission_denied":
		return ErrAuth
	case "not_found":
		return ErrNotFound
	case "conflict", "already_exists":
		return ErrConflict
	case "no_capacity", "rate_limited", "resource_exhausted", "quota_exceeded", "insufficient_storage":
		return ErrCapacity
	case "unavailable", "host_error":
		return ErrUnavailable
	case "timeout", "deadline_exceeded":
		return ErrTimeout
	case "unsupported", "unimplemented":
		return ErrUnsupported
	}
	return nil
}

// connectError converts a Connect error from envd into an *APIError.
func connectError(op string, err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return fmt.Errorf("%s: %w", op, err)
	}
	var kind error
	switch ce.Code() {
	case connect.CodeInvalidArgument, connect.CodeOutOfRange, connect.CodeFailedPrecondition:
		kind = ErrInvalid
	case connect.CodeUnauthenticated, connect.CodePermissionDenied:
		kind = ErrAuth
	case connect.CodeNotFound:
		kind = ErrNotFound
	case connect.CodeAlreadyExists, connect.CodeAborted:
		kind = ErrConflict
	case connect.CodeResourceExhausted:
		kind = ErrCapacity
	case connect.CodeDeadlineExceeded:
		kind = ErrTimeout
	case connect.CodeUnavailable:
		kind = ErrUnavailable
	case connect.CodeUnimplemented:
		kind = ErrUnsupported
	case connect.CodeCanceled:
		return fmt.Errorf("%s: %w", op, err)
	}
	return &APIError{Op: op, Code: ce.Code().String(), Message: ce.Message(), kind: kind}
}

// unsupported is the error for a call the endpoint's protocol has no
// counterpart for.
func unsupported(op, why string) error {
	return &APIError{Op: op, Message: why, kind: ErrUnsupported}
}
