package webui

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

const bootScript = `{ __sveltekit_x = { base: "" }; import("/_app/immutable/entry/start.abc.js"); }`

func testBuild() fstest.MapFS {
	return fstest.MapFS{
		"index.html":                           {Data: []byte(`<!doctype html><html><head><script>` + bootScript + `</script></head><body></body></html>`)},
		"favicon.svg":                          {Data: []byte(`<svg xmlns="http://www.w3.org/2000/svg"/>`)},
		"_app/version.json":                    {Data: []byte(`{"version":"1"}`)},
		"_app/immutable/entry/start.abc.js":    {Data: []byte(`console.log("raw")`)},
		"_app/immutable/entry/start.abc.js.gz": {Data: []byte(`gzipped bytes`)},
	}
}

func get(t *testing.T, h http.Handler, path string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestServesBuild(t *testing.T) {
	h, err := New(testBuild())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(bootScript))
	hash := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	for _, p := range []string{"/", "/sandboxes", "/sandboxes/sb-1?tab=files", "/index.html"} {
		rec := get(t, h, p)
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), "__sveltekit_x") {
			t.Fatalf("%s: %d %q", p, rec.Code, rec.Body)
		}
		csp := rec.Header().Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self' "+hash) || strings.Contains(csp, "script-src 'self' 'unsafe-inline'") {
			t.Errorf("%s: CSP %q does not allow exactly the boot script", p, csp)
		}
		if cc := rec.Header().Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("%s: Cache-Control %q", p, cc)
		}
	}

	rec := get(t, h, "/_app/immutable/entry/start.abc.js")
	if rec.Code != 200 || rec.Body.String() != `console.log("raw")` || !strings.Contains(rec.Header().Get("Cache-Control"), "immutable") ||
		!strings.HasPrefix(rec.Header().Get("Content-Type"), "text/javascript") {
		t.Errorf("asset: %d %v %q", rec.Code, rec.Header(), rec.Body)
	}
	rec = get(t, h, "/_app/immutable/entry/start.abc.js", "Accept-Encoding", "gzip, deflate")
	if rec.Body.String() != "gzipped bytes" || rec.Header().Get("Content-Encoding") != "gzip" || rec.Header().Get("Vary") != "Accept-Encoding" {
		t.Errorf("gzip asset: %v %q", rec.Header(), rec.Body)
	}
	rec = get(t, h, "/_app/immutable/entry/start.abc.js", "Accept-Encoding", "gzip;q=0")
	if rec.Header().Get("Content-Encoding") != "" {
		t.Errorf("gzip sent although refused")
	}
	if rec := get(t, h, "/_app/version.json"); rec.Header().Get("Cache-Control") != "no-cache" {
		t.Errorf("version.json is cached: %v", rec.Header())
	}
	for _, p := range []string{"/_app/immutable/entry/gone.js", "/robots.txt"} {
		if rec := get(t, h, p); rec.Code != 404 {
			t.Errorf("%s: %d, want 404", p, rec.Code)
		}
	}
	etag := get(t, h, "/").Header().Get("ETag")
	if rec := get(t, h, "/", "If-None-Match", etag); etag == "" || rec.Code != http.StatusNotModified {
		t.Errorf("revalidation: etag %q, %d", etag, rec.Code)
	}
	req := httptest.NewRequest("POST", "/", nil)
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, req)
	if rr.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d", rr.Code)
	}
}

func TestNotBuilt(t *testing.T) {
	h, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := get(t, h, "/sandboxes")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "make build") {
		t.Fatalf("%d %q", rec.Code, rec.Body)
	}
}
