// Command wrenn is Wrenn's command-line tool. Today it runs benchmarks;
// `wrenn dev` and `wrenn image build` are still to come and say so.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"

	"git.omukk.dev/wrenn/sandbox/internal/bench"
)

const usage = `usage: wrenn <command>

commands:
  bench envd [flags]     measure envd against baselines from the same run
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	switch os.Args[1] {
	case bench.PlainServerArg:
		err = plainServer(os.Args[2:])
	case "bench":
		err = benchCmd(ctx, os.Args[2:])
	case "dev", "image":
		err = fmt.Errorf("'wrenn %s' is not implemented yet (see the README's status section)", os.Args[1])
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
	if len(args) == 0 || args[0] != "envd" {
		return fmt.Errorf("usage: wrenn bench envd [flags]")
	}
	fs := flag.NewFlagSet("bench envd", flag.ExitOnError)
	var o bench.EnvdOptions
	fs.StringVar(&o.EnvdBin, "envd", "bin/envd", "envd binary to start in --local mode")
	fs.StringVar(&o.Dir, "dir", "", "directory for transferred files (default: the system temp dir)")
	fs.IntVar(&o.Runs, "runs", 200, "process round trips")
	fs.IntVar(&o.FileMiB, "file-mib", 256, "transfer size in MiB")
	fs.IntVar(&o.FileRuns, "file-runs", 5, "transfers of each kind")
	fs.IntVar(&o.PtyMB, "pty-mb", 100, "PTY burst in MB")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	o.Log = os.Stderr
	rows, err := bench.Envd(ctx, o)
	if err != nil {
		return err
	}
	bench.Print(os.Stdout, "envd (local mode, loopback, binary Connect client)", rows)
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
