package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"git.omukk.dev/wrenn/sandbox/pkg/sdk"
)

func (a *app) logsCmd() *cobra.Command {
	var (
		follow bool
		since  time.Duration
		limit  int
		level  string
	)
	c := &cobra.Command{
		Use:   "logs SANDBOX",
		Short: "Show a sandbox's log (its init and envd), running or paused; -f follows it",
		Long: `logs prints the newest entries of a sandbox's log: what the guest's init and
envd wrote to its console, stamped by its host. The log is kept across pause
and resume and deleted with the sandbox. With --follow it then prints new
entries as they come, until the sandbox is gone or Ctrl-C. With -o json each
entry is one JSON object per line.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if since < 0 {
				return usageError{errors.New("--since must be a positive duration, such as 10m")}
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			opts := sdk.LogOptions{Limit: limit, Level: level}
			if since > 0 {
				opts.Start = time.Now().Add(-since)
			}
			print := a.logPrinter()
			if follow {
				err := cl.FollowLogs(cmd.Context(), args[0], opts, print)
				if errors.Is(err, context.Canceled) {
					return nil // Ctrl-C
				}
				return err
			}
			es, err := cl.Logs(cmd.Context(), args[0], opts)
			if err != nil {
				return err
			}
			for _, e := range es {
				if err := print(e); err != nil {
					return err
				}
			}
			return nil
		},
	}
	f := c.Flags()
	f.BoolVarP(&follow, "follow", "f", false, "go on printing new entries until the sandbox is gone")
	f.DurationVar(&since, "since", 0, "only entries from this long ago on (such as 10m, 2h)")
	f.IntVarP(&limit, "limit", "n", 0, "at most this many of the newest entries (default: the server's, 1000)")
	f.StringVar(&level, "level", "", "the lowest level shown: debug, info, warn or error")
	return c
}

// logPrinter writes one entry a line: time, level and message, then the
// fields; or one JSON object a line with -o json (or yaml, a list).
func (a *app) logPrinter() func(sdk.LogEntry) error {
	switch a.output {
	case "json":
		enc := json.NewEncoder(a.stdout)
		return func(e sdk.LogEntry) error { return enc.Encode(e) }
	case "yaml":
		return func(e sdk.LogEntry) error { _, err := a.structured([]sdk.LogEntry{e}); return err }
	}
	return func(e sdk.LogEntry) error {
		var b strings.Builder
		b.WriteString(e.Time.Local().Format("2006-01-02 15:04:05.000"))
		b.WriteByte(' ')
		b.WriteString(a.level(e.Level))
		b.WriteByte(' ')
		b.WriteString(e.Message)
		keys := make([]string, 0, len(e.Fields))
		for k := range e.Fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%q", k, e.Fields[k])
		}
		b.WriteByte('\n')
		_, err := a.stdout.Write([]byte(b.String()))
		return err
	}
}

// level pads and colours a log level.
func (a *app) level(l string) string {
	s := fmt.Sprintf("%-5s", strings.ToUpper(l))
	switch l {
	case "warn":
		return a.paint(yellow, s)
	case "error":
		return a.paint(red, s)
	}
	return s
}
