// Command wrenn is Wrenn's command-line tool: `wrenn dev` (the whole
// platform on this machine), guest images, and benchmarks.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/bench"
	"git.omukk.dev/wrenn/sandbox/internal/devstack"
	"git.omukk.dev/wrenn/sandbox/internal/guestimage"
)

const usage = `usage: wrenn <command>

commands:
  dev [flags]            run PostgreSQL, the control plane, the sandbox proxy and an agent on this machine (root)
  image build <name>     build a guest image (minimal, base, code-interpreter) [--dir, --force, ...]
  image verify <name>    check an image's files against its manifest
  image list             list built images
  bench envd [flags]     measure envd against baselines from the same run
  bench boot [flags]     image builds, sizes, and boot-to-ready against a busybox-only boot (root)
  bench agent [flags]    sandbox create latency and concurrency through a host agent (root)
  bench snapshot [flags] pause and resume latency, snapshot bytes, concurrent resumes (root)
  bench cp [flags]       control plane: list and auth latency, what it adds to a create (root)
  bench sdk [flags]      the E2B SDK against wrenn dev: create from a snapshot to first command (root)
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
	case "bench":
		err = benchCmd(ctx, os.Args[2:])
	case "image":
		err = imageCmd(ctx, os.Args[2:])
	case "dev":
		err = devCmd(ctx, os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "wrenn: unknown command %q\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "wrenn:", err)
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
	if len(args) == 0 || args[0] != "envd" {
		return fmt.Errorf("usage: wrenn bench envd|boot|agent|snapshot|cp|sdk [flags]")
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

func imageCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: wrenn image build|verify|list")
	}
	fs := flag.NewFlagSet("image "+args[0], flag.ExitOnError)
	dir := fs.String("dir", defaultImagesDir(), "images directory (the agent's <state dir>/images)")
	var o guestimage.Options
	fs.StringVar(&o.Envd, "envd", "bin/envd", "envd binary to install")
	fs.StringVar(&o.Init, "init", "bin/wrenn-init", "wrenn-init binary to install")
	fs.StringVar(&o.CodeInterpreter, "code-interpreter", "bin/code-interpreter", "code-interpreter binary to install (code-interpreter image)")
	fs.StringVar(&o.KernelVersion, "kernel", "", "kernel version from /boot (default: the newest)")
	fs.StringVar(&o.Mirror, "mirror", "", "Debian mirror for the base image (default http://deb.debian.org/debian)")
	fs.BoolVar(&o.Force, "force", false, "rebuild even when the image is up to date")
	switch args[0] {
	case "build", "verify":
		if len(args) < 2 {
			return fmt.Errorf("usage: wrenn image %s <%s> [flags]", args[0], strings.Join(guestimage.Kinds, "|"))
		}
		if err := fs.Parse(args[2:]); err != nil {
			return err
		}
		if args[0] == "verify" {
			m, err := guestimage.Verify(filepath.Join(*dir, args[1]))
			if err != nil {
				return err
			}
			fmt.Printf("%s: ok (kernel %s, built %s)\n", args[1], m.Kernel, m.Created.Format(time.RFC3339))
			return nil
		}
		o.Name, o.Dir, o.Progress = args[1], *dir, os.Stderr
		res, err := guestimage.Build(ctx, o)
		if err != nil {
			return fmt.Errorf("build image %s: %w", args[1], err)
		}
		fmt.Println(res.Dir)
		return nil
	case "list":
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		entries, err := os.ReadDir(*dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			status := "ok"
			m, err := guestimage.Verify(filepath.Join(*dir, e.Name()))
			if err != nil {
				status = err.Error()
			} else {
				status = fmt.Sprintf("ok, kernel %s, rootfs %.1f MiB", m.Kernel, float64(m.Files[guestimage.FileRootfs].Size)/(1<<20))
			}
			fmt.Printf("%s\t%s\n", e.Name(), status)
		}
		return nil
	}
	return fmt.Errorf("unknown image command %q", args[0])
}

func defaultImagesDir() string {
	if d := os.Getenv("WRENN_STATE_DIR"); d != "" {
		return filepath.Join(d, "images")
	}
	return guestimage.DefaultDir
}

func devCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dev", flag.ExitOnError)
	exe, _ := os.Executable()
	binDir := filepath.Dir(exe)
	var o devstack.Options
	fs.StringVar(&o.DataDir, "data-dir", "/var/lib/wrenn-dev", "where PostgreSQL, the agent, images and credentials live (kept between runs)")
	fs.StringVar(&o.ImagesDir, "images-dir", "", "guest images (default <data-dir>/images)")
	fs.StringVar(&o.Runtime, "runtime", "auto", "auto (qemu on a KVM that runs standard guests, else gvisor, else qemu/TCG), qemu, gvisor or firecracker (only when named)")
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:8080", "control plane API")
	fs.StringVar(&o.ProxyListen, "proxy-listen", "127.0.0.1:8081", "sandbox proxy")
	fs.StringVar(&o.AgentListen, "agent-listen", "127.0.0.1:7070", "host agent")
	fs.BoolVar(&o.Base, "base", false, "also build the base image (Debian with python3, git, ...; debootstrap takes minutes)")
	fs.StringVar(&o.Envd, "envd", filepath.Join(binDir, "envd"), "envd binary for images")
	fs.StringVar(&o.Init, "init", filepath.Join(binDir, "wrenn-init"), "wrenn-init binary for images")
	fs.BoolVar(&o.CodeInterpreter, "code-interpreter", false, "also build the code-interpreter image (base + Jupyter kernels; template code-interpreter-v1 of E2B's code-interpreter SDK)")
	fs.StringVar(&o.CodeInterpreterBin, "code-interpreter-bin", filepath.Join(binDir, "code-interpreter"), "code-interpreter binary for the code-interpreter image")
	verbose := fs.Bool("verbose", false, "log at info level (default: warnings only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	o.Out = os.Stdout
	o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	return devstack.Run(ctx, o)
}
