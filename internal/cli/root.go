// Package cli is the `wrenn` command: sandboxes, commands, terminals and
// files from the shell through pkg/sdk, accounts and profiles, and the
// local tools (`wrenn dev`, guest images). cmd/wrenn only calls Main.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"git.omukk.dev/wrenn/sandbox/pkg/sdk"
)

// app is one invocation's state: its flags, streams and configuration.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	profileName string
	apiURL      string
	sandboxURL  string
	output      string
	jsonOut     bool
	noColor     bool
}

// exitCode ends the program with a code and no message (exec and shell
// pass on their command's code).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// usageError is a mistake on the command line (exit code 2).
type usageError struct{ error }

// Main runs the command line args and returns the process's exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var code exitCode
	if errors.As(err, &code) {
		return int(code)
	}
	var ue usageError
	if !errors.As(err, &ue) && isCobraUsage(err) {
		err = usageError{fmt.Errorf("%w (see '%s --help')", err, cmd.CommandPath())}
	}
	fmt.Fprintln(stderr, "wrenn: "+oneLine(err.Error()))
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// group makes c a command that only holds subcommands: without one it
// prints its help, and an unknown one is an error (cobra would print the
// help and succeed).
func group(c *cobra.Command) *cobra.Command {
	c.Args = cobra.ArbitraryArgs
	c.RunE = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageError{fmt.Errorf("unknown command %q for %q (see '%s --help')", args[0], c.CommandPath(), c.CommandPath())}
		}
		return c.Help()
	}
	return c
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// isCobraUsage recognises cobra's own argument and flag errors.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument", "invalid argument", "accepts ", "requires at least", "requires at most", "requires exactly", "if any flags in the group"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "wrenn",
		Short: "Work with Wrenn sandboxes from the shell, and run Wrenn on this machine",
		Long: `wrenn works with the sandboxes of a Wrenn control plane (create, run commands,
open a shell, copy files, snapshot) and runs the whole platform on this machine
(wrenn dev).

Credentials come from a profile written by 'wrenn login' ($XDG_CONFIG_HOME/wrenn/config.toml),
or from WRENN_API_URL, WRENN_API_KEY and WRENN_SANDBOX_URL (E2B_API_URL,
E2B_API_KEY and E2B_SANDBOX_URL work too, against any E2B-compatible API).`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.profileName, "profile", "", "profile in the config file (default: $WRENN_PROFILE, else the current one)")
	pf.StringVar(&a.apiURL, "api-url", "", "the control plane's URL (overrides the profile and $WRENN_API_URL)")
	pf.StringVar(&a.sandboxURL, "sandbox-url", "", "the sandbox proxy's URL (overrides the profile and $WRENN_SANDBOX_URL)")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table, json or yaml")
	pf.BoolVar(&a.jsonOut, "json", false, "output JSON (same as -o json)")
	pf.BoolVar(&a.noColor, "no-color", false, "no colours (also: $NO_COLOR)")
	root.PersistentPreRunE = func(c *cobra.Command, _ []string) error {
		if a.jsonOut {
			a.output = "json"
		}
		switch a.output {
		case "table", "json", "yaml":
			return nil
		}
		return usageError{fmt.Errorf("--output %q: use table, json or yaml", a.output)}
	}

	root.AddGroup(&cobra.Group{ID: "sandboxes", Title: "Sandboxes:"}, &cobra.Group{ID: "account", Title: "Account and platform:"}, &cobra.Group{ID: "local", Title: "On this machine:"})
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add("sandboxes", a.sandboxCmd(), a.execCmd(), a.shellCmd(), a.cpCmd(), a.logsCmd(), a.snapshotCmd(), a.templateCmd())
	add("account", a.loginCmd(), a.logoutCmd(), a.whoamiCmd(), a.keyCmd(), a.hostCmd())
	add("local", a.devCmd(), a.imageCmd(), a.benchCmd(), a.manCmd())
	return root
}

// client builds the SDK client for this invocation: the profile, then
// WRENN_* variables, then flags. Without any of those, the SDK's own
// environment handling (E2B_* included) applies.
func (a *app) client() (*sdk.Client, error) {
	cfg, err := loadConfig()
	if err != nil {
		return nil, err
	}
	p, name, err := cfg.profile(a.profileName)
	if err != nil {
		return nil, err
	}
	if p == nil && a.profileName != "" {
		return nil, fmt.Errorf("no profile %q in %s: run 'wrenn login --profile %s'", name, configPath(), name)
	}
	if p == nil && os.Getenv(sdk.EnvAPIURL) == "" && os.Getenv(sdk.EnvAPIKey) == "" && a.apiURL == "" {
		if os.Getenv(sdk.EnvE2BAPIURL) == "" && os.Getenv(sdk.EnvE2BAPIKey) == "" {
			return nil, errors.New("not logged in: run 'wrenn login', or set WRENN_API_URL and WRENN_API_KEY")
		}
		return sdk.New(a.sandboxURLOption()...)
	}
	opts := []sdk.Option{sdk.WithoutEnv(), sdk.WithUserAgent("wrenn-cli")}
	if p != nil {
		if p.Protocol == sdk.ProtocolE2B.String() {
			opts = append(opts, sdk.WithProtocol(sdk.ProtocolE2B))
		}
		opts = append(opts, sdk.WithAPIURL(p.APIURL), sdk.WithAPIKey(p.credential()))
		if p.SandboxURL != "" {
			opts = append(opts, sdk.WithSandboxURL(p.SandboxURL))
		}
		if p.SandboxDomain != "" {
			opts = append(opts, sdk.WithSandboxDomain(p.SandboxDomain))
		}
	}
	for env, opt := range map[string]func(string) sdk.Option{sdk.EnvAPIURL: sdk.WithAPIURL, sdk.EnvAPIKey: sdk.WithAPIKey, sdk.EnvSandboxURL: sdk.WithSandboxURL, sdk.EnvSandboxDomain: sdk.WithSandboxDomain} {
		if v := os.Getenv(env); v != "" {
			opts = append(opts, opt(v))
		}
	}
	if a.apiURL != "" {
		opts = append(opts, sdk.WithAPIURL(a.apiURL))
	}
	opts = append(opts, a.sandboxURLOption()...)
	return sdk.New(opts...)
}

func (a *app) sandboxURLOption() []sdk.Option {
	if a.sandboxURL != "" {
		return []sdk.Option{sdk.WithSandboxURL(a.sandboxURL)}
	}
	return nil
}

// connect returns a running sandbox by ID.
func (a *app) connect(ctx context.Context, id string) (*sdk.Client, *sdk.Sandbox, error) {
	c, err := a.client()
	if err != nil {
		return nil, nil, err
	}
	sb, err := c.Connect(ctx, id, sdk.ConnectOptions{})
	return c, sb, err
}
