package network

import (
	"fmt"
	"net/netip"
	"slices"
)

// DefaultEgressBlock is where sandboxes may not connect to, even with
// internet access: private networks (the host's LAN, a cloud's VPC),
// carrier-grade NAT, link-local (where most clouds' metadata services
// are), Azure's and Alibaba's metadata addresses, loopback, multicast and
// reserved ranges. Some of these overlap; each is listed for what it is.
var DefaultEgressBlock = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),      // carrier-grade NAT
	netip.MustParsePrefix("100.100.100.200/32"), // Alibaba Cloud metadata
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("168.63.129.16/32"), // Azure wire server and metadata
	netip.MustParsePrefix("169.254.0.0/16"),   // link-local: AWS, GCP, Azure IMDS 169.254.169.254
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.0.0.0/24"), // IETF protocol assignments (Oracle Cloud metadata 192.0.0.192)
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// EgressPolicy is what a sandbox with internet access may not reach.
type EgressPolicy struct {
	// Block lists destinations refused to every sandbox (nil: the
	// defaults, DefaultEgressBlock).
	Block []netip.Prefix
	// Allow lists destinations within Block that sandboxes may reach
	// after all (an operator's choice, e.g. an internal package mirror).
	Allow []netip.Prefix
	// DNS lists the resolvers sandboxes are given: port 53 on them stays
	// reachable even where Block covers them.
	DNS []netip.Addr
}

// egressChain is the partition's chain of destination rules, jumped to
// from its FORWARD chain for traffic that comes out of a sandbox.
func (m *Manager) egressChain() string {
	return m.chainForward[:len(m.chainForward)-len("-FORWARD")] + "-EGRESS"
}

// SetEgress replaces the destination rules every sandbox's traffic goes
// through (the same for all sandboxes; whether a sandbox has internet at
// all is its own rule, after these).
func (m *Manager) SetEgress(p EgressPolicy) error {
	rules, err := egressRules(p)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.dns = slices.Clone(p.DNS)
	m.mu.Unlock()
	chain := m.chainEgress
	if err := m.ipt.ClearChain("filter", chain); err != nil {
		return fmt.Errorf("flush chain %s: %w", chain, err)
	}
	for _, r := range rules {
		if err := m.ipt.Append("filter", chain, r...); err != nil {
			return fmt.Errorf("iptables rule %v in %s: %w", r, chain, err)
		}
	}
	return nil
}

// egressRules are the chain's rules in order: the resolvers' port 53 and
// the allowed ranges return to the caller's chain (where the sandbox's own
// internet rule decides), the blocked ranges drop.
func egressRules(p EgressPolicy) ([][]string, error) {
	block := p.Block
	if block == nil {
		block = DefaultEgressBlock
	}
	var rules [][]string
	for _, dns := range p.DNS {
		if !dns.Is4() {
			continue
		}
		for _, proto := range []string{"udp", "tcp"} {
			rules = append(rules, []string{"-d", dns.String() + "/32", "-p", proto, "--dport", "53", "-j", "RETURN"})
		}
	}
	for _, a := range p.Allow {
		if !a.Addr().Is4() {
			return nil, fmt.Errorf("egress allow %s: sandboxes have IPv4 only", a)
		}
		rules = append(rules, []string{"-d", a.Masked().String(), "-j", "RETURN"})
	}
	for _, b := range block {
		if !b.Addr().Is4() {
			return nil, fmt.Errorf("egress block %s: sandboxes have IPv4 only", b)
		}
		rules = append(rules, []string{"-d", b.Masked().String(), "-j", "DROP"})
	}
	return slices.Clip(rules), nil
}

// ParsePrefixes reads CIDR ranges or single addresses (flags, config).
func ParsePrefixes(items []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range items {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a CIDR range", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
