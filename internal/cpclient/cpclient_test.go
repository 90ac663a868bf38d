package cpclient

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
)

func TestClient(t *testing.T) {
	type seen struct{ method, path, auth, ct, body string }
	var got seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = seen{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), string(b)}
		switch r.URL.Path {
		case "/v1/hosts/register":
			_ = json.NewEncoder(w).Encode(hostapi.RegisterResponse{HostID: "host-1", Secret: "wrh_x"})
		case "/v1/hosts/host-1/heartbeat":
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"code":"unauthenticated","message":"unknown host or wrong secret"}`))
		default:
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte("upstream fell over\n"))
		}
	}))
	defer srv.Close()
	c := New(srv.URL+"/", nil)
	ctx := context.Background()

	res, err := c.Register(ctx, hostapi.RegisterRequest{Token: "wrt_t", Address: "10.0.0.1:7070"})
	if err != nil || res.HostID != "host-1" || res.Secret != "wrh_x" {
		t.Fatalf("register: %+v %v", res, err)
	}
	if got.method != "POST" || got.auth != "" || got.ct != "application/json" || got.body != `{"token":"wrt_t","name":"","address":"10.0.0.1:7070","csr":""}` {
		t.Errorf("register sent %+v", got)
	}

	_, err = c.Heartbeat(ctx, "host-1", "wrh_x", hostapi.Heartbeat{Address: "a:1", Capacity: hostapi.Capacity{CPUs: 2, Templates: []string{"minimal"}}})
	var ce *Error
	if !errors.As(err, &ce) || ce.Status != 401 || ce.Code != "unauthenticated" || ce.Message != "unknown host or wrong secret" {
		t.Fatalf("heartbeat: %v", err)
	}
	if got.auth != "Bearer wrh_x" {
		t.Errorf("heartbeat credential %q", got.auth)
	}
	var hb map[string]any
	if json.Unmarshal([]byte(got.body), &hb) != nil || hb["address"] != "a:1" || hb["cpus"] != float64(2) || hb["templates"] == nil {
		t.Errorf("the heartbeat's capacity is not flat in its body: %s", got.body)
	}

	r, err := c.Do(ctx, "PUT", "/v1/other", "tok", []byte("raw"))
	if err != nil || r.Status != 502 || got.ct != "application/octet-stream" || got.body != "raw" {
		t.Fatalf("raw body: %v %v %+v", r, err, got)
	}
	if err := r.Err(); !errors.As(err, &ce) || ce.Message != "upstream fell over" || ce.Path != "/v1/other" {
		t.Errorf("non-JSON error: %v", err)
	}
}
