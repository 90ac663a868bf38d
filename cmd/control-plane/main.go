// Command control-plane is wrenn-cp: the API that users, SDKs and the
// dashboard talk to. Configuration comes from WRENN_* environment
// variables (see pkg/config).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"git.omukk.dev/wrenn/sandbox/pkg/cpserver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cpserver.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "control-plane:", err)
		os.Exit(1)
	}
}
