// Command code-interpreter serves E2B's code-interpreter API (runCode and
// contexts) on port 49999 inside a sandbox, from Jupyter kernels. wrenn-init
// starts it in images that have it, before envd.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/codeinterp"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "code-interpreter:", err)
		os.Exit(1)
	}
}

func run() error {
	port := flag.Int("port", codeinterp.Port, "TCP port to listen on")
	addr := flag.String("addr", "0.0.0.0", "address to listen on")
	cwd := flag.String("cwd", codeinterp.DefaultCwd, "working directory of contexts created without one")
	runDir := flag.String("run-dir", "/run/wrenn-code-interpreter", "private directory for the kernels' connection files and sockets")
	envdURL := flag.String("envd", codeinterp.DefaultEnvdURL, "the sandbox's envd (access token check, sandbox environment variables); empty outside a sandbox")
	kernels := flag.String("kernel-dirs", strings.Join(codeinterp.KernelSpecDirs, ":"), "where Jupyter kernel specs are installed")
	startTimeout := flag.Duration("start-timeout", 3*time.Minute, "how long a kernel may take to start")
	verbose := flag.Bool("debug", false, "log at debug level")
	flag.Parse()
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("component", "code-interpreter")

	langs, err := codeinterp.FindLanguages(strings.Split(*kernels, ":"))
	if err != nil {
		return err
	}
	env := os.Environ()
	if os.Getenv("LANG") == "" {
		env = append(env, "LANG=C.UTF-8") // kernels print UTF-8, not escapes
	}
	srv, err := codeinterp.New(codeinterp.Config{Languages: langs, DefaultCwd: *cwd, RunDir: *runDir, Env: env, EnvdURL: *envdURL, StartTimeout: *startTimeout, Log: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(*addr, strconv.Itoa(*port)))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("listening", "addr", ln.Addr().String(), "languages", langs.Names())
	srv.Start()
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
		log.Info("shutting down")
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if hs.Shutdown(shutdownCtx) != nil {
			hs.Close()
		}
		cancel()
		err = <-errc
	}
	srv.Close()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
