package agentclient

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/pkg/fault"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
	"git.omukk.dev/wrenn/sandbox/proto/hostagent/v1/hostagentv1connect"
)

// fullDisk answers an upload as an agent whose sandbox's disk filled up:
// with an error, before the upload has all been sent.
type fullDisk struct {
	hostagentv1connect.UnimplementedHostAgentServiceHandler
}

func (fullDisk) WriteFileStream(_ context.Context, s *connect.ClientStream[pb.WriteFileStreamRequest]) (*connect.Response[pb.WriteFileResponse], error) {
	for n := 0; n < 4<<20 && s.Receive(); n += len(s.Msg().GetChunk()) {
	}
	return nil, fault.New(fault.NoSpace, "the sandbox's disk is full")
}

// An agent's early answer to an upload reaches the control plane whole.
// Over HTTP/1.1 it was lost about one time in three ("corrupt response:
// I/O error after end-stream message"), and the upload answered 502.
func TestEarlyAnswerToAnUpload(t *testing.T) {
	path, h := hostagentv1connect.NewHostAgentServiceHandler(fullDisk{}, connect.WithInterceptors(fault.Interceptor()))
	mux := http.NewServeMux()
	mux.Handle(path, h)
	var protocols http.Protocols // as the agent serves: HTTP/1.1 and h2c
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: mux, Protocols: &protocols}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	c := New(ln.Addr().String(), "secret")
	chunk := make([]byte, 1<<20)
	for i := range 10 {
		st := c.WriteFileStream(context.Background())
		err := st.Send(&pb.WriteFileStreamRequest{Part: &pb.WriteFileStreamRequest_Header{Header: &pb.WriteFileRequest{Path: "/big"}}})
		for j := 0; err == nil && j < 64; j++ {
			err = st.Send(&pb.WriteFileStreamRequest{Part: &pb.WriteFileStreamRequest_Chunk{Chunk: chunk}})
		}
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("upload %d: send: %v", i, err)
		}
		if _, err := st.CloseAndReceive(); fault.KindOf(err) != fault.NoSpace {
			t.Fatalf("upload %d: %v (kind %s), want the agent's no_space", i, err, fault.KindOf(err))
		}
	}
}
