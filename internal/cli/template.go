package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"git.omukk.dev/wrenn/sandbox/pkg/sdk"
)

const templateSpecHelp = `The spec file (YAML or JSON) is the body of POST /v1/templates:

  name: my-app
  from_template: base          # an image (minimal, base) or a template (name or name:tag)
  # or, instead, an OCI image the build's host pulls (layers flattened; envd,
  # wrenn-init and the default user added), with credentials if it is private:
  # from_image: registry.example.com/team/tool:1
  # from_image_registry: {username: robot, password: "..."}
  tags: [v1]                   # optional
  vcpus: 2                     # optional build sandbox size
  memory_mib: 1024
  steps:
    - {type: RUN, args: ["apt-get update && apt-get install -y jq", root]}
    - {type: ENV, args: [A, "1"]}
    - {type: COPY, args: [app/, /home/user/app]}   # from the context directory
    - {type: WORKDIR, args: [/home/user/app]}
  start_cmd: python3 -m http.server 8000      # optional: frozen running
  ready_cmd: curl -sf http://127.0.0.1:8000/  # optional

COPY sources are paths (or globs) inside the context directory (default: the
spec file's directory); their files are uploaded once, by content hash.`

func (a *app) templateCmd() *cobra.Command {
	c := &cobra.Command{Use: "template", Aliases: []string{"templates", "tpl"}, Short: "Build your own sandbox templates; list, inspect and delete them"}
	list := listCmd(a, "list", "List images, the team's templates and platform templates", (*sdk.Client).ListTemplates,
		[]string{"NAME", "ID", "KIND", "LATEST BUILD", "TAGS", "CREATED"}, func(t sdk.Template) []string {
			kind := "template"
			switch {
			case t.BuiltIn || t.ID == "":
				kind = "image"
			case t.Public:
				kind = "platform"
			}
			return []string{t.Name, dash(t.ID), kind, dash(t.LatestBuildID), tagList(t.Tags), ago(t.CreatedAt)}
		})
	rm := a.eachID("rm TEMPLATE...", "Delete templates (refused while sandboxes run from them)", func(cmd *cobra.Command, cl *sdk.Client, ref string) error {
		if err := cl.DeleteTemplate(cmd.Context(), ref); err != nil {
			return err
		}
		fmt.Fprintln(a.stdout, "deleted", ref)
		return nil
	})
	rm.Aliases = []string{"delete"}
	cancel := &cobra.Command{
		Use:   "cancel TEMPLATE BUILD",
		Short: "Cancel a running build (it leaves nothing behind)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			b, err := cl.CancelTemplateBuild(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if done, err := a.structured(b); done {
				return err
			}
			fmt.Fprintln(a.stdout, b.ID, b.Status)
			return nil
		},
	}
	c.AddCommand(a.templateBuildCmd(), list, a.templateGetCmd(), a.templateLogsCmd(), cancel, rm, a.publishCmd(true), a.publishCmd(false))
	return group(c)
}

func tagList(tags map[string]string) string {
	if len(tags) == 0 {
		return "-"
	}
	names := make([]string, 0, len(tags))
	for t := range tags {
		names = append(names, t)
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

// readTemplateSpec reads a spec file; a field Wrenn does not know is an
// error naming it, not silently dropped.
func readTemplateSpec(file string) (sdk.TemplateSpec, error) {
	var spec sdk.TemplateSpec
	raw, err := os.ReadFile(file)
	if err != nil {
		return spec, usageError{fmt.Errorf("spec file: %w", err)}
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return spec, usageError{fmt.Errorf("spec file %s: %w", file, err)}
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return spec, usageError{fmt.Errorf("spec file %s: %w", file, err)}
	}
	return spec, nil
}

func (a *app) templateBuildCmd() *cobra.Command {
	var file, contextDir, name string
	var tags []string
	var force, detach bool
	c := &cobra.Command{
		Use:   "build -f SPEC [--context DIR]",
		Short: "Build a template from a spec file and a context directory, streaming its log",
		Long: `Build a template on the control plane: a build sandbox starts from the base,
runs the steps (each step's output streams here with its number), and is frozen
as the template. Unchanged steps come from the layer cache. The exit code is
non-zero when the build fails; Ctrl-C cancels the build.

` + templateSpecHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageError{errors.New("give the spec file with -f")}
			}
			spec, err := readTemplateSpec(file)
			if err != nil {
				return err
			}
			if name != "" {
				spec.Name = name
			}
			if spec.Name == "" {
				return usageError{fmt.Errorf("spec file %s names no template: add name: or pass --name", file)}
			}
			spec.Tags = append(spec.Tags, tags...)
			spec.Force = spec.Force || force
			if contextDir == "" {
				contextDir = filepath.Dir(file)
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			b, err := cl.BuildTemplate(ctx, spec, contextDir)
			if err != nil {
				return err
			}
			if detach {
				if done, err := a.structured(b); done {
					return err
				}
				fmt.Fprintln(a.stdout, b.ID)
				return nil
			}
			fmt.Fprintf(a.stderr, "building %s (build %s)\n", spec.Name, b.ID)
			return a.followBuild(ctx, cl, spec.Name, b.ID, true)
		},
	}
	f := c.Flags()
	f.StringVarP(&file, "file", "f", "", "the spec file (YAML or JSON)")
	f.StringVarP(&contextDir, "context", "C", "", "the directory COPY sources are in (default: the spec file's)")
	f.StringVar(&name, "name", "", "the template's name (overrides the spec's)")
	f.StringArrayVarP(&tags, "tag", "t", nil, "a tag for the build (repeatable)")
	f.BoolVar(&force, "force", false, "run every step, ignoring the layer cache")
	f.BoolVarP(&detach, "detach", "d", false, "start the build and print its ID without following it")
	return c
}

// followBuild streams a build's log until it ends, then reports how it
// ended: an error (exit 1) unless it is ready. With cancelOnInterrupt, a
// cancelled ctx (Ctrl-C) cancels the build.
func (a *app) followBuild(ctx context.Context, cl *sdk.Client, ref, buildID string, cancelOnInterrupt bool) error {
	for l, err := range cl.TemplateBuildLogs(ctx, ref, buildID, true) {
		if err != nil {
			if ctx.Err() != nil && cancelOnInterrupt {
				cctx, stop := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
				defer stop()
				if _, cerr := cl.CancelTemplateBuild(cctx, ref, buildID); cerr != nil {
					return fmt.Errorf("interrupted; cancelling build %s failed: %w", buildID, cerr)
				}
				return fmt.Errorf("interrupted: build %s cancelled", buildID)
			}
			return err
		}
		a.printBuildLine(l)
	}
	b, err := cl.GetTemplateBuild(context.WithoutCancel(ctx), ref, buildID)
	if err != nil {
		return err
	}
	switch b.Status {
	case "ready":
		if done, err := a.structured(b); done {
			return err
		}
		fmt.Fprintf(a.stdout, "%s %s: template %s is ready (%s on host %s)\n", a.paint(green, "✔"), b.ID, ref, mib(uint64(b.SizeBytes)), dash(b.HostID))
		return nil
	case "error":
		msg := b.Error
		if b.FailedStep != nil {
			msg = fmt.Sprintf("step %d failed", *b.FailedStep)
			if b.ExitCode != nil {
				msg += fmt.Sprintf(" with exit code %d", *b.ExitCode)
			}
		}
		return fmt.Errorf("build %s of %s failed: %s (see 'wrenn template logs %s %s')", b.ID, ref, msg, ref, b.ID)
	}
	return fmt.Errorf("build %s of %s is %s", b.ID, ref, b.Status)
}

// printBuildLine writes one log line with its step: the step headers
// carry "[n/total]" already, output lines get "[n]".
func (a *app) printBuildLine(l sdk.BuildLogLine) {
	msg := l.Message
	if _, err := strconv.Atoi(l.Step); err == nil && !strings.HasPrefix(msg, "["+l.Step+"/") {
		msg = "[" + l.Step + "] " + msg
	}
	if l.Level == "error" {
		msg = a.paint(red, msg)
	}
	fmt.Fprintln(a.stdout, msg)
}

func (a *app) templateGetCmd() *cobra.Command {
	c := a.eachID("get TEMPLATE...", "Show a template and its builds", func(cmd *cobra.Command, cl *sdk.Client, ref string) error {
		t, err := cl.GetTemplate(cmd.Context(), ref)
		if err != nil {
			return err
		}
		// Another team's platform template shows no builds.
		builds, err := cl.ListTemplateBuilds(cmd.Context(), ref)
		if err != nil && !errors.Is(err, sdk.ErrNotFound) {
			return err
		}
		if done, err := a.structured(struct {
			sdk.Template
			Builds []sdk.TemplateBuild `json:"builds"`
		}{t, builds}); done {
			return err
		}
		if err := a.fields([][2]string{{"id", t.ID}, {"name", t.Name}, {"team", t.TeamID}, {"platform", strconv.FormatBool(t.Public)},
			{"latest build", dash(t.LatestBuildID)}, {"tags", kvList(t.Tags)}, {"created", ago(t.CreatedAt)}}); err != nil {
			return err
		}
		if len(builds) == 0 {
			return nil
		}
		fmt.Fprintln(a.stdout)
		rows := make([][]string, 0, len(builds))
		for _, b := range builds {
			size := "-"
			if b.SizeBytes > 0 {
				size = mib(uint64(b.SizeBytes))
			}
			rows = append(rows, []string{b.ID, a.buildStatus(b.Status), strconv.Itoa(b.VCPUs), strconv.Itoa(b.MemoryMiB), size, dash(b.HostID), ago(b.CreatedAt), dash(b.Error)})
		}
		return a.table([]string{"BUILD", "STATUS", "VCPUS", "MEMORY MIB", "SIZE", "HOST", "CREATED", "ERROR"}, rows)
	})
	c.Aliases = []string{"info", "show"}
	return c
}

func (a *app) buildStatus(s string) string {
	switch s {
	case "ready":
		return a.paint(green, s)
	case "waiting", "building":
		return a.paint(yellow, s)
	case "error":
		return a.paint(red, s)
	}
	return s
}

func (a *app) templateLogsCmd() *cobra.Command {
	var follow bool
	c := &cobra.Command{
		Use:   "logs TEMPLATE [BUILD]",
		Short: "Print a build's log (default: the newest build)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			ref, buildID := args[0], ""
			if len(args) == 2 {
				buildID = args[1]
			} else {
				bs, err := cl.ListTemplateBuilds(cmd.Context(), ref)
				if err != nil {
					return err
				}
				if len(bs) == 0 {
					return fmt.Errorf("template %s has no builds", ref)
				}
				buildID = bs[0].ID
			}
			if follow {
				return a.followBuild(cmd.Context(), cl, ref, buildID, false)
			}
			var lines []sdk.BuildLogLine
			for l, err := range cl.TemplateBuildLogs(cmd.Context(), ref, buildID, false) {
				if err != nil {
					return err
				}
				if a.output == "table" {
					a.printBuildLine(l)
				} else {
					lines = append(lines, l)
				}
			}
			if a.output != "table" {
				_, err := a.structured(lines)
				return err
			}
			return nil
		},
	}
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing until the build ends, then report how it ended")
	return c
}

func (a *app) publishCmd(public bool) *cobra.Command {
	use, short := "unpublish TEMPLATE...", "Make platform templates the team's own again (platform admins)"
	if public {
		use, short = "publish TEMPLATE...", "Publish the team's templates to every team as platform templates (platform admins)"
	}
	return a.eachID(use, short, func(cmd *cobra.Command, cl *sdk.Client, ref string) error {
		t, err := cl.PublishTemplate(cmd.Context(), ref, public)
		if err != nil {
			return err
		}
		if done, err := a.structured(t); done {
			return err
		}
		state := "the team's own"
		if t.Public {
			state = "a platform template"
		}
		fmt.Fprintf(a.stdout, "%s is %s\n", t.Name, state)
		return nil
	})
}
