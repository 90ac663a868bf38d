package cpapi

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// Spec is the OpenAPI 3.1 description of every route.
//
//go:embed openapi.yaml
var Spec []byte

//go:embed docs
var docsFS embed.FS

func serveSpec(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(Spec)
}

var docsFiles, _ = fs.Sub(docsFS, "docs")

// serveDocs serves Swagger UI over the spec. Its script comes from the
// binary (no CDN) and runs under a policy that allows nothing else.
func serveDocs(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/docs"), "/")
	if name == "" {
		name = "index.html"
	}
	switch name {
	case "index.html", "init.js", "swagger-ui-bundle.js", "swagger-ui.css":
	default:
		writeError(w, http.StatusNotFound, "not_found", "no such file")
		return
	}
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	http.ServeFileFS(w, r, docsFiles, name)
}
