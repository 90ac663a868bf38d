package fault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"connectrpc.com/connect"

	faultv1 "git.omukk.dev/wrenn/sandbox/proto/fault/v1"
)

func TestKindOf(t *testing.T) {
	sentinel := New(NotFound, "sandbox not found")
	for _, c := range []struct {
		name string
		err  error
		want Kind
	}{
		{"nil-free plain error", errors.New("boom"), Internal},
		{"fault error", New(NoCapacity, "full"), NoCapacity},
		{"wrapped sentinel", fmt.Errorf("create sandbox x: %w", fmt.Errorf("%w: x", sentinel)), NotFound},
		{"bare kind", fmt.Errorf("%w: nope", Unsupported), Unsupported},
		{"outermost wins", Errorf(Conflict, "paused: %w", errors.New("x")), Conflict},
		{"joined", errors.Join(errors.New("a"), New(Timeout, "slow")), Timeout},
		{"deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), Timeout},
		{"canceled", context.Canceled, Unavailable},
		{"connect code", connect.NewError(connect.CodeFailedPrecondition, errors.New("not running")), Conflict},
		{"connect unknown", connect.NewError(connect.CodeUnknown, errors.New("?")), Internal},
	} {
		if got := KindOf(c.err); got != c.want {
			t.Errorf("%s: KindOf = %s, want %s", c.name, got, c.want)
		}
	}
	err := fmt.Errorf("op: %w", sentinel)
	if !errors.Is(err, sentinel) || !errors.Is(err, NotFound) || errors.Is(err, Conflict) {
		t.Errorf("errors.Is on %v", err)
	}
	if e := Errorf(Invalid, "bad %q: %w", "x", sentinel); e.Error() != `bad "x": sandbox not found` || !errors.Is(e, sentinel) {
		t.Errorf("Errorf: %v", e)
	}
	if Wrap(Invalid, nil) != nil {
		t.Error("Wrap(nil) is not nil")
	}
	for k := range numKinds {
		if ParseKind(k.String()) != k {
			t.Errorf("ParseKind(%q) != %d", k.String(), k)
		}
	}
	if ParseKind("something new") != Internal {
		t.Error("an unknown kind name is not Internal")
	}
}

// A real Connect server and client, both with the interceptor: every kind
// arrives as it left, on unary calls and on streams, under its code.
func TestConnectRoundTrip(t *testing.T) {
	var toSend error
	mux := http.NewServeMux()
	opts := connect.WithInterceptors(Interceptor())
	mux.Handle("/t.T/Unary", connect.NewUnaryHandler("/t.T/Unary", func(context.Context, *connect.Request[faultv1.Error]) (*connect.Response[faultv1.Error], error) {
		return nil, toSend
	}, opts))
	mux.Handle("/t.T/Stream", connect.NewServerStreamHandler("/t.T/Stream", func(_ context.Context, _ *connect.Request[faultv1.Error], s *connect.ServerStream[faultv1.Error]) error {
		if err := s.Send(&faultv1.Error{Message: "first"}); err != nil {
			return err
		}
		return toSend
	}, opts))
	// A server without the interceptor stands for envd: codes only.
	mux.Handle("/t.T/Plain", connect.NewUnaryHandler("/t.T/Plain", func(context.Context, *connect.Request[faultv1.Error]) (*connect.Response[faultv1.Error], error) {
		return nil, connect.NewError(connect.CodeAlreadyExists, errors.New("file exists"))
	}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	unary := connect.NewClient[faultv1.Error, faultv1.Error](srv.Client(), srv.URL+"/t.T/Unary", opts)
	stream := connect.NewClient[faultv1.Error, faultv1.Error](srv.Client(), srv.URL+"/t.T/Stream", opts)
	plain := connect.NewClient[faultv1.Error, faultv1.Error](srv.Client(), srv.URL+"/t.T/Plain", opts)
	ctx := context.Background()

	for k := range numKinds {
		msg := fmt.Sprintf("message for %s", k)
		toSend = fmt.Errorf("wrapped: %w", New(k, msg))
		_, err := unary.CallUnary(ctx, connect.NewRequest(&faultv1.Error{}))
		if KindOf(err) != k || err.Error() != "wrapped: "+msg || !errors.Is(err, k) {
			t.Errorf("unary %s: got %v (kind %s)", k, err, KindOf(err))
		}
		if connect.CodeOf(err) != k.ConnectCode() {
			t.Errorf("unary %s: code %s, want %s", k, connect.CodeOf(err), k.ConnectCode())
		}
		s, err := stream.CallServerStream(ctx, connect.NewRequest(&faultv1.Error{}))
		if err != nil {
			t.Fatal(err)
		}
		if !s.Receive() || s.Msg().GetMessage() != "first" {
			t.Fatalf("stream %s: no first message: %v", k, s.Err())
		}
		if s.Receive() {
			t.Fatalf("stream %s: a second message", k)
		}
		if err := s.Err(); KindOf(err) != k || err.Error() != "wrapped: "+msg {
			t.Errorf("stream %s: got %v (kind %s)", k, err, KindOf(err))
		}
		s.Close()
	}

	// An unclassified error leaves as Internal with its message.
	toSend = io.ErrUnexpectedEOF
	if _, err := unary.CallUnary(ctx, connect.NewRequest(&faultv1.Error{})); KindOf(err) != Internal || err.Error() != io.ErrUnexpectedEOF.Error() {
		t.Errorf("unclassified: %v", err)
	}
	// Without the detail, the code decides; the message has no code prefix.
	if _, err := plain.CallUnary(ctx, connect.NewRequest(&faultv1.Error{})); KindOf(err) != Exists || err.Error() != "file exists" {
		t.Errorf("plain server: %v (kind %s)", err, KindOf(err))
	}
	// A server that is not there is unavailable.
	gone := connect.NewClient[faultv1.Error, faultv1.Error](srv.Client(), "http://127.0.0.1:1/t.T/Unary", opts)
	if _, err := gone.CallUnary(ctx, connect.NewRequest(&faultv1.Error{})); KindOf(err) != Unavailable {
		t.Errorf("no server: %v (kind %s)", err, KindOf(err))
	}
}
