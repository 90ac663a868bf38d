package envd

import (
	"context"
	"net"
	"net/http"
	"sync"
)

// connTracker follows the server's connections so that a snapshot can be
// taken with none idle, and connections that existed before it (whose peers
// are gone after a restore) can be closed on the next /init.
type connTracker struct {
	mu    sync.Mutex
	conns map[net.Conn]*trackedConn
}

type trackedConn struct {
	state      http.ConnState
	preRestore bool
}

func newConnTracker() *connTracker { return &connTracker{conns: map[net.Conn]*trackedConn{}} }

func (t *connTracker) hook(c net.Conn, s http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch s {
	case http.StateNew:
		t.conns[c] = &trackedConn{state: s}
	case http.StateClosed, http.StateHijacked:
		delete(t.conns, c)
	default:
		if tc, ok := t.conns[c]; ok {
			tc.state = s
		}
	}
}

// markSnapshot closes idle connections and marks the remaining ones as
// belonging to the world before the snapshot.
func (t *connTracker) markSnapshot() (closedIdle, marked int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c, tc := range t.conns {
		if tc.state == http.StateIdle {
			c.Close()
			delete(t.conns, c)
			closedIdle++
			continue
		}
		tc.preRestore = true
		marked++
	}
	return closedIdle, marked
}

// closePreSnapshot closes every marked connection except keep.
func (t *connTracker) closePreSnapshot(keep net.Conn) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for c, tc := range t.conns {
		if tc.preRestore && c != keep {
			c.Close()
			delete(t.conns, c)
			n++
		}
	}
	return n
}

type connKey struct{}

func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

func connFrom(ctx context.Context) net.Conn {
	c, _ := ctx.Value(connKey{}).(net.Conn)
	return c
}
