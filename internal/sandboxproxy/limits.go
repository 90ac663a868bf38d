package sandboxproxy

import (
	"net"
	"net/netip"
	"sync"

	"git.omukk.dev/wrenn/sandbox/internal/clientip"
)

// inFlight counts requests (or connections) per key, each key bounded.
type inFlight struct {
	mu sync.Mutex
	n  map[string]int
}

// acquire takes one for key unless max are taken; release gives it back.
func (f *inFlight) acquire(key string, max int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == nil {
		f.n = map[string]int{}
	}
	if f.n[key] >= max {
		return false
	}
	f.n[key]++
	return true
}

func (f *inFlight) release(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n[key]--; f.n[key] <= 0 {
		delete(f.n, key)
	}
}

// LimitListener bounds the TCP connections one client address holds open
// to the proxy at once (connections from trusted proxies, which carry
// many clients, are not bounded here; their clients are, per request).
// One past the bound is closed as soon as it is accepted, so that a
// client cannot take the proxy's file descriptors by opening connections
// it never uses.
func LimitListener(ln net.Listener, perClient int, trusted []string) net.Listener {
	l := &limitListener{Listener: ln, max: perClient}
	for _, t := range trusted {
		if p, err := clientip.ParsePrefix(t); err == nil {
			l.trusted = append(l.trusted, p)
		}
	}
	return l
}

type limitListener struct {
	net.Listener
	max     int
	trusted []netip.Prefix
	conns   inFlight
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
		if err != nil {
			return c, nil
		}
		addr := ap.Addr().Unmap()
		if l.isTrusted(addr) {
			return c, nil
		}
		key := addr.String()
		if !l.conns.acquire(key, l.max) {
			c.Close()
			continue
		}
		return &countedConn{Conn: c, release: func() { l.conns.release(key) }}, nil
	}
}

func (l *limitListener) isTrusted(a netip.Addr) bool {
	for _, p := range l.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// countedConn gives its slot back once, when closed.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}
