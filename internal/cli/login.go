package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"git.omukk.dev/wrenn/sandbox/pkg/sdk"
)

func (a *app) loginCmd() *cobra.Command {
	var (
		email, sandboxDomain     string
		apiKeyStdin, passwdStdin bool
		e2b                      bool
	)
	c := &cobra.Command{
		Use:   "login",
		Short: "Sign in and save the credential in a profile",
		Long: `Sign in to a control plane and save the endpoint and credential in a profile
of $XDG_CONFIG_HOME/wrenn/config.toml (mode 0600), which becomes the current one.

With --api-key-stdin the API key is read from standard input. With --email the
password is asked for on the terminal (or read from standard input with
--password-stdin) and a session is saved. Several profiles can be kept with
--profile NAME; 'wrenn --profile NAME ...' uses one.`,
		Example: `  echo "$KEY" | wrenn login --api-url http://127.0.0.1:8080 --sandbox-url http://127.0.0.1:8081 --api-key-stdin
  wrenn login --api-url https://wrenn.example.com --sandbox-url https://sandbox.wrenn.example.com --email me@example.com
  wrenn login --profile e2b --e2b --api-url https://api.e2b.app --sandbox-domain e2b.app --api-key-stdin < key.txt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			name := a.profileName
			if name == "" {
				name = os.Getenv("WRENN_PROFILE")
			}
			if name == "" {
				name = defaultProfile
			}
			p := &profile{APIURL: a.apiURL, SandboxURL: a.sandboxURL, SandboxDomain: sandboxDomain}
			if old := cfg.Profiles[name]; old != nil {
				// Logging in again keeps what the flags do not change.
				if p.APIURL == "" {
					p.APIURL = old.APIURL
				}
				if p.SandboxURL == "" && p.SandboxDomain == "" {
					p.SandboxURL, p.SandboxDomain = old.SandboxURL, old.SandboxDomain
				}
			}
			if p.APIURL == "" {
				p.APIURL = os.Getenv(sdk.EnvAPIURL)
			}
			if p.SandboxURL == "" && p.SandboxDomain == "" {
				p.SandboxURL = os.Getenv(sdk.EnvSandboxURL)
			}
			if p.APIURL == "" {
				return usageError{errors.New("--api-url is required (the control plane's URL, e.g. http://127.0.0.1:8080)")}
			}
			opts := []sdk.Option{sdk.WithoutEnv(), sdk.WithAPIURL(p.APIURL), sdk.WithUserAgent("wrenn-cli")}
			if e2b {
				p.Protocol = sdk.ProtocolE2B.String()
				opts = append(opts, sdk.WithProtocol(sdk.ProtocolE2B))
			}
			ctx := cmd.Context()
			switch {
			case apiKeyStdin && email != "":
				return usageError{errors.New("give --api-key-stdin or --email, not both")}
			case apiKeyStdin:
				key, err := readSecret(a.stdin)
				if err != nil {
					return fmt.Errorf("read the API key from standard input: %w", err)
				}
				p.APIKey = key
			case e2b:
				return usageError{errors.New("an E2B endpoint takes an API key: use --api-key-stdin")}
			default:
				if email == "" {
					if !isTerminal(a.stdin) {
						return usageError{errors.New("give --api-key-stdin or --email (standard input is not a terminal to ask on)")}
					}
					fmt.Fprint(a.stderr, "Email: ")
					line, err := bufio.NewReader(a.stdin).ReadString('\n')
					if err != nil {
						return err
					}
					email = strings.TrimSpace(line)
				}
				var pw string
				switch {
				case passwdStdin:
					if pw, err = readSecret(a.stdin); err != nil {
						return fmt.Errorf("read the password from standard input: %w", err)
					}
				case isTerminal(a.stdin):
					fmt.Fprint(a.stderr, "Password: ")
					b, err := term.ReadPassword(int(a.stdin.(*os.File).Fd()))
					fmt.Fprintln(a.stderr)
					if err != nil {
						return err
					}
					pw = string(b)
				default:
					return usageError{errors.New("standard input is not a terminal: use --password-stdin")}
				}
				c, err := sdk.New(opts...)
				if err != nil {
					return err
				}
				tok, err := c.Login(ctx, email, pw)
				if err != nil {
					return err
				}
				p.SessionToken, p.Email = tok, email
			}
			c, err := sdk.New(append(opts, sdk.WithAPIKey(p.credential()))...)
			if err != nil {
				return err
			}
			who, err := checkCredential(ctx, c, p)
			if err != nil {
				return err
			}
			cfg.Profiles[name] = p
			cfg.Current = name
			if err := cfg.save(); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Logged in to %s as %s (profile %q in %s)\n", p.APIURL, who, name, configPath())
			if p.SandboxURL == "" && p.SandboxDomain == "" {
				fmt.Fprintln(a.stderr, "note: no --sandbox-url or --sandbox-domain: exec, shell and cp need the sandbox proxy's address")
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&email, "email", "", "sign in with this email and a password")
	f.BoolVar(&passwdStdin, "password-stdin", false, "read the password from standard input")
	f.BoolVar(&apiKeyStdin, "api-key-stdin", false, "read an API key from standard input")
	f.StringVar(&sandboxDomain, "sandbox-domain", "", "route sandbox traffic by host name: <port>-<sandbox>.<domain>")
	f.BoolVar(&e2b, "e2b", false, "the endpoint speaks E2B's API (E2B, or Wrenn's /e2b)")
	return c
}

// readSecret reads one line (or all of a pipe) and trims it.
func readSecret(r io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, 64<<10))
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", errors.New("it is empty")
	}
	return s, nil
}

func (a *app) logoutCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "End the session and remove the profile's credential",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			p, name, _ := cfg.profile(a.profileName)
			if p == nil {
				return fmt.Errorf("not logged in (no profile %q in %s)", name, configPath())
			}
			if p.SessionToken != "" {
				c, err := sdk.New(sdk.WithoutEnv(), sdk.WithAPIURL(p.APIURL), sdk.WithAPIKey(p.SessionToken))
				if err != nil {
					return err
				}
				// An expired session is as good as ended.
				if err := c.Logout(cmd.Context()); err != nil && !errors.Is(err, sdk.ErrAuth) {
					return err
				}
			}
			delete(cfg.Profiles, name)
			if cfg.Current == name {
				cfg.Current = ""
				if names := cfg.names(); len(names) > 0 {
					cfg.Current = names[0]
				}
			}
			if err := cfg.save(); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Logged out of %s (profile %q removed)\n", p.APIURL, name)
			return nil
		},
	}
}

// checkCredential makes one call the credential must pass and says who
// it acts for: the user of a session, the team of an API key.
func checkCredential(ctx context.Context, c *sdk.Client, p *profile) (string, error) {
	switch {
	case p.Protocol == sdk.ProtocolE2B.String():
		// E2B has no "who am I": listing sandboxes checks the key.
		for _, err := range c.List(ctx, sdk.ListOptions{PageSize: 1}) {
			if err != nil {
				return "", fmt.Errorf("check the API key: %w", err)
			}
			break
		}
		return "an E2B API key", nil
	case p.SessionToken != "":
		me, err := c.Whoami(ctx)
		if err != nil {
			return "", fmt.Errorf("check the session: %w", err)
		}
		p.Email = me.User.Email
		return me.User.Email, nil
	}
	k, err := thisKey(ctx, c, p.APIKey)
	if err != nil {
		return "", fmt.Errorf("check the API key: %w", err)
	}
	return fmt.Sprintf("API key %q of team %s", k.Name, k.TeamID), nil
}

// thisKey finds the API key the client uses among its team's keys.
func thisKey(ctx context.Context, c *sdk.Client, key string) (sdk.APIKey, error) {
	keys, err := c.ListAPIKeys(ctx)
	if err != nil {
		return sdk.APIKey{}, err
	}
	for _, k := range keys {
		if k.Prefix != "" && strings.HasPrefix(key, k.Prefix) && k.RevokedAt == nil {
			return k, nil
		}
	}
	return sdk.APIKey{}, errors.New("the key is not among its team's keys")
}

func (a *app) whoamiCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show who the credential acts for",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			cfg, _ := loadConfig()
			p, name, _ := cfg.profile(a.profileName)
			out := struct {
				APIURL  string      `json:"api_url"`
				Profile string      `json:"profile,omitempty"`
				User    *sdk.User   `json:"user,omitempty"`
				Teams   []sdk.Team  `json:"teams,omitempty"`
				TeamID  string      `json:"team_id,omitempty"`
				APIKey  *sdk.APIKey `json:"api_key,omitempty"`
			}{APIURL: c.APIURL()}
			if p != nil {
				out.Profile = name
			}
			me, err := c.Whoami(cmd.Context())
			switch {
			case err == nil:
				out.User, out.Teams, out.TeamID = &me.User, me.Teams, me.ActiveTeamID
			case errors.Is(err, sdk.ErrInvalid):
				// An API key acts for its team, not for a user.
				key := os.Getenv(sdk.EnvAPIKey)
				if key == "" && p != nil {
					key = p.APIKey
				}
				k, kerr := thisKey(cmd.Context(), c, key)
				if kerr != nil {
					return fmt.Errorf("whoami: %w", kerr)
				}
				out.APIKey, out.TeamID = &k, k.TeamID
			default:
				return err
			}
			if done, err := a.structured(out); done {
				return err
			}
			kv := [][2]string{}
			if out.User != nil {
				role := "user"
				if out.User.Admin {
					role = "platform admin"
				}
				kv = append(kv, [2]string{"user", out.User.Email + " (" + out.User.ID + ")"}, [2]string{"role", role})
			} else {
				kv = append(kv, [2]string{"api key", fmt.Sprintf("%s (%s, %s…)", out.APIKey.Name, out.APIKey.ID, out.APIKey.Prefix)})
			}
			team := out.TeamID
			for _, t := range out.Teams {
				if t.ID == out.TeamID {
					team = fmt.Sprintf("%s (%s, %s)", t.Name, t.ID, t.Role)
				}
			}
			kv = append(kv, [2]string{"team", team}, [2]string{"api", out.APIURL}, [2]string{"profile", dash(out.Profile)})
			return a.fields(kv)
		},
	}
}
