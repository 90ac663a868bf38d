// Command wrenn-dist builds the release artifacts (`make dist`): static
// binaries per architecture, the Debian packages and SHA256SUMS (see
// internal/dist). It is a build tool, not shipped.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/dist"
)

// installedRunsc is where scripts/setup puts the runsc it builds, and the
// file naming its version.
const (
	installedRunsc        = "/usr/local/bin/runsc"
	installedRunscVersion = "/usr/local/lib/wrenn-runsc.version"
)

func main() {
	var o dist.Options
	flag.StringVar(&o.Out, "out", "dist", "directory for the artifacts")
	flag.StringVar(&o.Version, "version", "", "package version (default: from the last commit, 0.1.0~git<time>.<hash>)")
	arches := flag.String("arch", strings.Join(dist.Arches, ","), "architectures, comma-separated")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o, strings.Split(*arches, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "wrenn-dist:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o dist.Options, arches []string) error {
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return fmt.Errorf("run from the repository: %w", err)
	}
	o.Root = strings.TrimSpace(string(root))
	o.Arches = arches
	commit, err := exec.Command("git", "-C", o.Root, "log", "-1", "--format=%ct %h").Output()
	if err != nil {
		return fmt.Errorf("git log: %w", err)
	}
	f := strings.Fields(string(commit))
	secs, _ := strconv.ParseInt(f[0], 10, 64)
	o.MTime = time.Unix(secs, 0).UTC()
	if o.Version == "" {
		o.Version = "0.1.0~git" + o.MTime.Format("20060102150405") + "." + f[1]
	}
	pin, err := os.ReadFile(filepath.Join(o.Root, "scripts", "runsc.version"))
	if err != nil {
		return err
	}
	o.RunscVersion = strings.TrimSpace(string(pin))
	// The runsc scripts/setup built from the same pin is this machine's
	// architecture's: no need to build it again.
	if v, err := os.ReadFile(installedRunscVersion); err == nil && strings.TrimSpace(string(v)) == o.RunscVersion {
		o.Runsc = map[string]string{runtime.GOARCH: installedRunsc}
	}
	o.Log = os.Stderr
	start := time.Now()
	arts, err := dist.Build(ctx, o)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "artifact\tsize (MiB)\t")
	for _, a := range arts {
		fmt.Fprintf(tw, "%s\t%.1f\t\n", a.Path, float64(a.Size)/(1<<20))
	}
	tw.Flush()
	fmt.Printf("make dist took %s\n", time.Since(start).Round(time.Second))
	return nil
}
