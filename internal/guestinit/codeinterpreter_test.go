package guestinit

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/codeinterp"
)

func TestCodeInterpreterHealthURLIsItsPort(t *testing.T) {
	if want := fmt.Sprintf("http://127.0.0.1:%d/health", codeinterp.Port); CodeInterpreterHealthURL != want {
		t.Errorf("CodeInterpreterHealthURL %s, the server listens at %s", CodeInterpreterHealthURL, want)
	}
}

func TestWaitHealthy(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := waitHealthy(ctx, srv.URL); err != nil || calls.Load() != 3 {
		t.Errorf("waitHealthy: %v after %d calls", err, calls.Load())
	}
	ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := waitHealthy(ctx, "http://127.0.0.1:1/health"); err == nil {
		t.Error("waitHealthy on a closed port returned no error")
	}
}
