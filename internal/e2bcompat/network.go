package e2bcompat

import (
	"encoding/json"
	"net/http"
	"slices"

	"git.omukk.dev/wrenn/sandbox/internal/egress"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

// networkBody is E2B's SandboxNetworkConfig (create) and
// SandboxNetworkUpdateConfig (PUT /sandboxes/{id}/network). The fields
// Wrenn does not honour are kept raw so that a request using them is
// refused by name, never silently run without them.
type networkBody struct {
	AllowPublicTraffic  *bool           `json:"allowPublicTraffic"`
	AllowOut            []string        `json:"allowOut"`
	DenyOut             []string        `json:"denyOut"`
	AllowInternetAccess *bool           `json:"allow_internet_access"` // update only
	EgressProxy         json.RawMessage `json:"egressProxy"`
	Rules               json.RawMessage `json:"rules"`
	MaskRequestHost     json.RawMessage `json:"maskRequestHost"`
	HTTPSPorts          json.RawMessage `json:"httpsPorts"`
}

// unsupported names the first field set that Wrenn cannot honour.
func (n *networkBody) unsupported() string {
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"egressProxy", n.EgressProxy}, {"rules", n.Rules}, {"maskRequestHost", n.MaskRequestHost}, {"httpsPorts", n.HTTPSPorts}} {
		if len(f.raw) > 0 && string(f.raw) != "null" {
			return "network." + f.name
		}
	}
	return ""
}

func (n *networkBody) policy() *egress.Policy {
	if n.AllowOut == nil && n.DenyOut == nil {
		return nil
	}
	return &egress.Policy{AllowOut: n.AllowOut, DenyOut: n.DenyOut}
}

// networkView is what GET /sandboxes/{id} reports as network (the SDK's
// getInfo().network).
type networkView struct {
	AllowOut           []string `json:"allowOut,omitempty"`
	DenyOut            []string `json:"denyOut,omitempty"`
	AllowPublicTraffic bool     `json:"allowPublicTraffic"`
}

func networkOf(sb service.Sandbox) *networkView {
	p := sb.Network()
	return &networkView{AllowOut: p.AllowOut, DenyOut: p.DenyOut, AllowPublicTraffic: sb.AllowPublicTraffic}
}

// setNetwork is PUT /sandboxes/{sandboxID}/network: the body replaces the
// sandbox's egress rules; omitted lists are cleared.
func (h *handler) setNetwork(w http.ResponseWriter, r *http.Request) {
	sid, ok := sandboxParam(w, r, "sandbox.set_network")
	if !ok {
		return
	}
	var b networkBody
	if !h.decode(w, r, &b) {
		return
	}
	if f := b.unsupported(); f != "" {
		writeError(w, http.StatusBadRequest, f+" is not supported by Wrenn")
		return
	}
	if b.AllowPublicTraffic != nil {
		writeError(w, http.StatusBadRequest, "network.allowPublicTraffic cannot change on a running sandbox")
		return
	}
	p := egress.Policy{AllowOut: b.AllowOut, DenyOut: b.DenyOut}
	if b.AllowInternetAccess != nil && !*b.AllowInternetAccess && !slices.Contains(p.DenyOut, egress.AllTraffic) {
		// E2B: the same as denying all traffic.
		p.DenyOut = append(slices.Clone(p.DenyOut), egress.AllTraffic)
	}
	if _, err := h.svc.SetNetwork(r.Context(), caller(r), sid, p, egress.E2BFields); err != nil {
		h.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
