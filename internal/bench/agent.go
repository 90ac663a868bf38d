package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/internal/agentclient"
	"git.omukk.dev/wrenn/sandbox/internal/guestimage"
	"git.omukk.dev/wrenn/sandbox/internal/hostagent"
	"git.omukk.dev/wrenn/sandbox/internal/runtime/qemu"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
	"git.omukk.dev/wrenn/sandbox/proto/hostagent/v1/hostagentv1connect"
)

// AgentOptions configures the agent benchmark.
type AgentOptions struct {
	Envd, Init string
	Accel      string
	Runtimes   []string // default: qemu, and gvisor where runsc is installed
	Serial     int      // serial creates
	Concurrent int      // creates at once
	Log        io.Writer
}

// startAgent runs a host agent in this process on state, and returns a
// client of it and the function that stops it.
func startAgent(ctx context.Context, state, rt, accel string) (hostagentv1connect.HostAgentServiceClient, func(), error) {
	secret := "bench-secret-0123456789"
	ready := make(chan string, 1)
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- hostagent.Run(actx, hostagent.Options{Listen: "127.0.0.1:0", StateDir: state, Secret: secret, Runtime: rt, Accel: accel, Ready: ready, DestroyOnStop: true, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}()
	select {
	case addr := <-ready:
		stop := func() {
			cancel()
			<-done
		}
		return agentclient.New(addr, secret), stop, nil
	case err := <-done:
		cancel()
		return nil, nil, err
	}
}

// Agent runs an agent in this process on a temporary state directory and
// measures sandbox creation through its API, against a bare QEMU boot of the
// same image measured in the same run.
func Agent(ctx context.Context, o AgentOptions) ([]Row, error) {
	if o.Serial == 0 {
		o.Serial = 10
	}
	if o.Concurrent == 0 {
		o.Concurrent = 8
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	state, err := os.MkdirTemp("", "wrenn-bench-agent-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(state)
	if _, err := guestimage.Build(ctx, guestimage.Options{Name: "minimal", Dir: filepath.Join(state, "images"), Envd: o.Envd, Init: o.Init, Progress: o.Log}); err != nil {
		return nil, err
	}
	if len(o.Runtimes) == 0 {
		o.Runtimes = []string{"qemu"}
		if _, err := exec.LookPath("runsc"); err == nil {
			o.Runtimes = append(o.Runtimes, "gvisor")
		}
	}
	// Baseline: QEMU booting the same image straight to envd, no agent.
	fmt.Fprintln(o.Log, "bare QEMU boots…")
	ns, hc, cleanup, err := bootNet()
	if err != nil {
		return nil, err
	}
	defer cleanup()
	accel, _, _ := qemu.ChooseAccel(o.Accel)
	var bare []time.Duration
	for range o.Serial {
		d, err := timeBoot(ctx, filepath.Join(state, "images", "minimal"), state, ns, accel, hc)
		if err != nil {
			return nil, err
		}
		bare = append(bare, d)
	}
	var rows []Row
	for _, rt := range o.Runtimes {
		r, err := agentRuntime(ctx, o, state, rt, bare)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rt, err)
		}
		rows = append(rows, r...)
	}
	return rows, nil
}

func agentRuntime(ctx context.Context, o AgentOptions, state, rt string, bare []time.Duration) ([]Row, error) {
	client, stop, err := startAgent(ctx, state, rt, o.Accel)
	if err != nil {
		return nil, err
	}
	defer stop()
	info, err := client.HostInfo(ctx, connect.NewRequest(&pb.HostInfoRequest{}))
	if err != nil {
		return nil, err
	}
	runtimeDesc := fmt.Sprintf("%s/%s", info.Msg.Runtime, info.Msg.Accelerator)

	create := func(id string) (time.Duration, error) {
		t0 := time.Now()
		_, err := client.CreateSandbox(ctx, connect.NewRequest(&pb.CreateSandboxRequest{SandboxId: id, Template: "minimal", TimeoutSeconds: 600}))
		return time.Since(t0), err
	}
	destroy := func(id string) error {
		_, err := client.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id}))
		return err
	}

	var serial []time.Duration
	for i := range o.Serial {
		fmt.Fprintf(o.Log, "%s: create %d/%d…\n", rt, i+1, o.Serial)
		id := fmt.Sprintf("serial%d", i)
		d, err := create(id)
		if err != nil {
			return nil, err
		}
		serial = append(serial, d)
		if err := destroy(id); err != nil {
			return nil, err
		}
	}

	fmt.Fprintf(o.Log, "%d concurrent creates…\n", o.Concurrent)
	var wg sync.WaitGroup
	conc := make([]time.Duration, o.Concurrent)
	errs := make([]error, o.Concurrent)
	t0 := time.Now()
	for i := range o.Concurrent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conc[i], errs[i] = create(fmt.Sprintf("conc%d", i))
		}()
	}
	wg.Wait()
	total := time.Since(t0)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	time.Sleep(5 * time.Second) // idle
	var rss, used []float64
	for i := range o.Concurrent {
		m, err := client.GetSandboxMetrics(ctx, connect.NewRequest(&pb.GetSandboxMetricsRequest{SandboxId: fmt.Sprintf("conc%d", i)}))
		if err != nil || m.Msg.Latest == nil {
			return nil, fmt.Errorf("metrics: %v", err)
		}
		rss = append(rss, float64(m.Msg.Latest.HostRssBytes)/(1<<20))
		used = append(used, float64(m.Msg.Latest.MemUsedBytes)/(1<<20))
	}
	for i := range o.Concurrent {
		if err := destroy(fmt.Sprintf("conc%d", i)); err != nil {
			return nil, err
		}
	}
	slowest := Percentile(conc, 100)
	return []Row{
		{Metric: fmt.Sprintf("create to ready, serial (median of %d, %s)", o.Serial, runtimeDesc), Wrenn: Ms(Median(serial)), Baseline: "bare QEMU boot to envd: " + Ms(Median(bare)), Ratio: fmt.Sprintf("%.2f× the bare boot", float64(Median(serial))/float64(Median(bare))), Target: map[string]string{"gvisor": "< 500 ms"}[rt]},
		{Metric: fmt.Sprintf("create to ready, serial (p95 of %d)", o.Serial), Wrenn: Ms(Percentile(serial, 95)), Baseline: "bare QEMU: " + Ms(Percentile(bare, 95))},
		{Metric: fmt.Sprintf("%d concurrent creates (%s)", o.Concurrent, runtimeDesc), Wrenn: fmt.Sprintf("all ready in %s, slowest %s", Ms(total), Ms(slowest)), Ratio: fmt.Sprintf("%.2f creates/s", float64(o.Concurrent)/total.Seconds())},
		{Metric: fmt.Sprintf("host memory per idle sandbox (256 MiB guest, %s)", runtimeDesc), Wrenn: fmt.Sprintf("host RSS %.0f MiB", MedianFloat(rss)), Baseline: fmt.Sprintf("guest's own use %.0f MiB", MedianFloat(used)), Ratio: fmt.Sprintf("beyond guest use: %.0f MiB", MedianFloat(rss)-MedianFloat(used))},
	}, nil
}
