package cpapi

import (
	"net/http"
	"strings"
)

// ServeDashboard hands GET and HEAD requests that no route matches, outside
// the API's own prefixes, to h (the dashboard, whose client-side routes are
// any other path). Everything else keeps the API's JSON 404.
func (a *API) ServeDashboard(h http.Handler) {
	a.Root.NotFound(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && !apiPath(r.URL.Path) {
			h.ServeHTTP(w, r)
			return
		}
		writeError(w, http.StatusNotFound, "not_found", "no such route")
	})
}

func apiPath(p string) bool {
	for _, prefix := range []string{"/v1", "/e2b", "/docs", "/openapi.yaml", "/health"} {
		if p == prefix || strings.HasPrefix(p, prefix+"/") {
			return true
		}
	}
	return false
}
