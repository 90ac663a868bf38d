package network

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// TestEgressRules: the resolvers' port 53 and the allowed ranges come
// before the blocked ones, and the defaults hold the private, CGNAT,
// link-local and metadata ranges.
func TestEgressRules(t *testing.T) {
	rules, err := egressRules(EgressPolicy{
		Allow: []netip.Prefix{netip.MustParsePrefix("10.1.2.0/24")},
		DNS:   []netip.Addr{netip.MustParseAddr("10.255.255.53")},
	})
	if err != nil {
		t.Fatal(err)
	}
	var text []string
	for _, r := range rules {
		text = append(text, strings.Join(r, " "))
	}
	want := []string{
		"-d 10.255.255.53/32 -p udp --dport 53 -j RETURN",
		"-d 10.255.255.53/32 -p tcp --dport 53 -j RETURN",
		"-d 10.1.2.0/24 -j RETURN",
	}
	if !slices.Equal(text[:3], want) {
		t.Fatalf("first rules: %q", text[:3])
	}
	for _, blocked := range []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "168.63.129.16/32", "100.100.100.200/32"} {
		if !slices.Contains(text, "-d "+blocked+" -j DROP") {
			t.Errorf("%s is not blocked: %q", blocked, text)
		}
	}
	if _, err := egressRules(EgressPolicy{Allow: []netip.Prefix{netip.MustParsePrefix("fd00::/8")}}); err == nil {
		t.Error("an IPv6 allowance was taken")
	}
	if p, err := ParsePrefixes([]string{"192.0.2.7", "198.51.100.0/24"}); err != nil || p[0].String() != "192.0.2.7/32" {
		t.Errorf("ParsePrefixes: %v %v", p, err)
	}
}
