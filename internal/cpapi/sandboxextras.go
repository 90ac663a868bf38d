package cpapi

import (
	"fmt"
	"net/http"
	"strings"

	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

func (a *API) moveFile(w http.ResponseWriter, r *http.Request) {
	g, ok := a.guest(w, r, "sandbox.move_file")
	if !ok {
		return
	}
	var b struct {
		From string `json:"from"`
		To   string `json:"to"`
		User string `json:"user,omitempty"`
	}
	if !a.decode(w, r, &b) {
		return
	}
	e, err := g.Move(r.Context(), b.From, b.To, b.User)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewEntry(e))
}

type portView struct {
	Port    int    `json:"port"`
	Address string `json:"address"`
	// URL reaches the port through the sandbox proxy; present where the
	// proxy routes by host name (WRENN_SANDBOX_DOMAIN).
	URL string `json:"url,omitempty"`
}

func (a *API) listPorts(w http.ResponseWriter, r *http.Request) {
	g, ok := a.guest(w, r, "")
	if !ok {
		return
	}
	ports, err := g.ListeningPorts(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	scheme := "http"
	if strings.HasPrefix(a.cfg.PublicURL, "https://") {
		scheme = "https"
	}
	writeJSON(w, http.StatusOK, mapSlice(ports, func(p service.Port) portView {
		v := portView{Port: p.Port, Address: p.Address}
		if a.cfg.SandboxDomain != "" {
			v.URL = fmt.Sprintf("%s://%d-%s.%s", scheme, p.Port, g.ID(), a.cfg.SandboxDomain)
		}
		return v
	}))
}
