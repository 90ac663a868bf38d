// Package fault is Wrenn's one error vocabulary. Every error that crosses
// a boundary (agent to control plane over Connect, service to HTTP, envd
// to agent) is classified by a Kind, and each boundary maps kinds to its
// own codes in one place: Connect codes and an error detail here (so a
// kind crosses the agent's API as it was), HTTP statuses in the control
// plane's HTTP layer.
//
// Make an error with New, Errorf or Wrap; classify one with KindOf or
// errors.Is(err, fault.NotFound). A package may keep its own sentinel
// errors as fault errors (sandbox.ErrNotFound is one), so that both
// errors.Is(err, sandbox.ErrNotFound) and the kind hold.
package fault

import (
	"context"
	"errors"
	"fmt"
)

// Kind is what went wrong, as a caller needs to know it to react.
type Kind uint8

const (
	// Internal is a failure with no better kind: a bug, or a component
	// that failed in a way the caller cannot act on.
	Internal Kind = iota
	// Invalid: the request is malformed or asks for something not allowed.
	Invalid
	// Unauthenticated: no valid credential.
	Unauthenticated
	// Forbidden: the credential is valid but does not allow this.
	Forbidden
	// NotFound: what the request names does not exist (or is not the
	// caller's to see).
	NotFound
	// Exists: what the request would create already exists, or the state
	// it would reach already holds (a duplicate name, pausing a paused
	// sandbox).
	Exists
	// Conflict: the current state does not allow the request (a sandbox
	// that is not running, a snapshot still in use).
	Conflict
	// NoCapacity: this place has no room (sandboxes, network slots,
	// disk); another host may have.
	NoCapacity
	// Unavailable: a component did not answer; trying again later may work.
	Unavailable
	// Timeout: the operation did not finish within its deadline.
	Timeout
	// Unsupported: this deployment cannot do it (a runtime without
	// snapshots).
	Unsupported
	// Upstream: a component the caller reached through this one (a host
	// agent, from the control plane) failed at what it was asked; the
	// message says what.
	Upstream
	// Quota: the caller's team would exceed one of its quotas; another
	// host would not help, freeing what the team holds would.
	Quota
	// NoSpace: the sandbox's own disk has no room for a write; the
	// platform's hosts may have, the sandbox does not.
	NoSpace
	numKinds
)

var kindNames = [numKinds]string{
	Internal: "internal", Invalid: "invalid", Unauthenticated: "unauthenticated", Forbidden: "forbidden",
	NotFound: "not_found", Exists: "exists", Conflict: "conflict", NoCapacity: "no_capacity",
	Unavailable: "unavailable", Timeout: "timeout", Unsupported: "unsupported", Upstream: "upstream",
	Quota: "quota", NoSpace: "no_space",
}

// String is the kind's stable name ("not_found"), as it travels on the wire.
func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Error lets a bare kind be an error, and the target of errors.Is.
func (k Kind) Error() string { return k.String() }

// ParseKind is String's inverse; an unknown name is Internal.
func ParseKind(name string) Kind {
	for k, n := range kindNames {
		if n == name {
			return Kind(k)
		}
	}
	return Internal
}

// Error is an error of a kind with a message meant for the caller. Err,
// if set, is its cause (the message usually says it already); it should
// not carry a different kind, which errors.Is would then also see.
type Error struct {
	Kind Kind
	Msg  string
	Err  error
}

func (e *Error) Error() string {
	switch {
	case e.Msg != "":
		return e.Msg
	case e.Err != nil:
		return e.Err.Error()
	}
	return e.Kind.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, kind) true for an error of that kind.
func (e *Error) Is(target error) bool {
	k, ok := target.(Kind)
	return ok && k == e.Kind
}

// New returns an error of kind with msg.
func New(kind Kind, msg string) error { return &Error{Kind: kind, Msg: msg} }

// Errorf returns an error of kind with a formatted message; %w wraps as
// fmt.Errorf does.
func Errorf(kind Kind, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &Error{Kind: kind, Msg: err.Error(), Err: errors.Unwrap(err)}
}

// Wrap classifies err as kind, keeping its message; nil stays nil.
func Wrap(kind Kind, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: kind, Err: err}
}

// KindOf classifies err by the first classified error in its chain: a
// fault Error or Kind, a Connect error (by its detail, else its code), or
// a context error. Anything else is Internal.
func KindOf(err error) Kind {
	k, _ := find(err)
	return k
}

// find walks err's chain, depth first, for the first error that says its
// kind.
func find(err error) (Kind, bool) {
	for err != nil {
		if k, ok := classify(err); ok {
			return k, true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if k, ok := find(e); ok {
					return k, true
				}
			}
			return Internal, false
		default:
			return Internal, false
		}
	}
	return Internal, false
}

func classify(err error) (Kind, bool) {
	switch e := err.(type) {
	case *Error:
		return e.Kind, true
	case Kind:
		return e, true
	}
	if k, ok := connectKind(err); ok {
		return k, true
	}
	switch err {
	case context.DeadlineExceeded:
		return Timeout, true
	case context.Canceled:
		// The caller went away; whoever reads this is told the other
		// side is gone.
		return Unavailable, true
	}
	return Internal, false
}
