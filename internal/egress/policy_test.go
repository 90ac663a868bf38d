package egress

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestNormalizeAndCompile(t *testing.T) {
	p, err := Normalize(Policy{AllowOut: []string{" Example.COM. ", "*.wild.test", "8.8.8.8", "10.0.0.0/8"}, DenyOut: []string{AllTraffic, "1.2.3.4"}}, E2BFields)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"example.com", "*.wild.test", "8.8.8.8", "10.0.0.0/8"}; !slices.Equal(p.AllowOut, want) {
		t.Errorf("allowOut %q, want %q", p.AllowOut, want)
	}
	r, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("8.8.8.8/32"), netip.MustParsePrefix("10.0.0.0/8")}; !slices.Equal(r.AllowNets, want) {
		t.Errorf("allow nets %v", r.AllowNets)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("1.2.3.4/32")}; !slices.Equal(r.DenyNets, want) {
		t.Errorf("deny nets %v", r.DenyNets)
	}
	for name, want := range map[string]bool{
		"example.com": true, "EXAMPLE.com.": true, "example.com:8080": true, "www.example.com": false,
		"a.wild.test": true, "a.b.wild.test": true, "wild.test": false, "xwild.test": false, "": false, "other.test": false,
	} {
		if got := r.DomainAllowed(name); got != want {
			t.Errorf("DomainAllowed(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestNormalizeRefusesByName(t *testing.T) {
	for _, c := range []struct {
		p    Policy
		want string
	}{
		{Policy{DenyOut: []string{"example.com"}}, `network.denyOut[0] "example.com": domain names are not supported`},
		{Policy{AllowOut: []string{"8.8.8.8", "not a name"}}, `network.allowOut[1] "not a name" is neither`},
		{Policy{AllowOut: []string{"*"}}, `network.allowOut[0] "*"`},
		{Policy{AllowOut: []string{"a.*.com"}}, `network.allowOut[0]`},
		{Policy{DenyOut: []string{"::1"}}, `IPv4 only`},
		{Policy{DenyOut: []string{"10.0.0.0/33"}}, `bad CIDR range`},
		{Policy{AllowOut: make([]string, MaxEntries+1)}, "at most 256"},
	} {
		_, err := Normalize(c.p, E2BFields)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want it to say %q", c.p, err, c.want)
		}
	}
}
