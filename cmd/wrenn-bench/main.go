// Command wrenn-bench runs Wrenn's benchmarks (internal/bench): each prints
// a table of medians beside a baseline measured in the same run. It is a
// binary of its own so that the shipped ones (wrenn, control-plane, envd)
// do not link the test harnesses the benchmarks start; `wrenn bench` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"git.omukk.dev/wrenn/sandbox/internal/bench"
)

const usage = `usage: wrenn-bench <benchmark> [flags]

benchmarks:
  envd [flags]     measure envd against baselines from the same run
  boot [flags]     image builds, sizes, and boot-to-ready against a busybox-only boot (root)
  agent [flags]    sandbox create latency and concurrency through a host agent (root)
  snapshot [flags] pause and resume latency, snapshot bytes, concurrent resumes (root)
  cp [flags]       control plane: list and auth latency, what it adds to a create (root)
  sdk [flags]      the E2B SDK against wrenn dev: create from a snapshot to first command (root)
  sdks [flags]     the Go SDK beside the JS SDK on one wrenn dev: create, run, 64 MiB files, PTY (root)
  templates [flags] template builds cold and cached against the steps by hand; create from a template against from base (root)
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case bench.PlainServerArg:
		err = plainServer(os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		err = benchCmd(ctx, os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "wrenn-bench:", err)
		os.Exit(1)
	}
}

func benchCmd(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "boot" {
		fs := flag.NewFlagSet("bench boot", flag.ExitOnError)
		var o bench.BootOptions
		fs.StringVar(&o.Envd, "envd", "bin/envd", "envd binary")
		fs.StringVar(&o.Init, "init", "bin/wrenn-init", "wrenn-init binary")
		fs.StringVar(&o.Accel, "accel", "auto", "accelerator: auto, kvm or tcg")
		fs.IntVar(&o.Runs, "runs", 5, "boots of each image")
		fs.BoolVar(&o.Base, "base", false, "also build and time the base image (debootstrap: minutes, needs the Debian mirror)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		o.Log = os.Stderr
		rows, err := bench.Boot(ctx, o)
		if err != nil {
			return err
		}
		bench.Print(os.Stdout, "guest images and boot (QEMU microvm)", rows)
		return nil
	}
	if len(args) > 0 && args[0] == "agent" {
		fs := flag.NewFlagSet("bench agent", flag.ExitOnError)
		var o bench.AgentOptions
		fs.StringVar(&o.Envd, "envd", "bin/envd", "envd binary")
		fs.StringVar(&o.Init, "init", "bin/wrenn-init", "wrenn-init binary")
		fs.StringVar(&o.Accel, "accel", "auto", "accelerator: auto, kvm or tcg")
		fs.IntVar(&o.Serial, "serial", 10, "serial creates")
		fs.IntVar(&o.Concurrent, "concurrent", 8, "concurrent creates")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		o.Log = os.Stderr
		rows, err := bench.Agent(ctx, o)
		if err != nil {
			return err
		}
		bench.Print(os.Stdout, "host agent: sandbox creation", rows)
		return nil
	}
	if len(args) > 0 && args[0] == "snapshot" {
		fs := flag.NewFlagSet("bench snapshot", flag.ExitOnError)
		var o bench.SnapshotOptions
		fs.StringVar(&o.Envd, "envd", "bin/envd", "envd binary")
		fs.StringVar(&o.Init, "init", "bin/wrenn-init", "wrenn-init binary")
		fs.StringVar(&o.Accel, "accel", "auto", "accelerator: auto, kvm or tcg")
		fs.IntVar(&o.Runs, "runs", 5, "pause/resume cycles")
		fs.IntVar(&o.Concurrent, "concurrent", 8, "sandboxes resumed at once")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		o.Log = os.Stderr
		rows, err := bench.Snapshot(ctx, o)
		if err != nil {
			return err
		}
		bench.Print(os.Stdout, "pause and resume (qemu: memory file + device state; gvisor: runsc checkpoint)", rows)
		return nil
	}
	if len(args) > 0 && args[0] == "cp" {
		fs := flag.NewFlagSet("bench cp", flag.ExitOnError)
		var o bench.CPOptions
		fs.StringVar(&o.Envd, "envd", "bin/envd", "envd binary")
		fs.StringVar(&o.Init, "init", "bin/wrenn-init", "wrenn-init binary")
		fs.StringVar(&o.Runtime, "runtime", "", "the agent's runtime for the create overhead (default gvisor where installed, else qemu)")
		fs.IntVar(&o.Sandboxes, "sandboxes", 1000, "sandboxes in the team for the list benchmark")
		fs.IntVar(&o.Creates, "creates", 10, "creates each way for the create overhead")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		o.Log = os.Stderr
		rows, err := bench.ControlPlane(ctx, o)
		if err != nil {
			return err
		}
		bench.Print(os.Stdout, "control plane (PostgreSQL on this machine; medians)", rows)
		return nil
	}
	if len(args) > 0 && args[0] == "sdk" {
		fs := flag.NewFlagSet("bench sdk", flag.ExitOnError)
		var o bench.SDKOptions
		fs.StringVar(&o.Envd, "envd", "bin/envd", "envd binary")
		fs.StringVar(&o.Init, "init", "bin/wrenn-init", "wrenn-init binary")
		fs.StringVar(&o.Runtime, "runtime", "auto", "the agent's runtime")
		fs.StringVar(&o.Script, "script", "tests/e2b/platform-bench.mjs", "the SDK benchmark script (npm ci in its directory first)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		o.Out = os.Stdout
		return bench.SDK(ctx, o)
	}
	if len(args) > 0 && args[0] == "templates" {
		fs := flag.NewFlagSet("bench templates", flag.ExitOnError)
		var o bench.TemplateOptions
		fs.StringVar(&o.Envd, "envd", "bin/envd", "envd binary")
		fs.StringVar(&o.Init, "init", "bin/wrenn-init", "wrenn-init binary")
		fs.StringVar(&o.Runtime, "runtime", "gvisor", "the agent's runtime: gvisor or qemu")
		fs.StringVar(&o.ImagesDir, "images-dir", "", "reuse guest images from this directory (default: build them; base takes minutes)")
		fs.StringVar(&o.Script, "script", "tests/e2b/template-bench.mjs", "the benchmark script (npm ci in its directory first)")
		fs.IntVar(&o.Runs, "runs", 3, "runs of each measurement")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		o.Out = os.Stdout
		return bench.Templates(ctx, o)
	}
	if len(args) > 0 && args[0] == "sdks" {
		fs := flag.NewFlagSet("sdks", flag.ExitOnError)
		var o bench.SDKsOptions
		fs.StringVar(&o.Envd, "envd", "bin/envd", "envd binary")
		fs.StringVar(&o.Init, "init", "bin/wrenn-init", "wrenn-init binary")
		fs.StringVar(&o.Runtime, "runtime", "auto", "the agent's runtime")
		fs.StringVar(&o.Script, "script", "tests/e2b/sdk-compare.mjs", "the JS SDK's half (npm ci in its directory first)")
		fs.IntVar(&o.Creates, "creates", 5, "creates to the first command")
		fs.IntVar(&o.Runs, "runs", 20, "run('true') round trips")
		fs.IntVar(&o.FileRuns, "file-runs", 3, "file transfers of each kind and PTY bursts")
		fs.IntVar(&o.FileMiB, "file-mib", 64, "file size in MiB")
		fs.IntVar(&o.PtyMiB, "pty-mib", 16, "random MiB behind the PTY burst (sent as base64 text)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		o.Log = os.Stderr
		rows, err := bench.SDKs(ctx, o)
		if err != nil {
			return err
		}
		bench.Print(os.Stdout, "Go SDK (pkg/sdk, Wrenn's API) beside the JS SDK (e2b, the E2B API) on one wrenn dev", rows)
		return nil
	}
	if len(args) == 0 || args[0] != "envd" {
		return fmt.Errorf("usage: wrenn-bench envd|boot|agent|snapshot|cp|sdk|sdks|templates [flags]")
	}
	fs := flag.NewFlagSet("bench envd", flag.ExitOnError)
	var o bench.EnvdOptions
	fs.StringVar(&o.EnvdBin, "envd", "bin/envd", "envd binary to start in --local mode")
	fs.StringVar(&o.Dir, "dir", "", "directory for transferred files (default: the system temp dir)")
	fs.IntVar(&o.Runs, "runs", 200, "process round trips")
	fs.IntVar(&o.FileMiB, "file-mib", 256, "transfer size in MiB")
	fs.IntVar(&o.FileRuns, "file-runs", 5, "transfers of each kind")
	fs.IntVar(&o.PtyMB, "pty-mb", 100, "PTY burst in MB")
	fs.IntVar(&o.BigMiB, "big-mib", 1024, "size of the upload and download over which envd's peak memory is measured")
	fs.StringVar(&o.SDKScript, "sdk-script", "tests/e2b/bench.mjs", "the E2B SDK benchmark (npm ci in its directory first); empty skips it")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	o.Log = os.Stderr
	rows, err := bench.Envd(ctx, o)
	if err != nil {
		return err
	}
	bench.Print(os.Stdout, "envd (local mode, loopback; Go's binary Connect client, then the E2B SDK's rows)", rows)
	return nil
}

func plainServer(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: %s PORT DIR", bench.PlainServerArg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+args[0])
	if err != nil {
		return err
	}
	return bench.PlainServer(ln, args[1])
}
