package cpapi

import (
	"net/http"

	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
)

// sandboxesChanged takes an agent's report of sandboxes it changed on its
// own (POST /v1/hosts/{hostID}/sandboxes/changed, the host's secret).
func (a *API) sandboxesChanged(w http.ResponseWriter, r *http.Request) {
	hid, ok := pathID(w, r, "hostID", id.Host)
	if !ok {
		return
	}
	secret, _ := credential(r, false)
	h, err := a.svc.AuthenticateHost(r.Context(), hid, secret)
	if err != nil {
		a.log.Warn("host authentication failed", "ip", clientIP(r), "host", id.Format(id.Host, hid))
		a.fail(w, r, err)
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
