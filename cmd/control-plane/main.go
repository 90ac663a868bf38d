// Command control-plane is wrenn-cp: the API that users, SDKs and the
// dashboard talk to. Configuration comes from WRENN_* environment
// variables (see pkg/config). `control-plane create-admin --email X`
// makes a platform admin from the host.
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
	if len(os.Args) > 1 && os.Args[1] == "create-admin" {
		if err := cpserver.AdminCommand(ctx, os.Args[2:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "control-plane create-admin:", err)
			os.Exit(1)
		}
		return
	}
	if err := cpserver.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "control-plane:", err)
		os.Exit(1)
	}
}
