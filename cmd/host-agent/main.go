// Command host-agent (wrenn-agent) runs sandboxes on one host for the
// control plane: see internal/hostagent. Its flags can also come from a
// TOML file (--config; config.go), and `host-agent check-config [FILE]`
// validates one without starting.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/hostagent"
	"git.omukk.dev/wrenn/sandbox/pkg/config"
)

func main() {
	var o hostagent.Options
	secretFile := flag.String("secret-file", "", "file holding the bearer secret callers must present (or set WRENN_AGENT_SECRET)")
	flag.StringVar(&o.Listen, "listen", "127.0.0.1:7070", "address to serve the agent API on")
	flag.StringVar(&o.StateDir, "state-dir", "/var/lib/wrenn", "state directory (sandboxes/, images/)")
	flag.StringVar(&o.ImagesDir, "images-dir", "", "guest images (default <state-dir>/images)")
	flag.StringVar(&o.Runtime, "runtime", "auto", "runtime driver: auto (qemu on a KVM that runs standard guests, else gvisor, else qemu under TCG), qemu, gvisor (runsc; no KVM needed), or firecracker (only when named: it has not run a guest yet)")
	flag.StringVar(&o.RunscBin, "runsc-bin", "", "gVisor's runsc (default: runsc on PATH)")
	flag.StringVar(&o.FirecrackerBin, "firecracker-bin", "", "firecracker binary (default: firecracker on PATH)")
	flag.StringVar(&o.Accel, "accel", "auto", "QEMU accelerator: auto, kvm or tcg")
	flag.StringVar(&o.HostID, "host-id", "", "this host's ID (default: the hostname)")
	flag.IntVar(&o.NetworkPartition, "network-partition", 0, "for several agents on one host: each needs its own partition, 0 to 7")
	flag.IntVar(&o.NetworkSlots, "network-slots", 0, "network slots this agent may use, at most one per sandbox (0: all of its partition's)")
	flag.IntVar(&o.MaxSandboxes, "max-sandboxes", 0, "most sandboxes at once (0: no limit beyond network slots)")
	flag.DurationVar(&o.ReadyTimeout, "ready-timeout", 3*time.Minute, "how long a guest may take to boot")
	flag.StringVar(&o.ControlPlane, "control-plane", os.Getenv("WRENN_CONTROL_PLANE"), "wrenn-cp base URL to register with and heartbeat to (or WRENN_CONTROL_PLANE)")
	flag.StringVar(&o.ControlPlaneCA, "control-plane-ca-file", "", "PEM file of the CA certificates to trust for the control plane's HTTPS certificate instead of the system's trust store (a private CA)")
	tokenFile := flag.String("registration-token-file", "", "file holding a one-time host registration token, needed the first time (or set WRENN_REGISTRATION_TOKEN)")
	flag.StringVar(&o.Advertise, "advertise", "", "host:port where the control plane reaches this agent (default: the listen address)")
	onStop := flag.String("on-stop", "pause", "what stopping the agent does to its sandboxes: pause (kept on disk; the next start takes them back, paused) or destroy")
	egressAllow := flag.String("egress-allow", "", "comma-separated CIDR ranges or addresses sandboxes may reach although blocked by default (private networks, carrier-grade NAT, cloud metadata)")
	egressBlock := flag.String("egress-block", "", "comma-separated CIDR ranges or addresses sandboxes may not reach, beside the default ones")
	flag.Int64Var(&o.ConsoleMaxBytes, "console-max-bytes", 4<<20, "cap of each of a guest's two console files (console.log, console.log.1)")
	flag.StringVar(&o.MetricsListen, "metrics-listen", "", "address of the Prometheus /metrics listener (with /healthz and /readyz), unauthenticated: loopback or an interface only Prometheus reaches; empty turns it off")
	dns := flag.String("dns", "", "comma-separated name servers for the guests (default: the host's, from /etc/resolv.conf, loopback ones left out)")
	debug := flag.Bool("debug", false, "log at debug level")
	if len(os.Args) > 1 && os.Args[1] == "check-config" {
		if err := checkConfig(flag.CommandLine, os.Args[2:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "host-agent check-config:", err)
			os.Exit(1)
		}
		return
	}
	flag.Parse()
	if _, err := loadConfig(flag.CommandLine); err != nil {
		fmt.Fprintln(os.Stderr, "host-agent:", err)
		os.Exit(1)
	}
	if *dns != "" {
		for s := range strings.SplitSeq(*dns, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(s))
			if err == nil && a.IsLoopback() {
				err = errors.New("a guest cannot reach the host's loopback")
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "host-agent: --dns %q: %v\n", *dns, err)
				os.Exit(2)
			}
			o.DNS = append(o.DNS, a)
		}
	}
	switch *onStop {
	case "pause":
	case "destroy":
		o.DestroyOnStop = true
	default:
		fmt.Fprintf(os.Stderr, "host-agent: --on-stop %q: use pause or destroy\n", *onStop)
		os.Exit(2)
	}
	o.EgressAllow, o.EgressBlock = config.SplitList(*egressAllow), config.SplitList(*egressBlock)
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	o.Secret = os.Getenv("WRENN_AGENT_SECRET")
	if *secretFile != "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "host-agent: secret file:", err)
			os.Exit(1)
		}
		o.Secret = strings.TrimSpace(string(b))
	}
	o.RegistrationToken = os.Getenv("WRENN_REGISTRATION_TOKEN")
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "host-agent: registration token file:", err)
			os.Exit(1)
		}
		o.RegistrationToken = strings.TrimSpace(string(b))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ready := make(chan string, 1)
	o.Ready = ready
	go notifyReady(ready, ctx.Done())
	if err := hostagent.Run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "host-agent:", err)
		os.Exit(1)
	}
}
