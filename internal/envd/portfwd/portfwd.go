// Package portfwd makes services that listen on loopback inside a sandbox
// reachable on its external address: a scanner finds loopback-only TCP
// listeners in /proc/net/tcp{,6} and an in-process proxy forwards each one,
// keyed by socket inode. Start, Stop and Restart leave no goroutine behind.
package portfwd

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Forwarder is safe for concurrent use.
type Forwarder struct {
	external netip.Addr
	interval time.Duration
	procNet  string
	log      *slog.Logger

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// New forwards to external; scans happen every interval.
func New(external netip.Addr, interval time.Duration, log *slog.Logger) *Forwarder {
	return &Forwarder{external: external, interval: interval, procNet: "/proc/net", log: log}
}

// Start begins scanning; it is a no-op when already running.
func (f *Forwarder) Start() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan struct{})
	go f.run(ctx, f.done)
}

// Stop closes every forward and waits for all of its goroutines.
func (f *Forwarder) Stop() {
	f.mu.Lock()
	cancel, done := f.cancel, f.done
	f.cancel, f.done = nil, nil
	f.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// Restart is Stop then Start, used after a snapshot restore.
func (f *Forwarder) Restart() {
	f.Stop()
	f.Start()
}

// Running reports whether the scanner is active.
func (f *Forwarder) Running() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cancel != nil
}

func (f *Forwarder) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	active := map[uint64]*forward{}
	defer func() {
		for _, fw := range active {
			fw.close()
		}
	}()
	ticker := time.NewTicker(f.interval)
	defer ticker.Stop()
	for {
		f.sync(ctx, active)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// sync opens forwards for new loopback listeners and closes those whose
// socket is gone.
func (f *Forwarder) sync(ctx context.Context, active map[uint64]*forward) {
	ls, err := scanListeners(f.procNet)
	if err != nil {
		f.log.Warn("port scan failed", "err", err)
		return
	}
	seen := map[uint64]bool{}
	for _, l := range ls {
		if !l.addr.Addr().IsLoopback() || l.addr.Addr() == f.external {
			continue
		}
		seen[l.inode] = true
		if _, ok := active[l.inode]; ok {
			continue
		}
		fw, err := startForward(ctx, f.external, l.addr, f.log)
		if err != nil {
			f.log.Debug("cannot forward port", "port", l.addr.Port(), "err", err)
			continue
		}
		active[l.inode] = fw
		f.log.Info("forwarding port", "from", fw.ln.Addr().String(), "to", l.addr.String())
	}
	for inode, fw := range active {
		if !seen[inode] {
			fw.close()
			delete(active, inode)
		}
	}
}

// forward proxies one external port to one loopback listener.
type forward struct {
	ln     net.Listener
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startForward(parent context.Context, external netip.Addr, target netip.AddrPort, log *slog.Logger) (*forward, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(external.String(), strconv.Itoa(int(target.Port()))))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(parent)
	fw := &forward{ln: ln, cancel: cancel}
	fw.wg.Add(1)
	go func() {
		defer fw.wg.Done()
		<-ctx.Done()
		ln.Close()
	}()
	fw.wg.Add(1)
	go func() {
		defer fw.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					log.Debug("accept on forwarded port", "err", err)
				}
				return
			}
			fw.wg.Add(1)
			go func() {
				defer fw.wg.Done()
				proxy(ctx, conn, target)
			}()
		}
	}()
	return fw, nil
}

func (fw *forward) close() {
	fw.cancel()
	fw.wg.Wait()
}

func proxy(ctx context.Context, client net.Conn, target netip.AddrPort) {
	defer client.Close()
	var d net.Dialer
	upstream, err := d.DialContext(ctx, "tcp", target.String())
	if err != nil {
		return
	}
	defer upstream.Close()
	stop := context.AfterFunc(ctx, func() {
		client.Close()
		upstream.Close()
	})
	defer stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(upstream, client)
		if tc, ok := upstream.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	_, _ = io.Copy(client, upstream)
	if tc, ok := client.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	wg.Wait()
}
