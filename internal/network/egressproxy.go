package network

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/egress"
	"golang.org/x/sys/unix"
)

// How long the proxy waits for the first bytes that name the destination,
// and for its own name lookup and connect.
const (
	sniffTimeout   = 10 * time.Second
	upstreamDialTO = 10 * time.Second
)

// domainProxy is one slot's filtering proxy: a listener in the slot's
// namespace that the guest's redirected connections arrive at. It reads
// the TLS ClientHello's server name or the HTTP request's Host, and if the
// policy allows that domain, resolves it through the guests' name servers
// and connects to it from the namespace (so the host's egress rules apply
// to the proxied connection as to the guest's own), then copies both ways.
// The policy can be swapped while it runs; close stops it and every
// connection it carries.
type domainProxy struct {
	ns     string
	ln     net.Listener
	rules  atomic.Pointer[egress.Rules]
	dns    []netip.Addr
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

func (m *Manager) startProxy(s *Slot, r egress.Rules, dns []netip.Addr) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.proxies[s.Index]; p != nil {
		p.rules.Store(&r)
		return nil
	}
	var ln net.Listener
	err := InNamespace(s.Namespace, func() error {
		var err error
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(TapPrefix.Addr(), ProxyPort).String())
		return err
	})
	if err != nil {
		return fmt.Errorf("egress proxy of slot %d: %w", s.Index, err)
	}
	p := &domainProxy{ns: s.Namespace, ln: ln, dns: dns, conns: map[net.Conn]struct{}{},
		log: m.log.With("slot", s.Index)}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.rules.Store(&r)
	if m.proxies == nil {
		m.proxies = map[int]*domainProxy{}
	}
	m.proxies[s.Index] = p
	p.wg.Add(1)
	go p.serve()
	return nil
}

// stopProxy closes slot i's proxy, if it has one, and waits for it.
func (m *Manager) stopProxy(i int) {
	m.mu.Lock()
	p := m.proxies[i]
	delete(m.proxies, i)
	m.mu.Unlock()
	if p != nil {
		p.close()
	}
}

// HasProxy reports whether slot i has a filtering proxy running (tests).
func (m *Manager) HasProxy(i int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proxies[i] != nil
}

func (p *domainProxy) close() {
	p.cancel()
	_ = p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *domainProxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !add {
		delete(p.conns, c)
		return true
	}
	if p.ctx.Err() != nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *domainProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				p.log.Error("egress proxy accept", "err", err)
			}
			return
		}
		if !p.track(c, true) {
			_ = c.Close()
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.track(c, false)
			defer c.Close()
			if err := p.handle(c); err != nil {
				p.log.Info("egress refused", "err", err)
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // the guest sees a reset, as for a denied address
				}
			}
		}()
	}
}

// handle serves one redirected connection; an error means it was refused.
func (p *domainProxy) handle(c net.Conn) error {
	dst, err := originalDst(c)
	if err != nil {
		return err
	}
	if !slices.Contains(DomainPorts, int(dst.Port())) {
		return fmt.Errorf("connection to %s: not a redirected web port", dst)
	}
	_ = c.SetReadDeadline(time.Now().Add(sniffTimeout))
	br := bufio.NewReader(c)
	var seen bytes.Buffer
	name, err := destinationName(io.TeeReader(br, &seen), br)
	if err != nil {
		return fmt.Errorf("connection to %s: %w", dst, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	if !p.rules.Load().DomainAllowed(name) {
		return fmt.Errorf("connection to %s for %q: domain not allowed", dst, name)
	}
	up, err := p.dialDomain(name, dst)
	if err != nil {
		return fmt.Errorf("connection to %q: %w", name, err)
	}
	if !p.track(up, true) {
		_ = up.Close()
		return errors.New("proxy closing")
	}
	defer p.track(up, false)
	defer up.Close()
	if _, err := up.Write(seen.Bytes()); err != nil {
		return nil
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn, r io.Reader) {
		_, _ = io.Copy(dst, r)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, c, br)
	go pipe(c, up, up)
	<-done
	<-done
	return nil
}

// destinationName reads the first message of a connection: a TLS
// ClientHello's server name, or an HTTP request's Host. r records what it
// reads; peek looks at the first byte without consuming it.
func destinationName(r io.Reader, peek *bufio.Reader) (string, error) {
	first, err := peek.Peek(1)
	if err != nil {
		return "", fmt.Errorf("no data: %w", err)
	}
	if first[0] == 0x16 { // TLS handshake record
		var name string
		stop := errors.New("stop")
		conf := &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			name = h.ServerName
			return nil, stop
		}}
		err := tls.Server(readOnlyConn{r: r}, conf).Handshake()
		if name == "" {
			return "", fmt.Errorf("TLS without a server name (%v)", err)
		}
		return name, nil
	}
	req, err := http.ReadRequest(bufio.NewReader(r))
	if err != nil {
		return "", fmt.Errorf("neither TLS nor HTTP: %w", err)
	}
	if req.Host == "" {
		return "", errors.New("HTTP request without a Host")
	}
	return req.Host, nil
}

// dialDomain resolves name through the guests' name servers and connects
// to it on dst's port, preferring dst if it is among the name's addresses:
// the guest reaches what the name points to, never another address that a
// forged name was sent to.
func (p *domainProxy) dialDomain(name string, dst netip.AddrPort) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(p.ctx, upstreamDialTO)
	defer cancel()
	dial := Dialer(p.ns)
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if len(p.dns) > 0 {
			addr = netip.AddrPortFrom(p.dns[0], 53).String()
		}
		return dial(ctx, network, addr)
	}}
	addrs, err := res.LookupNetIP(ctx, "ip4", hostOnly(name))
	if err != nil {
		return nil, fmt.Errorf("resolve: %w", err)
	}
	if len(addrs) == 0 {
		return nil, errors.New("resolve: no IPv4 address")
	}
	target := addrs[0].Unmap()
	for _, a := range addrs {
		if a.Unmap() == dst.Addr() {
			target = dst.Addr()
		}
	}
	// The host's own rules stop what leaves the namespace; an answer
	// (or /etc/hosts entry) pointing inside the namespace is refused here.
	if !target.IsGlobalUnicast() {
		return nil, fmt.Errorf("%s resolves to %s", name, target)
	}
	return dial(ctx, "tcp4", net.JoinHostPort(target.String(), strconv.Itoa(int(dst.Port()))))
}

func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}

// originalDst is where the guest sent a redirected connection
// (SO_ORIGINAL_DST).
func originalDst(c net.Conn) (netip.AddrPort, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return netip.AddrPort{}, errors.New("not TCP")
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var out netip.AddrPort
	var serr error
	err = raw.Control(func(fd uintptr) {
		var mreq *unix.IPv6Mreq
		// sockaddr_in fits the 20-byte ipv6_mreq getsockopt reads into.
		mreq, serr = unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if serr != nil {
			return
		}
		b := mreq.Multiaddr
		out = netip.AddrPortFrom(netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]}), binary.BigEndian.Uint16(b[2:4]))
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	return out, nil
}

// readOnlyConn lets crypto/tls parse a ClientHello from recorded bytes;
// it never answers.
type readOnlyConn struct{ r io.Reader }

func (c readOnlyConn) Read(b []byte) (int, error)     { return c.r.Read(b) }
func (readOnlyConn) Write([]byte) (int, error)        { return 0, io.ErrClosedPipe }
func (readOnlyConn) Close() error                     { return nil }
func (readOnlyConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (readOnlyConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (readOnlyConn) SetDeadline(time.Time) error      { return nil }
func (readOnlyConn) SetReadDeadline(time.Time) error  { return nil }
func (readOnlyConn) SetWriteDeadline(time.Time) error { return nil }
