package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"

	"git.omukk.dev/wrenn/sandbox/internal/devstack"
)

// SDKOptions configures the E2B SDK benchmark against wrenn dev.
type SDKOptions struct {
	Envd, Init string
	Runtime    string
	// Script is tests/e2b/platform-bench.mjs (node_modules beside it).
	Script string
	Out    io.Writer
}

// SDK starts `wrenn dev` in this process on a temporary data directory and
// runs the E2B SDK benchmark script against it with the environment
// variables it prints; the script prints its own table.
func SDK(ctx context.Context, o SDKOptions) error {
	return withDev(ctx, o.Envd, o.Init, o.Runtime, func(info devstack.Info) error {
		cmd := exec.CommandContext(ctx, "node", filepath.Base(o.Script))
		cmd.Dir = filepath.Dir(o.Script)
		cmd.Env = append(os.Environ(), info.E2BEnv...)
		cmd.Stdout, cmd.Stderr = o.Out, os.Stderr
		return cmd.Run()
	})
}

// withDev runs `wrenn dev` in this process on a temporary data directory
// and loopback ports, calls fn once it serves, and stops it.
func withDev(ctx context.Context, envd, init, runtime string, fn func(devstack.Info) error) error {
	return withDevOptions(ctx, devstack.Options{Runtime: runtime, Envd: envd, Init: init}, fn)
}

// withDevOptions is withDev with more of wrenn dev's options (o's data
// directory, ports, output and readiness are the benchmark's).
func withDevOptions(ctx context.Context, o devstack.Options, fn func(devstack.Info) error) error {
	parent, err := os.MkdirTemp("", "wrenn-bench-sdk-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(parent)
	if err := os.Chmod(parent, 0o711); err != nil {
		return err
	}
	ports := make([]string, 3)
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return err
		}
		ports[i] = fmt.Sprintf("127.0.0.1:%d", p)
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	ready := make(chan devstack.Info, 1)
	done := make(chan error, 1)
	go func() {
		o.DataDir, o.Listen, o.ProxyListen, o.AgentListen = filepath.Join(parent, "data"), ports[0], ports[1], ports[2]
		o.Out, o.Log, o.Ready = io.Discard, slog.New(slog.NewTextHandler(io.Discard, nil)), func(i devstack.Info) { ready <- i }
		done <- devstack.Run(sctx, o)
	}()
	var info devstack.Info
	select {
	case info = <-ready:
	case err := <-done:
		return fmt.Errorf("wrenn dev: %w", err)
	}
	runErr := fn(info)
	stop()
	if err := <-done; err != nil {
		return err
	}
	return runErr
}
