// Command envd is the daemon inside every Wrenn sandbox, wire-compatible with
// E2B's envd. With --local it runs on any Linux host for development.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/envd"
	"git.omukk.dev/wrenn/sandbox/internal/envdapi"
)

const defaultMemoryLimit = 24 << 20

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "envd:", err)
		os.Exit(1)
	}
}

func run() error {
	port := flag.Int("port", envdapi.Port, "TCP port to listen on")
	addr := flag.String("addr", "", "address to listen on (default 0.0.0.0, or 127.0.0.1 with --local)")
	local := flag.Bool("local", false, "run on a development host instead of inside a sandbox: never set the clock, default user is the current one (home: $HOME), listen on loopback")
	forward := flag.String("forward-addr", "", "forward services listening only on loopback to this address (default: the first non-loopback IPv4 address; none with --local); \"off\" disables")
	sandboxID := flag.String("sandbox-id", "", "sandbox ID exported as E2B_SANDBOX_ID")
	templateID := flag.String("template-id", "", "template ID exported as E2B_TEMPLATE_ID")
	verbose := flag.Bool("debug", false, "log at debug level")
	version := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *version {
		fmt.Println(envdapi.Version)
		return nil
	}
	if os.Getenv("GOMAXPROCS") == "" {
		// envd's work is system calls, not computation, and the
		// sandbox's CPUs belong to the user's processes. With one P its
		// goroutines hand work to each other on one thread instead of
		// waking (and spinning) a second one for every event: measured
		// on 2 CPUs, a command's round trip is ~0.7 ms shorter and the
		// command itself runs faster beside envd.
		runtime.GOMAXPROCS(1)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// envd shares a small VM with the user's work: keep the heap
		// compact and hand freed memory back (a soft limit, never an OOM).
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	// component names envd's lines in the sandbox's log, beside wrenn-init's.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("component", "envd")

	host := *addr
	if host == "" {
		host = "0.0.0.0"
		if *local {
			host = "127.0.0.1"
		}
	}
	var fwd netip.Addr
	switch *forward {
	case "off":
	case "":
		if !*local {
			fwd = firstExternalIPv4()
		}
	default:
		a, err := netip.ParseAddr(*forward)
		if err != nil {
			return fmt.Errorf("--forward-addr: %w", err)
		}
		fwd = a
	}

	srv, err := envd.New(envd.Config{Local: *local, ForwardAddr: fwd, SandboxID: *sandboxID, TemplateID: *templateID, Log: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(*port)))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("shutdown did not finish cleanly", "err", err)
	}
	return <-errc
}

// firstExternalIPv4 is the sandbox's own address (eth0 in a VM).
func firstExternalIPv4() netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}
	}
	for _, a := range addrs {
		if pfx, err := netip.ParsePrefix(a.String()); err == nil && pfx.Addr().Is4() && !pfx.Addr().IsLoopback() {
			return pfx.Addr()
		}
	}
	return netip.Addr{}
}
