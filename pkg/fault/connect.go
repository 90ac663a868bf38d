package fault

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	faultv1 "git.omukk.dev/wrenn/sandbox/proto/fault/v1"
)

// The Connect crossing: an error leaves a handler as the Connect code of
// its kind with a faultv1.Error detail naming the kind and message, and a
// client turns it back into the same kind and message. A Connect error
// without the detail (a transport failure, another server such as envd)
// is classified by its code.

var connectCodes = [numKinds]connect.Code{
	Internal: connect.CodeInternal, Invalid: connect.CodeInvalidArgument, Unauthenticated: connect.CodeUnauthenticated,
	Forbidden: connect.CodePermissionDenied, NotFound: connect.CodeNotFound, Exists: connect.CodeAlreadyExists,
	Conflict: connect.CodeFailedPrecondition, NoCapacity: connect.CodeResourceExhausted, Unavailable: connect.CodeUnavailable,
	Timeout: connect.CodeDeadlineExceeded, Unsupported: connect.CodeUnimplemented, Upstream: connect.CodeInternal,
	Quota: connect.CodeResourceExhausted, NoSpace: connect.CodeResourceExhausted,
}

// ConnectCode is the Connect code kind travels under.
func (k Kind) ConnectCode() connect.Code {
	if k < numKinds {
		return connectCodes[k]
	}
	return connect.CodeInternal
}

// kindOfCode classifies a Connect code that came without a detail.
func kindOfCode(c connect.Code) Kind {
	switch c {
	case connect.CodeInvalidArgument, connect.CodeOutOfRange:
		return Invalid
	case connect.CodeUnauthenticated:
		return Unauthenticated
	case connect.CodePermissionDenied:
		return Forbidden
	case connect.CodeNotFound:
		return NotFound
	case connect.CodeAlreadyExists:
		return Exists
	case connect.CodeFailedPrecondition, connect.CodeAborted:
		return Conflict
	case connect.CodeResourceExhausted:
		return NoCapacity
	case connect.CodeUnavailable, connect.CodeCanceled:
		return Unavailable
	case connect.CodeDeadlineExceeded:
		return Timeout
	case connect.CodeUnimplemented:
		return Unsupported
	}
	return Internal
}

// detail is the faultv1.Error a Connect error carries, if any.
func detail(ce *connect.Error) *faultv1.Error {
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if fe, ok := v.(*faultv1.Error); ok {
				return fe
			}
		}
	}
	return nil
}

func connectKind(err error) (Kind, bool) {
	ce, ok := err.(*connect.Error)
	if !ok {
		return Internal, false
	}
	if d := detail(ce); d != nil {
		return ParseKind(d.GetKind()), true
	}
	return kindOfCode(ce.Code()), true
}

// ToConnect is how err leaves a Connect handler: the code of its kind and
// the detail. A Connect error that already has the detail passes as is.
func ToConnect(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) && detail(ce) != nil {
		return ce
	}
	kind, msg := KindOf(err), err.Error()
	if other, ok := err.(*connect.Error); ok {
		msg = other.Message() // another server's error, without its "code: " prefix
	}
	out := connect.NewError(kind.ConnectCode(), errors.New(msg))
	if d, derr := connect.NewErrorDetail(&faultv1.Error{Kind: kind.String(), Message: msg}); derr == nil {
		out.AddDetail(d)
	}
	return out
}

// FromConnect is how a client receives a Connect error: a fault Error of
// the kind and message it was sent with, whose cause is the Connect error
// (so connect.CodeOf still reads its code). Other errors pass as they are.
func FromConnect(err error) error {
	var ce *connect.Error
	if err == nil || !errors.As(err, &ce) {
		return err
	}
	if d := detail(ce); d != nil {
		return &Error{Kind: ParseKind(d.GetKind()), Msg: d.GetMessage(), Err: ce}
	}
	return &Error{Kind: kindOfCode(ce.Code()), Msg: ce.Message(), Err: ce}
}

// Interceptor maps errors at a Connect boundary: on a handler, every
// error a method returns leaves by ToConnect; on a client, every error
// comes back by FromConnect.
func Interceptor() connect.Interceptor { return interceptor{} }

type interceptor struct{}

func (interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		if err == nil {
			return res, nil
		}
		if req.Spec().IsClient {
			return res, FromConnect(err)
		}
		return res, ToConnect(err)
	}
}

func (interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		return clientConn{next(ctx, spec)}
	}
}

func (interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		return ToConnect(next(ctx, conn))
	}
}

// clientConn decodes the errors a stream reports; io.EOF (a clean end)
// is not a Connect error and passes as is.
type clientConn struct{ connect.StreamingClientConn }

func (c clientConn) Send(msg any) error    { return FromConnect(c.StreamingClientConn.Send(msg)) }
func (c clientConn) Receive(msg any) error { return FromConnect(c.StreamingClientConn.Receive(msg)) }
func (c clientConn) CloseRequest() error   { return FromConnect(c.StreamingClientConn.CloseRequest()) }
func (c clientConn) CloseResponse() error  { return FromConnect(c.StreamingClientConn.CloseResponse()) }
