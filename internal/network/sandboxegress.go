package network

import (
	"fmt"
	"net/netip"
	"strconv"

	"git.omukk.dev/wrenn/sandbox/internal/egress"
	"github.com/coreos/go-iptables/iptables"
)

// A sandbox's own egress policy (egress.Rules) lives in its slot's
// namespace, between the guest and the host: the guest cannot change it,
// and removing the namespace removes it. Addresses and ranges are filter
// rules on what the guest sends; domain names need the first bytes of a
// connection, so TCP to ports 80 and 443 of a denied destination is
// redirected to a filtering proxy listening in the namespace (proxy.go),
// which reads the TLS server name or the HTTP Host and connects only to an
// allowed domain.
const (
	sandboxChain = "WRENN-OUT"
	// ProxyPort is where the slot's filtering proxy listens, on the
	// guest-facing address of the namespace.
	ProxyPort = 15001
)

// DomainPorts are the ports on which domain rules apply: HTTP (Host) and
// TLS (server name).
var DomainPorts = []int{80, 443}

// guestIface is the namespace's interface that faces the guest.
func (s *Slot) guestIface() string {
	if s.GuestNamespace != "" {
		return guestVeth
	}
	return TapName
}

// SetSandboxEgress applies a sandbox's own policy to its slot, replacing
// the one before. Connections already open stay open.
func (m *Manager) SetSandboxEgress(s *Slot, r egress.Rules) error {
	m.mu.Lock()
	dns := m.dns
	m.mu.Unlock()
	err := InNamespace(s.Namespace, func() error {
		ipt, err := iptables.New()
		if err != nil {
			return err
		}
		return applySandboxRules(ipt, s.guestIface(), r, dns)
	})
	if err != nil {
		return fmt.Errorf("egress policy of slot %d: %w", s.Index, err)
	}
	if len(r.AllowDomains) == 0 {
		m.stopProxy(s.Index)
		return nil
	}
	return m.startProxy(s, r, dns)
}

func applySandboxRules(ipt *iptables.IPTables, iface string, r egress.Rules, dns []netip.Addr) error {
	for _, c := range []struct{ table, parent string }{{"filter", "FORWARD"}, {"nat", "PREROUTING"}} {
		if ok, _ := ipt.ChainExists(c.table, sandboxChain); !ok {
			if err := ipt.NewChain(c.table, sandboxChain); err != nil {
				return fmt.Errorf("create chain %s/%s: %w", c.table, sandboxChain, err)
			}
		}
		if err := ipt.ClearChain(c.table, sandboxChain); err != nil {
			return err
		}
		if err := ipt.AppendUnique(c.table, c.parent, "-i", iface, "-j", sandboxChain); err != nil {
			return fmt.Errorf("jump %s -> %s: %w", c.parent, sandboxChain, err)
		}
	}
	for _, rule := range sandboxRules(r, dns) {
		if err := ipt.Append(rule[0], sandboxChain, rule[1:]...); err != nil {
			return fmt.Errorf("iptables %v: %w", rule, err)
		}
	}
	return nil
}

// sandboxRules are the chains' rules in order, each starting with its
// table: replies and the resolvers pass, allowed ranges pass, web traffic
// to denied ranges goes to the proxy when domains are allowed, the rest of
// the denied ranges is refused.
func sandboxRules(r egress.Rules, dns []netip.Addr) [][]string {
	if len(r.DenyNets) == 0 {
		// Nothing is denied, so allowing adds nothing.
		return nil
	}
	rules := [][]string{{"filter", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"}}
	for _, d := range dns {
		if d.Is4() {
			for _, proto := range []string{"udp", "tcp"} {
				rules = append(rules, []string{"filter", "-d", d.String() + "/32", "-p", proto, "--dport", "53", "-j", "RETURN"})
			}
		}
	}
	for _, n := range r.AllowNets {
		rules = append(rules, []string{"filter", "-d", n.String(), "-j", "RETURN"}, []string{"nat", "-d", n.String(), "-j", "RETURN"})
	}
	for _, n := range r.DenyNets {
		if len(r.AllowDomains) > 0 {
			for _, p := range DomainPorts {
				rules = append(rules, []string{"nat", "-d", n.String(), "-p", "tcp", "--dport", strconv.Itoa(p), "-j", "REDIRECT", "--to-ports", strconv.Itoa(ProxyPort)})
			}
		}
		rules = append(rules,
			[]string{"filter", "-d", n.String(), "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"},
			[]string{"filter", "-d", n.String(), "-j", "REJECT", "--reject-with", "icmp-admin-prohibited"})
	}
	return rules
}
