// Command control-plane is wrenn-cp: the API that users, SDKs and the
// dashboard talk to. Configuration comes from a TOML file (--config, or
// WRENN_CP_CONFIG) and WRENN_* environment variables, which take
// precedence (see pkg/config); `control-plane check-config [FILE]`
// validates a file without starting.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"

	"git.omukk.dev/wrenn/sandbox/pkg/config"
	"git.omukk.dev/wrenn/sandbox/pkg/cpserver"
)

func main() {
	fs := flag.NewFlagSet("control-plane", flag.ExitOnError)
	file := fs.String("config", os.Getenv(config.ConfigEnv), "TOML configuration file (or "+config.ConfigEnv+"); WRENN_* variables take precedence over it")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: control-plane [--config FILE]\n       control-plane check-config [FILE]\n\n")
		fs.PrintDefaults()
	}
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "check-config" {
		os.Exit(checkConfig(fs, file, args[1:]))
	}
	_ = fs.Parse(args)
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "control-plane: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		os.Exit(2)
	}
	cfg, err := config.Load(*file)
	if err != nil {
		fmt.Fprintln(os.Stderr, "control-plane:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Under systemd (Type=notify) the unit is started once both listeners
	// serve; elsewhere NOTIFY_SOCKET is unset and these do nothing.
	err = cpserver.Run(ctx, cpserver.WithConfig(cfg), cpserver.WithReady(func(string) { notify(daemon.SdNotifyReady) }))
	notify(daemon.SdNotifyStopping)
	if err != nil {
		fmt.Fprintln(os.Stderr, "control-plane:", err)
		os.Exit(1)
	}
}

// checkConfig validates a configuration (the file and the environment, as
// a start would read them) and its certificate and secret files, without
// touching the database or the network.
func checkConfig(fs *flag.FlagSet, file *string, args []string) int {
	_ = fs.Parse(args)
	path := *file
	switch fs.NArg() {
	case 0:
	case 1:
		path = fs.Arg(0)
	default:
		fmt.Fprintln(os.Stderr, "usage: control-plane check-config [FILE]")
		return 2
	}
	if path == "" {
		fmt.Fprintln(os.Stderr, "control-plane check-config: name a file (or set "+config.ConfigEnv+")")
		return 2
	}
	if err := cpserver.CheckConfig(path, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "control-plane check-config:", err)
		return 1
	}
	return 0
}

func notify(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		fmt.Fprintf(os.Stderr, "control-plane: tell systemd %s: %v\n", state, err)
	}
}
