package cpapi_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"git.omukk.dev/wrenn/sandbox/internal/webui"
)

// TestDashboardAtRoot: the control plane serves the dashboard (or, built
// without it, a page saying how to build it) at every path the API does
// not own, while the API's unknown routes stay JSON 404s.
func TestDashboardAtRoot(t *testing.T) {
	cp := startCP(t, nil)
	for _, path := range []string{"/", "/sandboxes/sb-0123", "/settings?github=connected"} {
		res, err := http.Get(cp.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		csp := res.Header.Get("Content-Security-Policy")
		if webui.Built() {
			if res.StatusCode != 200 || !strings.Contains(csp, "script-src 'self' 'sha256-") || res.Header.Get("Cache-Control") != "no-cache" || !strings.Contains(string(body), "/_app/immutable/") {
				t.Errorf("%s: %d %v", path, res.StatusCode, res.Header)
			}
		} else if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "make build") {
			t.Errorf("%s without a build: %d %s", path, res.StatusCode, body)
		}
	}
	for _, c := range []struct{ method, path string }{{"GET", "/v1/no-such-route"}, {"POST", "/sandboxes"}, {"GET", "/v1"}} {
		req, _ := http.NewRequest(c.method, cp.URL+c.path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 404 || !strings.Contains(string(body), `"code":"not_found"`) {
			t.Errorf("%s %s: %d %s", c.method, c.path, res.StatusCode, body)
		}
	}
}
