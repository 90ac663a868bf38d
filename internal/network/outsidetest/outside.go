// Package outsidetest builds an "outside" network for egress tests: a
// network namespace joined to the host by a veth pair, holding addresses
// of a quarter of TEST-NET-2 (198.51.100.0/24, which no default egress
// rule blocks; each of the four has its own namespace, so packages
// testing in parallel do not meet),
// with an HTTP server on port 80 and an HTTPS server on port 443 at every
// address that answer with the address and the name they were asked for,
// and a DNS server that answers the names it was given. Sandboxes reach
// it as they would the internet: through the host's forwarding and NAT.
package outsidetest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"

	"git.omukk.dev/wrenn/sandbox/internal/localca"
	"git.omukk.dev/wrenn/sandbox/internal/network"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/dns/dnsmessage"
)

const prefix = 26

// Outside is a running outside network.
type Outside struct {
	// HostAddr is the host's end of the veth; DNSAddr the name server's.
	HostAddr, DNSAddr   netip.Addr
	namespace, hostVeth string
	// Servers are the web servers' addresses.
	Servers []netip.Addr
	mu      sync.Mutex
	names   map[string]netip.Addr

	closers []func() error
	wg      sync.WaitGroup
}

// Start builds outside network id (0 to 3: 198.51.100.64*id/26) with n
// web servers (.10, .11, ... of it) and a DNS server (.2) answering
// the names SetNames gives; everything is removed when the test ends, and Start fails the
// test if any of it stays.
func Start(t testing.TB, id, n int) *Outside {
	t.Helper()
	base := byte(64 * id)
	o := &Outside{namespace: fmt.Sprintf("wrenn-outside%d", id), hostVeth: fmt.Sprintf("wrenn-out%d", id),
		HostAddr: netip.AddrFrom4([4]byte{198, 51, 100, base + 1}), DNSAddr: netip.AddrFrom4([4]byte{198, 51, 100, base + 2})}
	for i := range n {
		o.Servers = append(o.Servers, netip.AddrFrom4([4]byte{198, 51, 100, base + byte(10+i)}))
	}
	t.Cleanup(func() {
		if err := o.close(); err != nil {
			t.Error(err)
		}
		if network.NamespaceExists(o.namespace) {
			t.Error("outside namespace left behind")
		}
	})
	if err := o.build(); err != nil {
		t.Fatal(err)
	}
	return o
}

func (o *Outside) build() error {
	_ = network.DeleteNamespace(o.namespace)
	if l, err := netlink.LinkByName(o.hostVeth); err == nil {
		_ = netlink.LinkDel(l)
	}
	if err := network.CreateNamespace(o.namespace); err != nil {
		return err
	}
	o.closers = append(o.closers, func() error { return network.DeleteNamespace(o.namespace) })
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: o.hostVeth}, PeerName: o.hostVeth + "p"}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("outside veth: %w", err)
	}
	o.closers = append(o.closers, func() error {
		if l, err := netlink.LinkByName(o.hostVeth); err == nil {
			return netlink.LinkDel(l)
		}
		return nil
	})
	host, err := netlink.LinkByName(o.hostVeth)
	if err != nil {
		return err
	}
	peer, err := netlink.LinkByName(veth.PeerName)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(host, addr(o.HostAddr)); err != nil {
		return err
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return err
	}
	ns, err := o.netnsFd()
	if err != nil {
		return err
	}
	defer ns.Close()
	if err := netlink.LinkSetNsFd(peer, int(ns.Fd())); err != nil {
		return err
	}
	addrs := append([]netip.Addr{o.DNSAddr}, o.Servers...)
	err = network.InNamespace(o.namespace, func() error {
		l, err := netlink.LinkByName(veth.PeerName)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if err := netlink.AddrAdd(l, addr(a)); err != nil {
				return err
			}
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return err
		}
		return netlink.RouteReplace(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: o.HostAddr.AsSlice()})
	})
	if err != nil {
		return fmt.Errorf("outside namespace: %w", err)
	}
	return o.serve()
}

func addr(a netip.Addr) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(prefix, 32)}}
}

func (o *Outside) netnsFd() (*os.File, error) { return os.Open("/run/netns/" + o.namespace) }

// SetNames replaces what the DNS server knows: names (lower case, no
// trailing dot) and their addresses.
func (o *Outside) SetNames(names map[string]netip.Addr) {
	o.mu.Lock()
	o.names = names
	o.mu.Unlock()
}

// Answer is what the web servers reply: "<address> <host or server name>".
func Answer(addr netip.Addr, name string) string { return addr.String() + " " + name }

func (o *Outside) serve() error {
	ca, err := localca.New("outside")
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := ca.Issue("outside", "outside")
	if err != nil {
		return err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return err
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		ap, _ := netip.ParseAddrPort(local.String())
		name := r.Host
		if r.TLS != nil {
			name = r.TLS.ServerName
		}
		fmt.Fprint(w, Answer(ap.Addr(), name))
	})
	var lns []net.Listener
	var pcs []net.PacketConn
	err = network.InNamespace(o.namespace, func() error {
		for _, port := range []string{"80", "443"} {
			ln, err := net.Listen("tcp4", ":"+port)
			if err != nil {
				return err
			}
			lns = append(lns, ln)
		}
		pc, err := net.ListenPacket("udp4", net.JoinHostPort(o.DNSAddr.String(), "53"))
		if err != nil {
			return err
		}
		pcs = append(pcs, pc)
		return nil
	})
	if err != nil {
		for _, ln := range lns {
			_ = ln.Close()
		}
		return fmt.Errorf("outside servers: %w", err)
	}
	plain := &http.Server{Handler: handler}
	secure := &http.Server{Handler: handler, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	o.closers = append(o.closers, plain.Close, secure.Close, pcs[0].Close)
	o.wg.Add(3)
	go func() { defer o.wg.Done(); _ = plain.Serve(lns[0]) }()
	go func() { defer o.wg.Done(); _ = secure.ServeTLS(lns[1], "", "") }()
	go func() { defer o.wg.Done(); o.serveDNS(pcs[0]) }()
	return nil
}

// serveDNS answers A queries for the names set; every other name is NXDOMAIN.
func (o *Outside) serveDNS(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		name := strings.TrimSuffix(strings.ToLower(q.Name.String()), ".")
		o.mu.Lock()
		a, ok := o.names[name]
		o.mu.Unlock()
		resp := dnsmessage.Message{Header: dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionAvailable: true}, Questions: []dnsmessage.Question{q}}
		switch {
		case !ok:
			resp.RCode = dnsmessage.RCodeNameError
		case q.Type == dnsmessage.TypeA:
			resp.Answers = []dnsmessage.Resource{{Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 5}, Body: &dnsmessage.AResource{A: a.As4()}}}
		}
		out, err := resp.Pack()
		if err == nil {
			_, _ = pc.WriteTo(out, from)
		}
	}
}

// close stops the servers and removes the namespace and veth.
func (o *Outside) close() error {
	var errs []error
	for i := len(o.closers) - 1; i >= 0; i-- {
		if err := o.closers[i](); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	o.closers = nil
	o.wg.Wait()
	return errors.Join(errs...)
}

// Get fetches http://addr/ with Host name through dial (a dialer from the
// sandbox's side), returning the body.
func Get(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), scheme string, addr netip.Addr, name string) (string, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		port := "80"
		if scheme == "https" {
			port = "443"
		}
		return dial(ctx, network, net.JoinHostPort(addr.String(), port))
	}, TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: name}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+name+"/", nil)
	if err != nil {
		return "", err
	}
	res, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b := make([]byte, 256)
	k, _ := res.Body.Read(b)
	return string(b[:k]), nil
}

// ClientHello is the first TLS record a client sends to name: a guest
// without a TLS client of its own (busybox) replays it with nc, and a TLS
// server that gets it answers with a handshake record (0x16).
func ClientHello(name string) ([]byte, error) {
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		defer client.Close()
		_ = tls.Client(client, &tls.Config{ServerName: name, InsecureSkipVerify: true}).Handshake()
	}()
	head := make([]byte, 5)
	if _, err := io.ReadFull(server, head); err != nil {
		return nil, err
	}
	body := make([]byte, int(head[3])<<8|int(head[4]))
	if _, err := io.ReadFull(server, body); err != nil {
		return nil, err
	}
	return append(head, body...), nil
}
