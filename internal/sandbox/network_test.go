package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"git.omukk.dev/wrenn/sandbox/internal/egress"
)

// A sandbox's egress policy is in its slot before the guest runs, changes
// on a running sandbox, is kept in the record (what a restarted agent
// reads), and is applied again to the new slot of every resume; a bad
// policy is refused before anything is made.
func TestEgressPolicyFollowsTheSandbox(t *testing.T) {
	h := newHarness(t)
	deny := egress.Policy{DenyOut: []string{"1.2.3.4"}}
	if _, err := h.m.Create(context.Background(), Request{ID: "bad", Template: "tpl", Network: egress.Policy{DenyOut: []string{"example.com"}}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("create with a domain in denyOut: %v", err)
	}
	h.create(t, "n1", func(r *Request) { r.Network = deny })
	applied := func() egress.Rules {
		h.slots.mu.Lock()
		defer h.slots.mu.Unlock()
		for i := range h.slots.held {
			return h.slots.policies[i]
		}
		return egress.Rules{}
	}
	if got := applied().DenyNets; len(got) != 1 || got[0].String() != "1.2.3.4/32" {
		t.Fatalf("policy in the slot at create: %+v", applied())
	}

	allow := egress.Policy{AllowOut: []string{"allowed.test"}, DenyOut: []string{egress.AllTraffic}}
	info, err := h.m.SetNetwork("n1", allow)
	if err != nil || !slices.Equal(info.Network.AllowOut, allow.AllowOut) {
		t.Fatalf("set network: %+v %v", info.Network, err)
	}
	if got := applied().AllowDomains; !slices.Equal(got, []string{"allowed.test"}) {
		t.Errorf("policy in the slot after the change: %+v", applied())
	}
	var rec record
	b, _ := os.ReadFile(filepath.Join(h.state, "sandboxes", "n1", "sandbox.json"))
	if err := json.Unmarshal(b, &rec); err != nil || !slices.Equal(rec.Request.Network.AllowOut, allow.AllowOut) {
		t.Errorf("record: %s (%v)", b, err)
	}
	if _, err := h.m.SetNetwork("n1", egress.Policy{AllowOut: []string{"::1"}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("IPv6 policy: %v", err)
	}

	if _, err := h.m.Pause(context.Background(), "n1"); err != nil {
		t.Fatal(err)
	}
	// Changed while paused: the resume gets the new one.
	if _, err := h.m.SetNetwork("n1", deny); err != nil {
		t.Fatalf("set network while paused: %v", err)
	}
	if _, err := h.m.Resume(context.Background(), "n1", 0); err != nil {
		t.Fatal(err)
	}
	if got := applied(); len(got.AllowDomains) != 0 || len(got.DenyNets) != 1 {
		t.Errorf("policy in the resumed sandbox's slot: %+v", got)
	}
}
