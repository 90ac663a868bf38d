package network_test

import (
	"context"
	"net/netip"
	"os"
	"testing"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/egress"
	"git.omukk.dev/wrenn/sandbox/internal/network"
	"git.omukk.dev/wrenn/sandbox/internal/network/outsidetest"
)

// A sandbox's own policy, enforced in its slot's namespace: seen from the
// guest's side (the guest namespace gVisor runs in; a VM's tap sits in the
// same place), a denied address is refused and others are not, a domain
// allowed with all traffic denied passes by TLS server name and by HTTP
// Host and nothing else does, a forged name cannot reach another address,
// the policy changes on a live slot, and releasing the slot leaves no
// proxy, namespace or rule behind.
func TestSandboxEgressPolicy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and iptables")
	}
	out := outsidetest.Start(t, 0, 3)
	a, b, c := out.Servers[0], out.Servers[1], out.Servers[2]
	out.SetNames(map[string]netip.Addr{"allowed.test": a, "api.wild.test": b})

	m, err := network.NewManager(6, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	}()
	if err := m.SetEgress(network.EgressPolicy{DNS: []netip.Addr{out.DNSAddr}}); err != nil {
		t.Fatal(err)
	}
	s, err := m.Acquire(true, true)
	if err != nil {
		t.Fatal(err)
	}
	released := false
	defer func() {
		if !released {
			_ = m.Release(s)
		}
	}()
	dial := network.Dialer(s.GuestNamespace)
	get := func(scheme string, addr netip.Addr, name string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return outsidetest.Get(ctx, dial, scheme, addr, name)
	}
	expect := func(what, scheme string, addr netip.Addr, name string, ok bool) {
		t.Helper()
		body, err := get(scheme, addr, name)
		if ok && (err != nil || body != outsidetest.Answer(addr, name)) {
			t.Errorf("%s: %s://%s (%s): got %q, %v; want the answer", what, scheme, name, addr, body, err)
		}
		if !ok && err == nil {
			t.Errorf("%s: %s://%s (%s) answered %q; want refused", what, scheme, name, addr, body)
		}
	}
	set := func(p egress.Policy) {
		t.Helper()
		r, err := egress.Compile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetSandboxEgress(s, r); err != nil {
			t.Fatal(err)
		}
	}

	expect("no policy", "http", a, "x.test", true)

	set(egress.Policy{DenyOut: []string{b.String()}})
	expect("deny one address", "http", b, "x.test", false)
	expect("deny one address, other address", "http", a, "x.test", true)
	expect("deny one address, other address TLS", "https", c, "x.test", true)
	if m.HasProxy(s.Index) {
		t.Error("a proxy runs for a policy without domains")
	}

	set(egress.Policy{AllowOut: []string{"allowed.test", "*.wild.test"}, DenyOut: []string{egress.AllTraffic}})
	if !m.HasProxy(s.Index) {
		t.Fatal("no proxy for a policy with domains")
	}
	expect("allowed domain by Host", "http", a, "allowed.test", true)
	expect("allowed domain by SNI", "https", a, "allowed.test", true)
	expect("wildcard domain", "https", b, "api.wild.test", true)
	expect("other domain", "http", a, "other.test", false)
	expect("other domain TLS", "https", a, "other.test", false)
	expect("apex of a wildcard", "https", b, "wild.test", false)
	// The guest names an allowed domain but connects elsewhere: the proxy
	// goes where the name points, never to c.
	body, err := get("http", c, "allowed.test")
	if err != nil || body != outsidetest.Answer(a, "allowed.test") {
		t.Errorf("forged name: got %q, %v; want the allowed domain's own server", body, err)
	}
	if _, err := dial(context.Background(), "tcp", netip.AddrPortFrom(c, 22).String()); err == nil {
		t.Error("a port other than 80/443 passed with all traffic denied")
	}

	// Allow wins over deny for addresses too.
	set(egress.Policy{AllowOut: []string{c.String() + "/32"}, DenyOut: []string{egress.AllTraffic}})
	expect("allowed address", "http", c, "x.test", true)
	expect("denied address", "http", a, "x.test", false)
	if m.HasProxy(s.Index) {
		t.Error("the proxy outlived the policy's domains")
	}

	set(egress.Policy{AllowOut: []string{"allowed.test"}, DenyOut: []string{egress.AllTraffic}})
	if err := m.Release(s); err != nil {
		t.Fatal(err)
	}
	released = true
	if m.HasProxy(s.Index) {
		t.Error("the proxy outlived its slot")
	}
	if network.NamespaceExists(s.Namespace) {
		t.Error("slot namespace left behind")
	}
}
