package cpapi

import (
	"net/http"

	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
)

// sandboxesChanged takes an agent's report of sandboxes it changed on its
// own (POST /v1/hosts/{hostID}/sandboxes/changed, its certificate).
func (a *API) sandboxesChanged(w http.ResponseWriter, r *http.Request) {
	h, ok := a.authenticateHost(w, r)
	if !ok {
		return
	}
	setActor(r.Context(), "host", id.Format(id.Host, h.ID), id.PlatformTeam)
	setAudit(r.Context(), "host.sandboxes_changed", "host", id.Format(id.Host, h.ID))
	var b hostapi.SandboxesChanged
	if !a.decode(w, r, &b) {
		return
	}
	if err := a.svc.SandboxesChanged(r.Context(), h, b.Sandboxes); err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}
