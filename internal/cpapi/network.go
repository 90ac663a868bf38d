package cpapi

import (
	"net/http"

	"git.omukk.dev/wrenn/sandbox/internal/egress"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

// networkPolicy is a sandbox's own egress policy on /v1: addresses, CIDR
// ranges and (allow_out only) domain names; allowed entries win over
// denied ones, and "0.0.0.0/0" in deny_out denies all traffic.
type networkPolicy struct {
	AllowOut []string `json:"allow_out,omitempty"`
	DenyOut  []string `json:"deny_out,omitempty"`
}

func (n *networkPolicy) policy() *egress.Policy {
	if n == nil {
		return nil
	}
	return &egress.Policy{AllowOut: n.AllowOut, DenyOut: n.DenyOut}
}

func viewNetwork(s service.Sandbox) networkPolicy {
	p := s.Network()
	return networkPolicy{AllowOut: p.AllowOut, DenyOut: p.DenyOut}
}

// setNetwork replaces a running or paused sandbox's egress policy.
func (a *API) setNetwork(w http.ResponseWriter, r *http.Request) {
	sid, ok := sandboxParam(w, r, "sandbox.set_network")
	if !ok {
		return
	}
	var b networkPolicy
	if !a.decode(w, r, &b) {
		return
	}
	sb, err := a.svc.SetNetwork(r.Context(), caller(r), sid, *b.policy(), egress.V1Fields)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewSandbox(sb))
}
