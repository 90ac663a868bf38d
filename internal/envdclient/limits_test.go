package envdclient

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	fspb "git.omukk.dev/wrenn/sandbox/proto/envd/filesystem"
	"git.omukk.dev/wrenn/sandbox/proto/envd/filesystem/filesystemconnect"
)

// hostileEnvd is what code in a sandbox can put in envd's place: a
// server whose answers never end or are enormous.
type hostileEnvd struct {
	filesystemconnect.UnimplementedFilesystemHandler
}

func (hostileEnvd) ListDir(context.Context, *connect.Request[fspb.ListDirRequest]) (*connect.Response[fspb.ListDirResponse], error) {
	res := &fspb.ListDirResponse{}
	name := strings.Repeat("n", 4096)
	for range 6000 { // ~24 MiB
		res.Entries = append(res.Entries, &fspb.EntryInfo{Name: name})
	}
	return connect.NewResponse(res), nil
}

func startHostile(t *testing.T) *Client {
	mux := http.NewServeMux()
	mux.Handle(filesystemconnect.NewFilesystemHandler(hostileEnvd{}))
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		chunk := []byte(`{"ts":` + strings.Repeat("1", 64<<10))
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c := New(srv.URL, "token")
	t.Cleanup(c.CloseIdle)
	return c
}

// TestEndlessMetricsAreRefused: the agent took in 500-680 MiB from one
// /metrics poll of an envd that never ended its answer. It reads 64 KiB
// now and calls it misbehaviour.
func TestEndlessMetricsAreRefused(t *testing.T) {
	c := startHostile(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Metrics(ctx)
	if !errors.Is(err, ErrMisbehaving) {
		t.Fatalf("an endless /metrics answer: %v", err)
	}
}

// TestHugeConnectAnswersAreRefused: a listing (or any Connect answer) past
// MaxMessageBytes is refused, not read whole.
func TestHugeConnectAnswersAreRefused(t *testing.T) {
	c := startHostile(t)
	_, err := c.ListDir(context.Background(), "/", "", 1)
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("a 24 MiB listing: %v", err)
	}
}
