package hostagent

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/internal/cpclient"
	"git.omukk.dev/wrenn/sandbox/internal/metrics"
	"git.omukk.dev/wrenn/sandbox/internal/network"
	"git.omukk.dev/wrenn/sandbox/internal/runtime"
	"git.omukk.dev/wrenn/sandbox/internal/runtime/console"
	"git.omukk.dev/wrenn/sandbox/internal/runtime/firecracker"
	"git.omukk.dev/wrenn/sandbox/internal/runtime/gvisor"
	"git.omukk.dev/wrenn/sandbox/internal/runtime/qemu"
	"git.omukk.dev/wrenn/sandbox/internal/sandbox"
)

// Options configure an agent.
type Options struct {
	Listen    string
	StateDir  string
	ImagesDir string
	Secret    string
	Runtime   string
	Accel     string
	// FirecrackerBin is the firecracker binary (default: firecracker on PATH).
	FirecrackerBin string
	// RunscBin is gVisor's runsc (default: runsc on PATH).
	RunscBin     string
	HostID       string
	MaxSandboxes int
	// NetworkPartition lets several agents share one host (development,
	// tests): each takes its own range of network slots and iptables
	// chains. 0 to network.Partitions-1.
	NetworkPartition int
	// NetworkSlots bounds the sandboxes' network slots (0: the whole
	// partition, network.PartitionSlots); a create beyond them is refused
	// as no capacity, and the control plane tries another host.
	NetworkSlots int
	ReadyTimeout time.Duration
	// DNS is the name servers guests use (default: the host's, from
	// /etc/resolv.conf, loopback ones left out).
	DNS []netip.Addr
	// ControlPlane is wrenn-cp's base URL; when set, the agent registers
	// (once, with RegistrationToken), heartbeats, and accepts the secret
	// registration gave it instead of Secret.
	ControlPlane      string
	RegistrationToken string
	// ControlPlaneCA, if set, is a PEM file of the CAs to trust for the
	// control plane's HTTPS certificate instead of the system's.
	ControlPlaneCA string
	// Advertise is host:port where the control plane reaches this agent
	// (default: the listening address, which must then be specific).
	Advertise string
	Log       *slog.Logger
	// DestroyOnStop destroys every sandbox when the agent stops; by
	// default they are paused and the next start adopts them.
	DestroyOnStop bool
	// Ready, if set, receives the listening address once serving.
	Ready chan<- string
	// EgressAllow lists destinations (CIDR ranges or addresses) that
	// sandboxes may reach although they are blocked by default (private
	// networks, carrier-grade NAT, cloud metadata); EgressBlock adds
	// destinations to block. See network.EgressPolicy.
	EgressAllow, EgressBlock []string
	// ConsoleMaxBytes caps each of a guest's two console files (0: 4 MiB).
	ConsoleMaxBytes int64
	// MetricsListen is where Prometheus scrapes /metrics (with /healthz
	// and /readyz); empty turns it off. See internal/metrics.
	MetricsListen string
}

// Run serves until ctx ends, then pauses its sandboxes (or destroys them,
// with DestroyOnStop) and removes the host rules it installed.
func Run(ctx context.Context, o Options) error {
	if len(o.Secret) < 16 && o.ControlPlane == "" {
		return errors.New("an agent secret of at least 16 characters is required (--secret-file or WRENN_AGENT_SECRET): without it anyone who reaches the agent runs code on this host")
	}
	if os.Geteuid() != 0 {
		return errors.New("the agent must run as root: it creates network namespaces, taps and cgroups")
	}
	if o.NetworkSlots < 0 || o.NetworkSlots > network.PartitionSlots {
		return fmt.Errorf("--network-slots %d: use 1 to %d, or 0 for all", o.NetworkSlots, network.PartitionSlots)
	}
	if o.ImagesDir == "" {
		o.ImagesDir = filepath.Join(o.StateDir, "images")
	}
	if o.ConsoleMaxBytes > 0 {
		console.MaxBytes = o.ConsoleMaxBytes
	}
	if o.Runtime == "auto" || o.Runtime == "" {
		o.Runtime = chooseRuntime(o)
	}
	var driver runtime.Driver
	switch o.Runtime {
	case "qemu":
		d, err := qemu.NewDriver(o.Accel)
		if err != nil {
			return err
		}
		d.Log = o.Log
		driver = d
	case "firecracker":
		d, err := firecracker.NewDriver(o.FirecrackerBin)
		if err != nil {
			return err
		}
		driver = d
	case "gvisor":
		d, err := gvisor.NewDriver(o.RunscBin, o.StateDir)
		if err != nil {
			return err
		}
		driver = d
	default:
		return fmt.Errorf("unknown runtime %q: use qemu, firecracker or gvisor", o.Runtime)
	}
	accel, why := driver.Accelerator()
	o.Log.Info("runtime", "driver", driver.Name(), "accelerator", accel, "reason", why)

	netm, err := network.NewManager(o.NetworkPartition, o.NetworkSlots, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err := netm.Close(); err != nil {
			o.Log.Error("remove host network rules", "err", err)
		}
	}()
	if o.DNS == nil {
		o.DNS = hostDNS()
	}
	// The guests' name servers stay reachable whatever the egress rules
	// block (a resolver on the LAN is a private address).
	egress, err := egressPolicy(o, o.DNS)
	if err != nil {
		return err
	}
	if err := netm.SetEgress(egress); err != nil {
		return err
	}
	mem := hostMemMiB()
	mcfg := sandbox.Config{
		StateDir: o.StateDir, ImagesDir: o.ImagesDir, Driver: driver, Net: netm, Log: o.Log,
		HostCPUs: goruntime.NumCPU(), HostMemMiB: mem, MaxSandboxes: o.MaxSandboxes, DNS: o.DNS,
		ReadyTimeout: o.ReadyTimeout, DestroyOnClose: o.DestroyOnStop,
	}
	changes := newChangeReporter()
	if o.ControlPlane != "" {
		mcfg.Changed = changes.note
	}
	m, err := sandbox.NewManager(mcfg)
	if err != nil {
		return err
	}
	defer m.Close()

	if o.HostID == "" {
		o.HostID, _ = os.Hostname()
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.Listen, err)
	}
	defer ln.Close()
	svc := &Service{M: m, HostID: o.HostID, Log: o.Log, ImagesDir: o.ImagesDir}
	svc.Envd, svc.Init = GuestBinaries()
	am := newAgentMetrics(m, o.NetworkSlots)
	ready := &readiness{controlPlane: o.ControlPlane != ""}
	if o.MetricsListen != "" {
		ms, err := metrics.Serve(nil, o.MetricsListen, am.reg, ready.check, o.Log)
		if err != nil {
			return err
		}
		mctx, stopMetrics := context.WithCancel(context.WithoutCancel(ctx))
		mdone := make(chan struct{})
		go func() {
			defer close(mdone)
			if err := ms.Serve(mctx); err != nil {
				o.Log.Error("metrics listener stopped", "err", err)
			}
		}()
		defer func() {
			stopMetrics()
			<-mdone
		}()
		o.Log.Info("metrics listening", "addr", ms.Addr())
	}
	var idn *identity
	if o.ControlPlane != "" {
		if o.Advertise == "" {
			o.Advertise = ln.Addr().String()
			if ap, err := netip.ParseAddrPort(o.Advertise); err != nil || ap.Addr().IsUnspecified() {
				return fmt.Errorf("listening on %s: pass --advertise host:port, the address the control plane reaches this agent at", o.Advertise)
			}
		}
		var cpRoots *x509.CertPool
		if o.ControlPlaneCA != "" {
			if cpRoots, err = LoadRoots(o.ControlPlaneCA); err != nil {
				return fmt.Errorf("--control-plane-ca-file: %w", err)
			}
		}
		creds, ident, err := joinControlPlane(ctx, o.StateDir, o.ControlPlane, o.RegistrationToken, o.HostID, o.Advertise, cpRoots)
		if err != nil {
			return err
		}
		o.Log.Info("registered with the control plane", "control_plane", creds.ControlPlane, "host", creds.HostID, "advertise", o.Advertise,
			"certificate_not_after", ident.cert.Load().Leaf.NotAfter)
		if creds.Secret != "" {
			o.Log.Warn("the control plane serves plain HTTP: this host authenticates its reports with a secret, for development only")
		}
		idn = ident
		hbCtx, stopHeartbeats := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { heartbeat(hbCtx, o.Log, creds, ident, o.Advertise, m, ready) })
		wg.Go(func() { changes.run(hbCtx, o.Log, creds, ident) })
		wg.Go(func() {
			ident.keepRenewed(hbCtx, o.Log, cpclient.New(creds.ControlPlane, ident.client(30*time.Second)), creds.Secret, o.HostID)
		})
		defer func() {
			stopHeartbeats()
			wg.Wait()
		}()
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second}
	srv.Handler = agentHandler(svc, idn, o.Secret, ready, am)
	if idn != nil {
		// Mutual TLS with the control plane (HTTP/2 or HTTP/1.1 by ALPN):
		// only the control plane's certificate from this host's CA gets
		// in, and the host's current certificate is served.
		ln = tls.NewListener(ln, idn.serverTLS())
	} else {
		// Alone: h2c, and callers present the agent's secret.
		var protocols http.Protocols
		protocols.SetHTTP1(true)
		protocols.SetUnencryptedHTTP2(true)
		srv.Protocols = &protocols
	}
	o.Log.Info("agent listening", "addr", ln.Addr().String(), "tls", idn != nil, "state_dir", o.StateDir, "images", o.ImagesDir, "templates", m.Templates())
	if o.Ready != nil {
		o.Ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	if o.DestroyOnStop {
		o.Log.Info("agent stopping: destroying sandboxes")
	} else {
		o.Log.Info("agent stopping: pausing sandboxes; the next start takes them back")
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return nil
}

// agentHandler is the agent's API, its guest proxy and its probes. With
// an identity, the TLS layer has authenticated the control plane;
// without, callers present secret.
func agentHandler(svc *Service, idn *identity, secret string, ready *readiness, am *agentMetrics) http.Handler {
	mux := http.NewServeMux()
	path, h := Handler(svc, connect.WithInterceptors(am.interceptor()))
	if idn == nil {
		h = requireBearer(secret, svc.Log, h)
	} else {
		secret = ""
	}
	mux.Handle(path, h)
	// Probes: up, and ready to take sandboxes.
	mux.Handle("GET /healthz", metrics.Healthz())
	mux.Handle("GET /readyz", metrics.Readyz(ready.check, svc.Log))
	return am.handler(withGuestProxy(svc.M, secret, svc.Log, mux))
}

// chooseRuntime picks the best runtime this host has among those whose
// guests Wrenn's tests boot: QEMU on a KVM that runs standard guests;
// otherwise gVisor, which needs no KVM and starts in a few hundred
// milliseconds; QEMU under TCG last. Firecracker has never run a guest
// (see its package), so it runs only when asked for by name.
func chooseRuntime(o Options) string {
	accel, _, err := qemu.ChooseAccel(o.Accel)
	if err == nil && accel == qemu.AccelKVM {
		return "qemu"
	}
	if _, err := exec.LookPath(firstNonEmpty(o.RunscBin, "runsc")); err == nil {
		return "gvisor"
	}
	return "qemu"
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func hostMemMiB() int {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb int
		if n, _ := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); n == 1 {
			return kb / 1024
		}
	}
	return 0
}

// hostDNS is the host's resolvers that a guest can reach (not loopback).
func hostDNS() []netip.Addr {
	b, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil && a.Is4() && !a.IsLoopback() {
				out = append(out, a)
			}
		}
	}
	return out
}

// egressPolicy is what sandboxes may not reach from this host: the
// defaults, what the operator adds, less what the operator allows; the
// resolvers sandboxes are given stay reachable on port 53.
func egressPolicy(o Options, dns []netip.Addr) (network.EgressPolicy, error) {
	allow, err := network.ParsePrefixes(o.EgressAllow)
	if err != nil {
		return network.EgressPolicy{}, fmt.Errorf("--egress-allow: %w", err)
	}
	extra, err := network.ParsePrefixes(o.EgressBlock)
	if err != nil {
		return network.EgressPolicy{}, fmt.Errorf("--egress-block: %w", err)
	}
	block := append(slices.Clone(network.DefaultEgressBlock), extra...)
	o.Log.Info("sandbox egress", "blocked", block, "allowed", allow, "dns", dns)
	return network.EgressPolicy{Block: block, Allow: allow, DNS: dns}, nil
}
