package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/guestimage"
	"git.omukk.dev/wrenn/sandbox/internal/network"
	"git.omukk.dev/wrenn/sandbox/internal/runtime/qemu"
)

// BootOptions configures the boot benchmark.
type BootOptions struct {
	Envd, Init string
	Accel      string // auto, kvm or tcg
	Runs       int
	Base       bool // also build (and time) the base image
	Log        io.Writer
}

// Boot builds the images, then boots the minimal image and the busybox-only
// baseline alternately, timing QEMU start to the first HTTP answer on 49983.
func Boot(ctx context.Context, o BootOptions) ([]Row, error) {
	if o.Runs == 0 {
		o.Runs = 5
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	accel, why, err := qemu.ChooseAccel(o.Accel)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "wrenn-bench-boot-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	var rows []Row
	built := map[string]*guestimage.Result{}
	kinds := []string{"minimal", guestimage.BaselineKind}
	if o.Base {
		kinds = append(kinds, "base")
	}
	for _, kind := range kinds {
		res, err := guestimage.Build(ctx, guestimage.Options{Name: kind, Dir: dir, Envd: o.Envd, Init: o.Init, Force: true, Progress: o.Log})
		if err != nil {
			return nil, err
		}
		built[kind] = res
		if kind == guestimage.BaselineKind {
			continue
		}
		m := res.Manifest
		rows = append(rows, Row{
			Metric: "build of " + kind,
			Wrenn:  fmt.Sprintf("%.1f s", res.Duration.Seconds()),
			Target: map[string]string{"minimal": "seconds, no network", "base": "(debootstrap, network)"}[kind],
		}, Row{
			Metric: kind + " image sizes",
			Wrenn:  fmt.Sprintf("rootfs %s, initramfs %s, vmlinux %s", humanMiB(m.Files[guestimage.FileRootfs].Size), humanMiB(m.Files[guestimage.FileInitramfs].Size), humanMiB(m.Files[guestimage.FileKernel].Size)),
			Target: map[string]string{"minimal": "rootfs < 40 MiB", "base": ""}[kind],
		})
	}

	ns, client, cleanup, err := bootNet()
	if err != nil {
		return nil, err
	}
	defer cleanup()

	var wrenn, baseline []time.Duration
	for i := range o.Runs {
		for _, kind := range []string{guestimage.BaselineKind, "minimal"} {
			fmt.Fprintf(o.Log, "boot %d/%d: %s\n", i+1, o.Runs, kind)
			d, err := timeBoot(ctx, built[kind].Dir, dir, ns, accel, client)
			if err != nil {
				return nil, fmt.Errorf("boot %s: %w", kind, err)
			}
			if kind == "minimal" {
				wrenn = append(wrenn, d)
			} else {
				baseline = append(baseline, d)
			}
		}
	}
	ratio := float64(Median(wrenn)) / float64(Median(baseline))
	rows = append([]Row{{
		Metric:   fmt.Sprintf("boot to envd ready, minimal (median of %d, %s: %s)", o.Runs, accel, why),
		Wrenn:    Ms(Median(wrenn)),
		Baseline: "busybox init + httpd: " + Ms(Median(baseline)),
		Ratio:    fmt.Sprintf("%.2f×", ratio),
		Target:   "≤ 1.5×",
	}}, rows...)
	return rows, nil
}

// bootNet is a namespace with tap0 where guests booted outside an agent
// answer at 169.254.0.21, and an HTTP client that reaches them.
func bootNet() (string, *http.Client, func(), error) {
	ns := fmt.Sprintf("wrenn-bench-%d", os.Getpid())
	if err := network.CreateNamespace(ns); err != nil {
		return "", nil, nil, err
	}
	cleanup := func() { _ = network.DeleteNamespace(ns) }
	if err := network.AddTap(ns, "tap0", netip.MustParsePrefix("169.254.0.22/30")); err != nil {
		cleanup()
		return "", nil, nil, err
	}
	client := &http.Client{Transport: &http.Transport{DialContext: network.Dialer(ns), DisableKeepAlives: true}, Timeout: time.Second}
	return ns, client, cleanup, nil
}

func humanMiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func timeBoot(ctx context.Context, image, work, ns, accel string, client *http.Client) (time.Duration, error) {
	disk := filepath.Join(work, "disk.ext4")
	if out, err := exec.CommandContext(ctx, "cp", "--reflink=auto", "--sparse=always", filepath.Join(image, guestimage.FileRootfs), disk).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("copy disk: %v: %s", err, out)
	}
	defer os.Remove(disk)
	tap, err := network.OpenTap(ns, "tap0")
	if err != nil {
		return 0, err
	}
	defer tap.Close()
	vm := &qemu.VM{
		Accel: accel, VCPUs: 1, MemoryMiB: 256,
		Kernel: filepath.Join(image, guestimage.FileKernel), Initrd: filepath.Join(image, guestimage.FileInitramfs),
		Disk: disk, TapFile: tap, QMPSocket: filepath.Join(work, "qmp.sock"), ConsoleLog: filepath.Join(work, "console.log"),
		Cmdline: "wrenn.ip=169.254.0.21/30 wrenn.gw=169.254.0.22",
	}
	t0 := time.Now()
	in, err := qemu.Start(ctx, vm)
	if err != nil {
		return 0, err
	}
	defer in.Kill()
	deadline := t0.Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-in.Done():
			return 0, fmt.Errorf("VM exited: %v", in.Err())
		default:
		}
		resp, err := client.Get("http://169.254.0.21:49983/health")
		if err == nil {
			resp.Body.Close()
			return time.Since(t0), nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, fmt.Errorf("no HTTP answer within 2 minutes")
}
