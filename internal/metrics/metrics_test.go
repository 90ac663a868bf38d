package metrics_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"git.omukk.dev/wrenn/sandbox/internal/metrics"
	"git.omukk.dev/wrenn/sandbox/internal/metrics/metricstest"
	"git.omukk.dev/wrenn/sandbox/internal/waitfor"
)

// serveMetrics serves a registry's /metrics, /healthz and /readyz on a
// loopback listener for the test's life.
func serveMetrics(t *testing.T, ready metrics.Check) (string, func() metricstest.Families, *metricsSet) {
	t.Helper()
	reg := metrics.NewRegistry()
	set := &metricsSet{requests: metrics.NewRequests(reg, "test"), proxy: metrics.NewProxy(reg, "test"), ops: metrics.NewOps(reg, "test")}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := metrics.Serve(ln, "", reg, ready, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	base := "http://" + srv.Addr()
	return base, func() metricstest.Families { return metricstest.Scrape(t, base+"/metrics") }, set
}

type metricsSet struct {
	requests *metrics.Requests
	proxy    *metrics.Proxy
	ops      *metrics.Ops
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestRequestsByRoutePattern: requests are labelled by chi's pattern
// (also through mounted routers), never by their raw path; what no route
// took is "unmatched"; unknown methods collapse into "other".
func TestRequestsByRoutePattern(t *testing.T) {
	_, scrape, set := serveMetrics(t, func(context.Context) error { return nil })
	r := chi.NewRouter()
	r.Route("/v1", func(r chi.Router) {
		r.Get("/sandboxes/{sandboxID}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	})
	api := httptest.NewServer(set.requests.Middleware(r))
	defer api.Close()
	for _, p := range []string{"/v1/sandboxes/sb-1", "/v1/sandboxes/sb-2", "/nowhere/sb-3"} {
		get(t, api.URL+p)
	}
	req, _ := http.NewRequest("BREW", api.URL+"/v1/sandboxes/sb-4", nil)
	if res, err := http.DefaultClient.Do(req); err == nil {
		res.Body.Close()
	}
	m := scrape()
	if n := m.Must(t, "test_http_requests_total", "route=/v1/sandboxes/{sandboxID}", "method=GET", "code=418"); n != 2 {
		t.Errorf("by pattern: %v, want 2", n)
	}
	m.Must(t, "test_http_requests_total", "route=unmatched", "code=404")
	m.Must(t, "test_http_requests_total", "method=other")
	for _, route := range m.LabelValues("test_http_requests_total", "route") {
		if strings.Contains(route, "sb-") {
			t.Errorf("raw path in a route label: %q", route)
		}
	}
}

// TestProxyCountsUpgradedStreams: bytes both ways through a reverse
// proxy are counted, those of an upgraded (hijacked) connection too, and
// the open-streams gauge returns to zero when they end.
func TestProxyCountsUpgradedStreams(t *testing.T) {
	_, scrape, set := serveMetrics(t, func(context.Context) error { return nil })
	// A backend that switches protocols and echoes until the client closes.
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			b, _ := io.ReadAll(r.Body)
			_, _ = w.Write(append([]byte("got "), b...))
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_ = brw.Flush()
		_, _ = io.Copy(c, brw)
	}))
	defer backend.Close()
	u, _ := url.Parse(backend.URL)
	front := httptest.NewServer(set.proxy.Wrap(httputil.NewSingleHostReverseProxy(u)))
	defer front.Close()

	res, err := http.Post(front.URL, "text/plain", strings.NewReader("0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != "got 0123456789" {
		t.Fatalf("proxied body: %q", body)
	}
	m := scrape()
	if in, out := m.Must(t, "test_proxy_bytes_total", "direction=in"), m.Must(t, "test_proxy_bytes_total", "direction=out"); in != 10 || out != 14 {
		t.Fatalf("plain request: in %v out %v, want 10 and 14", in, out)
	}

	c, err := net.Dial("tcp", strings.TrimPrefix(front.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	res, err = http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", res, err)
	}
	if n := scrape().Must(t, "test_proxy_open_streams"); n != 1 {
		t.Errorf("open streams during the upgrade: %v", n)
	}
	payload := strings.Repeat("x", 1000)
	_, _ = io.WriteString(c, payload)
	echo := make([]byte, len(payload))
	if _, err := io.ReadFull(br, echo); err != nil || string(echo) != payload {
		t.Fatalf("echo: %v", err)
	}
	c.Close()
	// The proxy's copy ends once it sees the close.
	var m2 metricstest.Families
	waitfor.True(t, 10*time.Second, "the upgraded stream to end", func() bool {
		m2 = scrape()
		return m2.Must(t, "test_proxy_open_streams") == 0
	})
	if in := m2.Must(t, "test_proxy_bytes_total", "direction=in"); in < 10+1000 {
		t.Errorf("bytes in with the upgraded stream: %v, want at least %d", in, 1010)
	}
	if out := m2.Must(t, "test_proxy_bytes_total", "direction=out"); out < 14+1000 {
		t.Errorf("bytes out with the upgraded stream: %v, want at least %d", out, 1014)
	}
}

// TestProbesAndOperations: /readyz reports the check's reason with a 503;
// operations count by result and failures by reason; the output lints.
func TestProbesAndOperations(t *testing.T) {
	var down error
	base, scrape, set := serveMetrics(t, func(context.Context) error { return down })
	if code, body := get(t, base+"/readyz"); code != 200 || !strings.Contains(body, `"ready"`) {
		t.Fatalf("readyz: %d %s", code, body)
	}
	down = errors.New("database unreachable")
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "database unreachable") {
		t.Fatalf("readyz while down: %d %s", code, body)
	}
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("healthz while not ready: %d", code)
	}
	set.ops.Observe("create", 1500*time.Millisecond, "")
	set.ops.Observe("create", 2*time.Millisecond, "no_capacity")
	m := scrape()
	if m.Must(t, "test_sandbox_operations_total", "operation=create", "result=ok") != 1 ||
		m.Must(t, "test_sandbox_operations_total", "operation=create", "result=error") != 1 ||
		m.Must(t, "test_sandbox_operation_failures_total", "operation=create", "reason=no_capacity") != 1 ||
		m.Must(t, "test_sandbox_operation_duration_seconds", "operation=create") != 2 {
		t.Error("operations miscounted")
	}
}
