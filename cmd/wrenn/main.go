// Command wrenn is Wrenn's command-line tool (internal/cli): sandboxes,
// commands, terminals and files from the shell, profiles, `wrenn dev` (the
// whole platform on this machine) and guest images.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"git.omukk.dev/wrenn/sandbox/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
