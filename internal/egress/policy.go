// Package egress owns a sandbox's own egress policy as E2B's API spells it
// (network.allowOut and network.denyOut): checking what a user sent,
// splitting it into address ranges and domain names, and deciding whether
// a domain name is allowed. The host agent enforces it (internal/network);
// the control plane stores it and reports it.
package egress

import (
	"fmt"
	"net/netip"
	"strings"
)

// AllTraffic is the range that stands for every destination (E2B's SDK
// exports the same constant as ALL_TRAFFIC).
const AllTraffic = "0.0.0.0/0"

// MaxEntries bounds each list: every entry becomes host firewall rules.
const MaxEntries = 256

// Policy is what a sandbox may reach besides the host's own rules.
// Allowed entries win over denied ones; a destination neither list names
// is allowed.
type Policy struct {
	// AllowOut holds addresses, CIDR ranges and domain names
	// ("example.com", "*.example.com": subdomains at any depth, not the
	// apex).
	AllowOut []string `json:"allowOut,omitempty"`
	// DenyOut holds addresses and CIDR ranges (never domain names).
	DenyOut []string `json:"denyOut,omitempty"`
}

// Empty reports whether the policy restricts nothing.
func (p Policy) Empty() bool { return len(p.AllowOut) == 0 && len(p.DenyOut) == 0 }

// Rules is a checked policy split by kind.
type Rules struct {
	AllowNets    []netip.Prefix
	AllowDomains []string // lower case; "*.x" for wildcards
	DenyNets     []netip.Prefix
}

// Fields names the two lists in error messages, as an API spells them.
type Fields struct{ Allow, Deny string }

// Field names of E2B's API and of Wrenn's /v1.
var (
	E2BFields = Fields{"network.allowOut", "network.denyOut"}
	V1Fields  = Fields{"network.allow_out", "network.deny_out"}
)

// Normalize checks p and returns it with entries trimmed and domain names
// in lower case; errors name the entry as f spells its list.
func Normalize(p Policy, f Fields) (Policy, error) {
	var out Policy
	var err error
	if out.AllowOut, err = normalizeList(p.AllowOut, f.Allow, true); err != nil {
		return Policy{}, err
	}
	if out.DenyOut, err = normalizeList(p.DenyOut, f.Deny, false); err != nil {
		return Policy{}, err
	}
	return out, nil
}

func normalizeList(items []string, field string, domains bool) ([]string, error) {
	if len(items) > MaxEntries {
		return nil, fmt.Errorf("%s: at most %d entries", field, MaxEntries)
	}
	var out []string
	for i, raw := range items {
		s := strings.ToLower(strings.TrimSpace(raw))
		if _, err := parseNet(s); err == nil {
			out = append(out, s)
			continue
		} else if err != errNotNet {
			return nil, fmt.Errorf("%s[%d] %q: %w", field, i, raw, err)
		}
		if !validDomain(s) {
			return nil, fmt.Errorf("%s[%d] %q is neither an IPv4 address, a CIDR range nor a domain name", field, i, raw)
		}
		if !domains {
			return nil, fmt.Errorf("%s[%d] %q: domain names are not supported for deny rules (use addresses or CIDR ranges)", field, i, raw)
		}
		out = append(out, strings.TrimSuffix(s, "."))
	}
	return out, nil
}

var errNotNet = fmt.Errorf("not an address")

// parseNet reads an address or a CIDR range; errNotNet means it is
// neither, any other error that it is one Wrenn cannot use.
func parseNet(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			if _, aerr := netip.ParseAddr(s[:strings.IndexByte(s, '/')]); aerr == nil {
				return netip.Prefix{}, fmt.Errorf("bad CIDR range: %v", err)
			}
			return netip.Prefix{}, errNotNet
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, errNotNet
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("sandboxes have IPv4 only")
	}
	return p.Masked(), nil
}

// validDomain accepts DNS names, optionally starting with "*." (a bare
// "*" is not a name).
func validDomain(s string) bool {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "*."), ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
				return false
			}
		}
	}
	return true
}

// Compile checks p and splits it into rules.
func Compile(p Policy) (Rules, error) {
	p, err := Normalize(p, E2BFields)
	if err != nil {
		return Rules{}, err
	}
	var r Rules
	for _, s := range p.AllowOut {
		if n, err := parseNet(s); err == nil {
			r.AllowNets = append(r.AllowNets, n)
		} else {
			r.AllowDomains = append(r.AllowDomains, s)
		}
	}
	for _, s := range p.DenyOut {
		n, _ := parseNet(s)
		r.DenyNets = append(r.DenyNets, n)
	}
	return r, nil
}

// DomainAllowed reports whether name (a TLS server name or an HTTP Host,
// with or without a port) matches an allowed domain: exactly, or under a
// wildcard entry's suffix.
func (r Rules) DomainAllowed(name string) bool {
	name = strings.ToLower(strings.TrimSuffix(hostOnly(name), "."))
	if name == "" {
		return false
	}
	for _, d := range r.AllowDomains {
		if suffix, ok := strings.CutPrefix(d, "*"); ok {
			if strings.HasSuffix(name, suffix) && len(name) > len(suffix) {
				return true
			}
		} else if name == d {
			return true
		}
	}
	return false
}

// hostOnly strips a port from an HTTP Host value.
func hostOnly(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		return h[:i]
	}
	return h
}
