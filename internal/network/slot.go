package network

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"

	"git.omukk.dev/wrenn/sandbox/pkg/fault"
)

// Every sandbox slot looks the same from inside: the guest is 169.254.0.21
// behind tap0 at 169.254.0.22, so that snapshots can be cloned anywhere.
var (
	GuestAddr = netip.MustParseAddr("169.254.0.21")
	TapPrefix = netip.MustParsePrefix("169.254.0.22/30")
)

const (
	nsPrefix   = "wrenn-ns-"
	gnsPrefix  = "wrenn-gns-"
	guestVeth  = "gv0"
	GuestIface = "eth0"
	vethPrefix = "wrenn-v"
	nsVeth     = "veth0"
	TapName    = "tap0"
)

// Slot is one sandbox's network: a namespace holding the tap and one end of
// a veth pair, the other end on the host, and a host address that reaches
// the guest through DNAT in the namespace.
type Slot struct {
	Index     int
	Namespace string
	HostVeth  string
	HostIP    netip.Addr // host end of the /31
	NsIP      netip.Addr // namespace end of the /31
	GuestHost netip.Addr // the address the host uses to reach the guest
	Internet  bool
	// GuestNamespace is set for runtimes whose guest is a network namespace
	// of its own (gVisor's netstack takes over its eth0) rather than a VM
	// behind tap0; the namespace side of the pair is then gv0, at the
	// tap's address, so the guest sees the same network either way.
	GuestNamespace string
}

// SlotFor computes slot i's names and addresses (10.12.0.0/16 for the /31s,
// 10.11.0.0/16 for the host addresses).
func SlotFor(i int) *Slot {
	x := 2 * i
	h := i + 1
	return &Slot{
		Index:     i,
		Namespace: nsPrefix + strconv.Itoa(i),
		HostVeth:  vethPrefix + strconv.Itoa(i),
		HostIP:    netip.AddrFrom4([4]byte{10, 12, byte(x >> 8), byte(x)}),
		NsIP:      netip.AddrFrom4([4]byte{10, 12, byte(x >> 8), byte(x + 1)}),
		GuestHost: netip.AddrFrom4([4]byte{10, 11, byte(h >> 8), byte(h)}),
	}
}

// MaxSlots bounds the slot index by the address plan (10.12.0.0/16 in /31s).
const MaxSlots = 32768

// Partitions divide the slot indices among agents sharing one host (a
// development or test setup): each owns PartitionSlots indices, its own
// iptables chains, and reclaims only its own leftovers.
const (
	Partitions     = 8
	PartitionSlots = MaxSlots / Partitions
)

// Manager allocates slots and owns the host-wide rules that isolate them.
type Manager struct {
	mu    sync.Mutex
	used  map[int]bool
	base  int // first slot index of the partition
	max   int
	ipt   *iptables.IPTables
	ready bool
	// The partition's chains, jumped to from FORWARD, INPUT, POSTROUTING;
	// chainEgress holds the destination rules (egress.go), jumped to from
	// chainForward for what sandboxes send.
	chainForward, chainInput, chainNAT, chainEgress string
	// dns is the guests' name servers (SetEgress); proxies are the slots'
	// filtering proxies (egressproxy.go), by slot index.
	dns     []netip.Addr
	proxies map[int]*domainProxy
	log     *slog.Logger
}

func chainPrefix(partition int) string {
	if partition == 0 {
		return "WRENN"
	}
	return "WRENN" + strconv.Itoa(partition)
}

func (m *Manager) chains() []struct{ table, name, parent string } {
	return []struct{ table, name, parent string }{{"filter", m.chainForward, "FORWARD"}, {"filter", m.chainInput, "INPUT"}, {"nat", m.chainNAT, "POSTROUTING"}}
}

// owns reports whether slot index i is in this manager's partition.
func (m *Manager) owns(i int) bool { return i >= m.base && i < m.base+PartitionSlots }

// NewManager prepares the host: forwarding on, Wrenn's chains present and
// emptied (a crashed agent's rules are reclaimed), and the base isolation
// rules in place. Namespaces and veths left by an earlier run are removed
// unless keep says a slot is still in use (adopted sandboxes).
func NewManager(partition, maxSlots int, keep map[int]bool) (*Manager, error) {
	if partition < 0 || partition >= Partitions {
		return nil, fmt.Errorf("network partition %d: use 0 to %d", partition, Partitions-1)
	}
	if maxSlots <= 0 || maxSlots > PartitionSlots {
		maxSlots = PartitionSlots
	}
	ipt, err := iptables.New()
	if err != nil {
		return nil, fmt.Errorf("iptables: %w (install the iptables package)", err)
	}
	cp := chainPrefix(partition)
	m := &Manager{used: map[int]bool{}, proxies: map[int]*domainProxy{}, log: slog.Default(), base: partition * PartitionSlots, max: maxSlots, ipt: ipt,
		chainForward: cp + "-FORWARD", chainInput: cp + "-INPUT", chainNAT: cp + "-POSTROUTING", chainEgress: cp + "-EGRESS"}
	for i := range keep {
		m.used[i] = true
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return nil, fmt.Errorf("enable IPv4 forwarding: %w", err)
	}
	if err := m.installBaseRules(keep); err != nil {
		return nil, err
	}
	if err := m.reclaim(keep); err != nil {
		return nil, err
	}
	m.ready = true
	return m, nil
}

func (m *Manager) installBaseRules(keep map[int]bool) error {
	chainForward, chainInput, chainNAT := m.chainForward, m.chainInput, m.chainNAT
	if ok, _ := m.ipt.ChainExists("filter", m.chainEgress); !ok {
		if err := m.ipt.NewChain("filter", m.chainEgress); err != nil {
			return fmt.Errorf("create chain %s: %w", m.chainEgress, err)
		}
	}
	// The default destination rules until the agent sets its own.
	if err := m.SetEgress(EgressPolicy{}); err != nil {
		return err
	}
	for _, c := range m.chains() {
		exists, err := m.ipt.ChainExists(c.table, c.name)
		if err != nil {
			return fmt.Errorf("iptables %s/%s: %w", c.table, c.name, err)
		}
		if !exists {
			if err := m.ipt.NewChain(c.table, c.name); err != nil {
				return fmt.Errorf("create chain %s: %w", c.name, err)
			}
		}
		if err := m.ipt.ClearChain(c.table, c.name); err != nil {
			return fmt.Errorf("flush chain %s: %w", c.name, err)
		}
		if ok, _ := m.ipt.Exists(c.table, c.parent, "-j", c.name); !ok {
			if err := m.ipt.Insert(c.table, c.parent, 1, "-j", c.name); err != nil {
				return fmt.Errorf("jump %s -> %s: %w", c.parent, c.name, err)
			}
		}
	}
	rules := [][]string{
		// Replies to connections the host or the internet side began.
		{"filter", chainForward, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
		// Sandboxes never reach each other, nor link-local services such
		// as a cloud's metadata endpoint.
		{"filter", chainForward, "-i", vethPrefix + "+", "-o", vethPrefix + "+", "-j", "DROP"},
		{"filter", chainForward, "-i", vethPrefix + "+", "-d", "169.254.0.0/16", "-j", "DROP"},
		// Nor private networks, carrier-grade NAT or cloud metadata
		// addresses, unless the operator allows them (egress.go).
		{"filter", chainForward, "-i", vethPrefix + "+", "-j", m.chainEgress},
		// Sandboxes reach no service of the host itself; the host's own
		// connections into them are answered.
		{"filter", chainInput, "-i", vethPrefix + "+", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
		{"filter", chainInput, "-i", vethPrefix + "+", "-j", "DROP"},
		{"nat", chainNAT, "-s", "10.12.0.0/16", "!", "-o", vethPrefix + "+", "-j", "MASQUERADE"},
	}
	for _, r := range rules {
		if err := m.ipt.Append(r[0], r[1], r[2:]...); err != nil {
			return fmt.Errorf("iptables rule %v: %w", r, err)
		}
	}
	for i := range keep {
		s := SlotFor(i)
		s.Internet = keep[i]
		if err := m.egressRule(s, true); err != nil {
			return err
		}
	}
	return nil
}

// egressRule lets a slot out (or not); the last rule of the chain drops it.
func (m *Manager) egressRule(s *Slot, add bool) error {
	target := "DROP"
	if s.Internet {
		target = "ACCEPT"
	}
	spec := []string{"-i", s.HostVeth, "-j", target}
	if add {
		return m.ipt.Append("filter", m.chainForward, spec...)
	}
	if err := m.ipt.DeleteIfExists("filter", m.chainForward, spec...); err != nil {
		return fmt.Errorf("remove egress rule of %s: %w", s.HostVeth, err)
	}
	return nil
}

// reclaim removes namespaces and veths of slots nobody holds.
func (m *Manager) reclaim(keep map[int]bool) error {
	var errs []error
	names, _ := filepath.Glob("/run/netns/" + nsPrefix + "*")
	gnames, _ := filepath.Glob("/run/netns/" + gnsPrefix + "*")
	for _, p := range append(names, gnames...) {
		i, err := strconv.Atoi(strings.TrimPrefix(strings.TrimPrefix(filepath.Base(p), nsPrefix), gnsPrefix))
		if err == nil && (keep[i] || !m.owns(i)) {
			continue
		}
		if err := DeleteNamespace(filepath.Base(p)); err != nil {
			errs = append(errs, err)
		}
	}
	// Deleting a namespace takes its veth away a moment later, which can
	// interrupt the dump: list again until a dump is whole.
	links, err := netlink.LinkList()
	for try := 0; errors.Is(err, netlink.ErrDumpInterrupted) && try < 10; try++ {
		time.Sleep(50 * time.Millisecond)
		links, err = netlink.LinkList()
	}
	if err != nil {
		return err
	}
	for _, l := range links {
		name := l.Attrs().Name
		if !strings.HasPrefix(name, vethPrefix) {
			continue
		}
		i, err := strconv.Atoi(strings.TrimPrefix(name, vethPrefix))
		if err == nil && (keep[i] || !m.owns(i)) {
			continue
		}
		// Removing a namespace takes its veth's host end with it.
		if err := netlink.LinkDel(l); err != nil && !errors.Is(err, syscall.ENODEV) {
			errs = append(errs, fmt.Errorf("remove stale %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Acquire builds a new slot: for a VM, a tap in the slot's namespace; with
// guestNS, a guest namespace of its own joined to the slot's namespace by
// a veth pair, its eth0 addressed and routed as a VM's would be. On any
// failure everything it made is removed.
func (m *Manager) Acquire(internet, guestNS bool) (_ *Slot, err error) {
	m.mu.Lock()
	i := -1
	for j := m.base; j < m.base+m.max; j++ {
		if !m.used[j] {
			i = j
			break
		}
	}
	if i < 0 {
		m.mu.Unlock()
		// No capacity, not a failure: the control plane tries another host.
		return nil, fault.Errorf(fault.NoCapacity, "all %d network slots are in use", m.max)
	}
	m.used[i] = true
	m.mu.Unlock()
	s := SlotFor(i)
	s.Internet = internet
	if guestNS {
		s.GuestNamespace = gnsPrefix + strconv.Itoa(i)
	}
	defer func() {
		if err != nil {
			if rerr := m.Release(s); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	if err := m.build(s); err != nil {
		return nil, fmt.Errorf("network slot %d: %w", i, err)
	}
	return s, nil
}

func (m *Manager) build(s *Slot) error {
	// A namespace of the same name can only be a leftover: remove it.
	_ = DeleteNamespace(s.Namespace)
	if l, err := netlink.LinkByName(s.HostVeth); err == nil {
		_ = netlink.LinkDel(l)
	}
	if err := CreateNamespace(s.Namespace); err != nil {
		return err
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: s.HostVeth}, PeerName: nsVeth + "-" + strconv.Itoa(s.Index)}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s: %w", s.HostVeth, err)
	}
	peer, err := netlink.LinkByName(veth.PeerName)
	if err != nil {
		return err
	}
	nsh, err := namespaceHandle(s.Namespace)
	if err != nil {
		return err
	}
	defer nsh.Close()
	if err := netlink.LinkSetNsFd(peer, int(nsh)); err != nil {
		return fmt.Errorf("move veth into %s: %w", s.Namespace, err)
	}
	host, err := netlink.LinkByName(s.HostVeth)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(host, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(s.HostIP, 31))}); err != nil {
		return fmt.Errorf("address %s: %w", s.HostIP, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return err
	}
	if err := netlink.RouteReplace(&netlink.Route{LinkIndex: host.Attrs().Index, Dst: prefixNet(netip.PrefixFrom(s.GuestHost, 32)), Gw: s.NsIP.AsSlice()}); err != nil {
		return fmt.Errorf("route to %s: %w", s.GuestHost, err)
	}
	if err := InNamespace(s.Namespace, func() error { return s.configureInside(veth.PeerName) }); err != nil {
		return err
	}
	if s.GuestNamespace != "" {
		if err := s.buildGuestNamespace(); err != nil {
			return err
		}
	} else if err := AddTap(s.Namespace, TapName, TapPrefix); err != nil {
		return err
	}
	return m.egressRule(s, true)
}

func (s *Slot) buildGuestNamespace() error {
	_ = DeleteNamespace(s.GuestNamespace)
	if err := CreateNamespace(s.GuestNamespace); err != nil {
		return err
	}
	peerName := "gvp-" + strconv.Itoa(s.Index)
	gh, err := namespaceHandle(s.GuestNamespace)
	if err != nil {
		return err
	}
	defer gh.Close()
	return InNamespace(s.Namespace, func() error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: guestVeth}, PeerName: peerName}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("create guest veth: %w", err)
		}
		peer, err := netlink.LinkByName(peerName)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetNsFd(peer, int(gh)); err != nil {
			return fmt.Errorf("move veth into %s: %w", s.GuestNamespace, err)
		}
		gv, err := netlink.LinkByName(guestVeth)
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(gv, &netlink.Addr{IPNet: prefixNet(TapPrefix)}); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(gv); err != nil {
			return err
		}
		return InNamespace(s.GuestNamespace, func() error {
			p, err := netlink.LinkByName(peerName)
			if err != nil {
				return err
			}
			if err := netlink.LinkSetName(p, GuestIface); err != nil {
				return err
			}
			return addressGuest()
		})
	})
}

// addressGuest gives the guest namespace's eth0 the guest's address and
// route. gVisor takes them off the kernel's link when its netstack takes
// the link over, so a slot serves one start or restore; every bring-up
// acquires a new one.
func addressGuest() error {
	eth, err := netlink.LinkByName(GuestIface)
	if err != nil {
		return err
	}
	if err := netlink.AddrReplace(eth, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(GuestAddr, TapPrefix.Bits()))}); err != nil {
		return fmt.Errorf("guest address: %w", err)
	}
	if err := netlink.LinkSetUp(eth); err != nil {
		return err
	}
	return netlink.RouteReplace(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: TapPrefix.Addr().AsSlice()})
}

// configureInside runs in the slot's namespace.
func (s *Slot) configureInside(peerName string) error {
	peer, err := netlink.LinkByName(peerName)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetName(peer, nsVeth); err != nil {
		return fmt.Errorf("rename veth peer: %w", err)
	}
	if err := netlink.AddrAdd(peer, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(s.NsIP, 31))}); err != nil {
		return fmt.Errorf("address %s: %w", s.NsIP, err)
	}
	if err := netlink.LinkSetUp(peer); err != nil {
		return err
	}
	if err := netlink.RouteReplace(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: s.HostIP.AsSlice()}); err != nil {
		return fmt.Errorf("default route in %s: %w", s.Namespace, err)
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return fmt.Errorf("forwarding in %s: %w", s.Namespace, err)
	}
	ipt, err := iptables.New()
	if err != nil {
		return err
	}
	for _, r := range [][]string{
		{"PREROUTING", "-d", s.GuestHost.String(), "-j", "DNAT", "--to-destination", GuestAddr.String()},
		{"POSTROUTING", "-o", nsVeth, "-s", GuestAddr.String(), "-j", "MASQUERADE"},
	} {
		if err := ipt.Append("nat", r[0], r[1:]...); err != nil {
			return fmt.Errorf("nat rule in %s: %w", s.Namespace, err)
		}
	}
	return nil
}

// Release removes a slot's namespace (and with it the tap, the veth pair
// and the namespace's rules) and its host rule, and frees the index.
func (m *Manager) Release(s *Slot) error {
	m.stopProxy(s.Index)
	var errs []error
	if err := m.egressRule(s, false); err != nil {
		errs = append(errs, err)
	}
	if l, err := netlink.LinkByName(s.HostVeth); err == nil {
		if err := netlink.LinkDel(l); err != nil && !errors.Is(err, syscall.ENODEV) {
			errs = append(errs, fmt.Errorf("remove %s: %w", s.HostVeth, err))
		}
	}
	if err := DeleteNamespace(s.Namespace); err != nil {
		errs = append(errs, err)
	}
	if s.GuestNamespace != "" {
		if err := DeleteNamespace(s.GuestNamespace); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		m.mu.Lock()
		delete(m.used, s.Index)
		m.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Close removes the host-wide rules; call it after every slot is released.
func (m *Manager) Close() error {
	m.mu.Lock()
	var held []int
	for i := range m.proxies {
		held = append(held, i)
	}
	m.mu.Unlock()
	for _, i := range held {
		m.stopProxy(i)
	}
	var errs []error
	for _, c := range m.chains() {
		if err := m.ipt.DeleteIfExists(c.table, c.parent, "-j", c.name); err != nil {
			errs = append(errs, err)
		}
		if err := m.ipt.ClearAndDeleteChain(c.table, c.name); err != nil {
			errs = append(errs, err)
		}
	}
	// Only the FORWARD chain, gone now, jumped here.
	if err := m.ipt.ClearAndDeleteChain("filter", m.chainEgress); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Dialer connects to the guest from the host through the slot's host address.
func (s *Slot) GuestURL(port int) string {
	return "http://" + net.JoinHostPort(s.GuestHost.String(), strconv.Itoa(port))
}
