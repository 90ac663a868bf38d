// Package webui serves the dashboard: the SvelteKit build that `make build`
// writes to dist/app, embedded in the binary. Hashed assets are cached for
// a year, the HTML never; every page carries a Content-Security-Policy that
// allows the app's own scripts and nothing else. Without a build (a fresh
// clone) it serves a page that says how to make one.
package webui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"strings"
	"time"
)

//go:embed all:dist
var dist embed.FS

// indexFile is the SPA fallback page: it boots the app for any route.
const indexFile = "index.html"

// Embedded returns the build embedded in this binary, nil when the binary
// was built without one.
func Embedded() fs.FS {
	app, err := fs.Sub(dist, "dist/app")
	if err != nil {
		return nil
	}
	if _, err := fs.Stat(app, indexFile); err != nil {
		return nil
	}
	return app
}

// Built reports whether this binary carries the dashboard.
func Built() bool { return Embedded() != nil }

// Handler serves one build of the dashboard.
type Handler struct {
	files fs.FS
	index []byte
	csp   string
	etags map[string]string
}

// New serves the build in files (nil: the page saying it is not built).
func New(files fs.FS) (*Handler, error) {
	h := &Handler{files: files}
	if files == nil {
		return h, nil
	}
	index, err := fs.ReadFile(files, indexFile)
	if err != nil {
		return nil, fmt.Errorf("dashboard build: %w", err)
	}
	h.index = index
	h.csp = policy(index)
	h.etags = map[string]string{}
	err = fs.WalkDir(files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(files, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		h.etags[name] = `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`
		return nil
	})
	return h, err
}

var inlineScript = regexp.MustCompile(`(?s)<script>(.*?)</script>`)

// policy is the Content-Security-Policy for the app. SvelteKit boots from
// one inline script in the HTML; it is allowed by its hash, so no other
// inline script can run. Styles allow inline: the terminal and chart
// libraries set style elements at run time.
func policy(index []byte) string {
	scripts := []string{"'self'"}
	for _, m := range inlineScript.FindAllSubmatch(index, -1) {
		sum := sha256.Sum256(m[1])
		scripts = append(scripts, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
	}
	return strings.Join([]string{
		"default-src 'self'",
		"script-src " + strings.Join(scripts, " "),
		"style-src 'self' 'unsafe-inline'",
		"img-src 'self' data: blob:",
		"font-src 'self'",
		"connect-src 'self'",
		"object-src 'none'",
		"base-uri 'none'",
		"form-action 'self'",
		"frame-ancestors 'none'",
	}, "; ")
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "same-origin")
	if h.files == nil {
		hdr.Set("Cache-Control", "no-cache")
		hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
		hdr.Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write(notBuilt)
		return
	}
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if name == "" || name == indexFile {
		h.serveIndex(w, r)
		return
	}
	st, err := fs.Stat(h.files, name)
	if err != nil || st.IsDir() {
		// Assets that do not exist are 404s (a stale page asking for an
		// old chunk must not get HTML as JavaScript); any other path is a
		// route of the app.
		if strings.HasPrefix(name, "_app/") || path.Ext(name) != "" {
			hdr.Set("Cache-Control", "no-cache")
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		h.serveIndex(w, r)
		return
	}
	if strings.HasPrefix(name, "_app/immutable/") {
		hdr.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		hdr.Set("Cache-Control", "no-cache")
	}
	h.serveFile(w, r, name)
}

func (h *Handler) serveIndex(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("Content-Security-Policy", h.csp)
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("ETag", h.etags[indexFile])
	http.ServeContent(w, r, indexFile, time.Time{}, bytes.NewReader(h.index))
}

// serveFile sends name, or its precompressed twin (name.br, name.gz)
// when the client takes that encoding.
func (h *Handler) serveFile(w http.ResponseWriter, r *http.Request, name string) {
	hdr := w.Header()
	if ct := contentType(name); ct != "" {
		hdr.Set("Content-Type", ct)
	}
	hdr.Add("Vary", "Accept-Encoding")
	accept := r.Header.Get("Accept-Encoding")
	for _, enc := range []struct{ token, ext string }{{"br", ".br"}, {"gzip", ".gz"}} {
		if !acceptsEncoding(accept, enc.token) {
			continue
		}
		if b, err := fs.ReadFile(h.files, name+enc.ext); err == nil {
			hdr.Set("Content-Encoding", enc.token)
			hdr.Set("ETag", h.etags[name+enc.ext])
			http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
			return
		}
	}
	b, err := fs.ReadFile(h.files, name)
	if err != nil {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	hdr.Set("ETag", h.etags[name])
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
}

// acceptsEncoding reports whether an Accept-Encoding header takes token
// (listed without q=0).
func acceptsEncoding(header, token string) bool {
	for part := range strings.SplitSeq(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(name), token) {
			continue
		}
		q := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(params), "q="))
		return q == "" || strings.Trim(q, "0.") != ""
	}
	return false
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".json", ".webmanifest":
		return "application/json"
	case ".svg":
		return "image/svg+xml"
	case ".png":
		return "image/png"
	case ".ico":
		return "image/x-icon"
	case ".woff2":
		return "font/woff2"
	case ".woff":
		return "font/woff"
	case ".txt":
		return "text/plain; charset=utf-8"
	}
	return ""
}

var notBuilt = []byte(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Wrenn: dashboard not built</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1.5rem;color:#1f2328;background:#fff}
code{font:14px ui-monospace,monospace;background:#f3f4f6;padding:.1rem .3rem;border-radius:4px}
@media (prefers-color-scheme:dark){body{color:#e6edf3;background:#0d1117}code{background:#1f2630}}
</style></head><body>
<h1>The dashboard is not built</h1>
<p>This control plane was compiled without the dashboard. Build it from the repository with
<code>make build</code> (it runs <code>npm ci</code> and the Vite build in <code>web/</code>, then compiles the
binaries, which embed the result) and start the control plane again.</p>
<p>The API works without it: <a href="/v1/auth/providers">/v1</a>, with its reference at <a href="/docs">/docs</a>.</p>
</body></html>
`)
