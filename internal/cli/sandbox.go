package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"git.omukk.dev/wrenn/sandbox/pkg/sdk"
)

// parseKV reads KEY=VALUE flags.
func parseKV(flag string, in []string) (map[string]string, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(in))
	for _, kv := range in {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageError{fmt.Errorf("--%s %q: use KEY=VALUE", flag, kv)}
		}
		out[k] = v
	}
	return out, nil
}

// listCmd is a command that fetches a list and prints it as a table (or
// JSON/YAML).
func listCmd[T any](a *app, use, short string, fetch func(*sdk.Client, context.Context) ([]T, error), header []string, row func(T) []string) *cobra.Command {
	return &cobra.Command{
		Use:     use,
		Aliases: []string{"ls"},
		Short:   short,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			items, err := fetch(cl, cmd.Context())
			if err != nil {
				return err
			}
			if done, err := a.structured(items); done {
				return err
			}
			rows := make([][]string, 0, len(items))
			for _, it := range items {
				rows = append(rows, row(it))
			}
			return a.table(header, rows)
		},
	}
}

func (a *app) sandboxCmd() *cobra.Command {
	c := &cobra.Command{
		Use:     "sandbox",
		Aliases: []string{"sb"},
		Short:   "Create, list, inspect, pause, resume and kill sandboxes",
	}
	c.AddCommand(a.sbCreateCmd(), a.sbListCmd(), a.sbGetCmd(), a.sbKillCmd(), a.sbPauseCmd(), a.sbResumeCmd(), a.sbTimeoutCmd(), a.sbMetricsCmd())
	return group(c)
}

func (a *app) printSandbox(info sdk.SandboxInfo) error {
	if done, err := a.structured(info); done {
		return err
	}
	return a.fields([][2]string{
		{"id", info.ID}, {"state", a.state(info.State)}, {"template", info.Template}, {"snapshot", dash(info.SnapshotID)},
		{"resources", fmt.Sprintf("%d vCPU, %d MiB memory, %d MiB disk", info.VCPUs, info.MemoryMiB, info.DiskMiB)},
		{"created", info.CreatedAt.Local().Format(time.RFC3339) + " (" + ago(info.CreatedAt) + ")"},
		{"expires", expires(info)}, {"on timeout", dash(info.OnTimeout)}, {"metadata", kvList(info.Metadata)},
		{"host", dash(info.HostID)}, {"envd", dash(info.EnvdVersion)}, {"error", dash(info.Error)},
	})
}

func expires(info sdk.SandboxInfo) string {
	if info.ExpiresAt.IsZero() {
		return "-"
	}
	return info.ExpiresAt.Local().Format(time.RFC3339) + " (" + ago(info.ExpiresAt) + ")"
}

func (a *app) sbCreateCmd() *cobra.Command {
	var (
		o             sdk.CreateOptions
		meta, env     []string
		noInternet    bool
		timeoutString string
	)
	c := &cobra.Command{
		Use:   "create",
		Short: "Create a sandbox and print its ID",
		Example: `  wrenn sandbox create --template minimal --timeout 1h --metadata owner=me
  id=$(wrenn sb create -o json | jq -r .id)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.Metadata, err = parseKV("metadata", meta); err != nil {
				return err
			}
			if o.Env, err = parseKV("env", env); err != nil {
				return err
			}
			if timeoutString != "" {
				if o.Timeout, err = parseTimeout(timeoutString); err != nil {
					return err
				}
			}
			if noInternet {
				f := false
				o.AllowInternet = &f
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			sb, err := cl.Create(cmd.Context(), o)
			if err != nil {
				return err
			}
			if done, err := a.structured(sb.SandboxInfo); done {
				return err
			}
			fmt.Fprintln(a.stdout, sb.ID)
			return nil
		},
	}
	f := c.Flags()
	f.StringVarP(&o.Template, "template", "t", "", "template (default: the platform's default)")
	f.StringVar(&o.Snapshot, "snapshot", "", "start from this snapshot instead of a template")
	f.IntVar(&o.VCPUs, "vcpus", 0, "vCPUs (default: the template's)")
	f.IntVar(&o.MemoryMiB, "memory", 0, "memory in MiB (default: the template's)")
	f.IntVar(&o.DiskMiB, "disk", 0, "disk in MiB (default: the template's)")
	f.StringVar(&timeoutString, "timeout", "", "how long it lives, e.g. 10m or 3600 (seconds; default: the platform's)")
	f.StringVar(&o.OnTimeout, "on-timeout", "", "kill or pause when the timeout passes (default kill)")
	f.StringArrayVar(&meta, "metadata", nil, "KEY=VALUE metadata (repeatable)")
	f.StringArrayVarP(&env, "env", "e", nil, "KEY=VALUE environment for every process (repeatable)")
	f.BoolVar(&noInternet, "no-internet", false, "no outbound internet")
	f.BoolVar(&o.AutoResume, "auto-resume", false, "resume when traffic arrives while paused")
	return c
}

// parseTimeout takes a Go duration or whole seconds.
func parseTimeout(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, usageError{fmt.Errorf("timeout %q: use a duration such as 90s, 10m, 2h, or seconds", s)}
	}
	return d, nil
}

func (a *app) sbListCmd() *cobra.Command {
	var (
		o    sdk.ListOptions
		meta []string
	)
	c := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the team's sandboxes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.Metadata, err = parseKV("metadata", meta); err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			infos := []sdk.SandboxInfo{}
			for info, err := range cl.List(cmd.Context(), o) {
				if err != nil {
					return err
				}
				infos = append(infos, info)
			}
			if done, err := a.structured(infos); done {
				return err
			}
			rows := make([][]string, 0, len(infos))
			for _, i := range infos {
				rows = append(rows, []string{i.ID, a.state(i.State), i.Template, strconv.Itoa(i.VCPUs), strconv.Itoa(i.MemoryMiB), ago(i.CreatedAt), ago(i.ExpiresAt), kvList(i.Metadata)})
			}
			return a.table([]string{"ID", "STATE", "TEMPLATE", "VCPUS", "MEMORY MIB", "CREATED", "EXPIRES", "METADATA"}, rows)
		},
	}
	f := c.Flags()
	f.StringVar(&o.State, "state", "", "only sandboxes in this state")
	f.StringVar(&o.Template, "template", "", "only sandboxes of this template")
	f.StringArrayVar(&meta, "metadata", nil, "only sandboxes with this KEY=VALUE (repeatable)")
	return c
}

// eachID is a command that runs once for each ID it is given.
func (a *app) eachID(use, short string, run func(cmd *cobra.Command, cl *sdk.Client, id string) error) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			for _, id := range args {
				if err := run(cmd, cl, id); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func (a *app) sbGetCmd() *cobra.Command {
	c := a.eachID("get SANDBOX...", "Show a sandbox", func(cmd *cobra.Command, cl *sdk.Client, id string) error {
		info, err := cl.Get(cmd.Context(), id)
		if err != nil {
			return err
		}
		return a.printSandbox(info)
	})
	c.Aliases = []string{"info", "show"}
	return c
}

func (a *app) sbKillCmd() *cobra.Command {
	c := a.eachID("kill SANDBOX...", "Destroy sandboxes", func(cmd *cobra.Command, cl *sdk.Client, id string) error {
		if err := cl.Kill(cmd.Context(), id); err != nil {
			return err
		}
		fmt.Fprintln(a.stdout, "killed", id)
		return nil
	})
	c.Aliases = []string{"rm"}
	return c
}

func (a *app) sbPauseCmd() *cobra.Command {
	return a.eachID("pause SANDBOX...", "Pause sandboxes (memory and disk are kept; resume brings them back)", func(cmd *cobra.Command, cl *sdk.Client, id string) error {
		if err := cl.Pause(cmd.Context(), id); err != nil {
			return err
		}
		fmt.Fprintln(a.stdout, "paused", id)
		return nil
	})
}

func (a *app) sbResumeCmd() *cobra.Command {
	var timeout string
	c := a.eachID("resume SANDBOX...", "Resume paused sandboxes", func(cmd *cobra.Command, cl *sdk.Client, id string) error {
		var d time.Duration
		if timeout != "" {
			var err error
			if d, err = parseTimeout(timeout); err != nil {
				return err
			}
		}
		info, err := cl.Resume(cmd.Context(), id, d)
		if err != nil {
			return err
		}
		if done, err := a.structured(info); done {
			return err
		}
		fmt.Fprintln(a.stdout, "resumed", id)
		return nil
	})
	c.Flags().StringVar(&timeout, "timeout", "", "new timeout from now (e.g. 30m)")
	return c
}

func (a *app) sbTimeoutCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "timeout SANDBOX DURATION",
		Short:   "Set how long from now a sandbox lives",
		Example: "  wrenn sb timeout sb-… 2h",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := parseTimeout(args[1])
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			if err := cl.SetTimeout(cmd.Context(), args[0], d); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s expires in %s\n", args[0], d)
			return nil
		},
	}
}

func (a *app) sbMetricsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "metrics SANDBOX",
		Short: "Show a running sandbox's recent CPU, memory and disk use",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			ms, err := cl.Metrics(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if done, err := a.structured(ms); done {
				return err
			}
			rows := make([][]string, 0, len(ms))
			for _, m := range ms {
				rows = append(rows, []string{m.Timestamp.Local().Format(time.TimeOnly), fmt.Sprintf("%.1f%% of %d", m.CPUUsedPct, m.CPUCount),
					mib(m.MemUsed) + " / " + mib(m.MemTotal), mib(m.DiskUsed) + " / " + mib(m.DiskTotal)})
			}
			return a.table([]string{"TIME", "CPU", "MEMORY", "DISK"}, rows)
		},
	}
}

func (a *app) snapshotCmd() *cobra.Command {
	c := &cobra.Command{Use: "snapshot", Aliases: []string{"snap"}, Short: "Freeze sandboxes into snapshots new sandboxes start from"}
	create := &cobra.Command{
		Use:   "create SANDBOX [NAME]",
		Short: "Snapshot a sandbox (a running one is paused for the copy and resumed)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 2 {
				name = args[1]
			} else {
				name = "snapshot-" + time.Now().UTC().Format("20060102-150405")
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			s, err := cl.CreateSnapshot(cmd.Context(), args[0], name)
			if err != nil {
				return err
			}
			if done, err := a.structured(s); done {
				return err
			}
			fmt.Fprintf(a.stdout, "%s\t%s\n", s.ID, s.Name)
			return nil
		},
	}
	list := listCmd(a, "list", "List the team's snapshots", (*sdk.Client).ListSnapshots,
		[]string{"ID", "NAME", "TEMPLATE", "FROM SANDBOX", "SIZE", "STATUS", "CREATED"}, func(s sdk.Snapshot) []string {
			return []string{s.ID, s.Name, dash(s.Template), dash(s.SourceSandboxID), mib(uint64(s.SizeBytes)), dash(s.Status), ago(s.CreatedAt)}
		})
	rm := a.eachID("rm SNAPSHOT...", "Delete snapshots no sandbox uses", func(cmd *cobra.Command, cl *sdk.Client, id string) error {
		if err := cl.DeleteSnapshot(cmd.Context(), id); err != nil {
			return err
		}
		fmt.Fprintln(a.stdout, "deleted", id)
		return nil
	})
	rm.Aliases = []string{"delete"}
	c.AddCommand(create, list, rm)
	return group(c)
}

func (a *app) keyCmd() *cobra.Command {
	c := &cobra.Command{Use: "key", Aliases: []string{"keys"}, Short: "Manage the team's API keys"}
	create := &cobra.Command{
		Use:   "create [NAME]",
		Short: "Create an API key (its secret is shown once)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := "wrenn cli"
			if len(args) == 1 {
				name = args[0]
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			k, err := cl.CreateAPIKey(cmd.Context(), name)
			if err != nil {
				return err
			}
			if done, err := a.structured(k); done {
				return err
			}
			fmt.Fprintln(a.stdout, k.Key)
			fmt.Fprintf(a.stderr, "key %s (%s): keep the secret above, it is not shown again\n", k.ID, k.Name)
			return nil
		},
	}
	list := listCmd(a, "list", "List the team's API keys", (*sdk.Client).ListAPIKeys,
		[]string{"ID", "NAME", "PREFIX", "CREATED", "LAST USED", "REVOKED"}, func(k sdk.APIKey) []string {
			last, revoked := "never", "-"
			if k.LastUsedAt != nil {
				last = ago(*k.LastUsedAt)
			}
			if k.RevokedAt != nil {
				revoked = ago(*k.RevokedAt)
			}
			return []string{k.ID, k.Name, k.Prefix + "…", ago(k.CreatedAt), last, revoked}
		})
	revoke := a.eachID("revoke KEY...", "Revoke API keys by ID", func(cmd *cobra.Command, cl *sdk.Client, id string) error {
		if err := cl.RevokeAPIKey(cmd.Context(), id); err != nil {
			return err
		}
		fmt.Fprintln(a.stdout, "revoked", id)
		return nil
	})
	c.AddCommand(create, list, revoke)
	return group(c)
}

func (a *app) hostCmd() *cobra.Command {
	c := &cobra.Command{Use: "host", Aliases: []string{"hosts"}, Short: "See and manage the platform's hosts (platform admins)"}
	list := listCmd(a, "list", "List hosts with their capacity and load", (*sdk.Client).ListHosts,
		[]string{"ID", "NAME", "STATUS", "RUNTIME", "SANDBOXES", "VCPUS", "MEMORY MIB", "TEMPLATES", "HEARTBEAT"}, func(h sdk.Host) []string {
			hb := "-"
			if h.LastHeartbeatAt != nil {
				hb = ago(*h.LastHeartbeatAt)
			}
			return []string{h.ID, h.Name, a.state(h.Status), h.Runtime, fmt.Sprintf("%d/%d", h.Sandboxes, h.MaxSandboxes),
				fmt.Sprintf("%d/%d", h.CommittedVCPUs, h.CPUs), fmt.Sprintf("%d/%d", h.CommittedMemoryMiB, h.MemoryMiB), strings.Join(h.Templates, ","), hb}
		})
	token := &cobra.Command{
		Use:   "token",
		Short: "Create a one-time registration token for a new host agent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			t, err := cl.CreateHostToken(cmd.Context())
			if err != nil {
				return err
			}
			if done, err := a.structured(t); done {
				return err
			}
			fmt.Fprintln(a.stdout, t.Token)
			fmt.Fprintf(a.stderr, "valid until %s: write it to a file for host-agent --registration-token-file\n", t.ExpiresAt.Local().Format(time.RFC3339))
			return nil
		},
	}
	drain := a.eachID("drain HOST...", "Stop placing new sandboxes on hosts (the ones they run stay)", func(cmd *cobra.Command, cl *sdk.Client, id string) error {
		h, err := cl.DrainHost(cmd.Context(), id)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "%s %s\n", h.ID, h.Status)
		return nil
	})
	c.AddCommand(list, token, drain)
	return group(c)
}
