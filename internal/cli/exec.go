package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"git.omukk.dev/wrenn/sandbox/pkg/sdk"
)

func (a *app) execCmd() *cobra.Command {
	var (
		stdin    bool
		cwd, usr string
		env      []string
	)
	c := &cobra.Command{
		Use:   "exec SANDBOX -- COMMAND [ARG...]",
		Short: "Run a command in a sandbox, streaming its output; exit with its code",
		Long: `Run a command in a sandbox. Its standard output and error stream to this
terminal as it runs, and wrenn exits with the command's exit code. The command is
run as given, not through a shell: use 'sh -c "..."' for pipes and variables.
With -i, standard input is sent to the command. Ctrl-C (or SIGTERM) kills the
command in the sandbox.`,
		Example: `  wrenn exec sb-… -- uname -a
  wrenn exec sb-… -- sh -c 'echo $HOME; exit 3'; echo $?
  tar -c src | wrenn exec -i sb-… -- tar -x -C /tmp`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args = dropDash(args); len(args) < 2 {
				return usageError{errors.New("exec needs a sandbox and a command: wrenn exec SANDBOX -- COMMAND [ARG...]")}
			}
			envs, err := parseKV("env", env)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			_, sb, err := a.connect(ctx, args[0])
			if err != nil {
				return err
			}
			if usr != "" {
				sb = sb.AsUser(usr)
			}
			opts := []sdk.CommandOption{sdk.WithArgs(args[2:]...), sdk.WithStdout(a.stdout), sdk.WithStderr(a.stderr), sdk.WithEnv(envs), sdk.WithCwd(cwd)}
			if stdin {
				opts = append(opts, sdk.WithStdin())
			}
			h, err := sb.Commands.Start(ctx, args[1], opts...)
			if err != nil {
				return err
			}
			if stdin {
				go forwardStdin(ctx, a.stdin, h)
			}
			return waitExit(ctx, h, 130)
		},
	}
	c.Flags().SetInterspersed(false)
	f := c.Flags()
	f.BoolVarP(&stdin, "interactive", "i", false, "send standard input to the command")
	f.StringVarP(&cwd, "cwd", "w", "", "working directory in the sandbox")
	f.StringVarP(&usr, "user", "u", "", "sandbox user to run as (default: the sandbox's)")
	f.StringArrayVarP(&env, "env", "e", nil, "KEY=VALUE environment (repeatable)")
	return c
}

// waitExit waits for the command and ends wrenn with its exit code. If
// ctx ends first (a signal), the command is killed, as it must not run on
// without us, and wrenn exits with interrupted.
func waitExit(ctx context.Context, h *sdk.CommandHandle, interrupted int) error {
	res, err := h.Wait(ctx)
	if ctx.Err() != nil {
		kctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.Kill(kctx)
		return exitCode(interrupted)
	}
	var exit *sdk.ExitError
	if errors.As(err, &exit) {
		return exitCode(clampExit(res.ExitCode))
	}
	return err
}

// clampExit maps a command's code to a process exit code: a signal
// (-1) becomes 137, as shells report a kill.
func clampExit(code int) int {
	if code < 0 || code > 255 {
		return 137
	}
	return code
}

// forwardStdin copies r to the command's standard input, then closes it.
func forwardStdin(ctx context.Context, r io.Reader, h *sdk.CommandHandle) {
	buf := make([]byte, 256<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if serr := h.SendStdin(ctx, buf[:n]); serr != nil {
				return
			}
		}
		if err != nil {
			_ = h.CloseStdin(ctx)
			return
		}
	}
}

func (a *app) shellCmd() *cobra.Command {
	var usr, cwd string
	c := &cobra.Command{
		Use:   "shell SANDBOX [-- COMMAND [ARG...]]",
		Short: "Open an interactive terminal in a sandbox",
		Long: `Open an interactive terminal (bash by default) in a sandbox. The local
terminal is put in raw mode, so Ctrl-C and every other key go to the sandbox;
window size changes follow. The terminal is restored however the shell ends,
and wrenn exits with the shell's exit code.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			args = dropDash(args)
			in, ok := a.stdin.(*os.File)
			if !ok || !term.IsTerminal(int(in.Fd())) {
				return errors.New("standard input is not a terminal: use 'wrenn exec' to run commands")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			_, sb, err := a.connect(ctx, args[0])
			if err != nil {
				return err
			}
			if usr != "" {
				sb = sb.AsUser(usr)
			}
			cols, rows, err := term.GetSize(int(in.Fd()))
			if err != nil {
				cols, rows = 80, 24
			}
			o := sdk.PTYOptions{Cols: uint32(cols), Rows: uint32(rows), Cwd: cwd, Output: a.stdout}
			if len(args) > 1 {
				o.Cmd, o.Args = args[1], args[2:]
			}
			t, err := sb.PTY.Create(ctx, o)
			if err != nil {
				return err
			}
			old, err := term.MakeRaw(int(in.Fd()))
			if err != nil {
				_ = t.Kill(context.Background())
				return fmt.Errorf("raw mode: %w", err)
			}
			// Restored on every way out: return, panic, or a signal that
			// cancels ctx (which ends the wait below).
			defer term.Restore(int(in.Fd()), old)

			winch := make(chan os.Signal, 1)
			signal.Notify(winch, syscall.SIGWINCH)
			defer signal.Stop(winch)
			go func() {
				for {
					select {
					case <-winch:
						if c, r, err := term.GetSize(int(in.Fd())); err == nil {
							_ = t.Resize(ctx, uint32(c), uint32(r))
						}
					case <-t.Done():
						return
					}
				}
			}()
			go func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := in.Read(buf)
					if n > 0 {
						if t.SendInput(ctx, buf[:n]) != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
			return waitExit(ctx, t.CommandHandle, 129)
		},
	}
	c.Flags().SetInterspersed(false)
	c.Flags().StringVarP(&usr, "user", "u", "", "sandbox user (default: the sandbox's)")
	c.Flags().StringVarP(&cwd, "cwd", "w", "", "working directory in the sandbox")
	return c
}

// dropDash removes the "--" between the sandbox and its command (flag
// parsing stops at the sandbox, so it is still there).
func dropDash(args []string) []string {
	if len(args) > 1 && args[1] == "--" {
		return append(args[:1:1], args[2:]...)
	}
	return args
}
