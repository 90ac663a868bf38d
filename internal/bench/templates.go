package bench

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"git.omukk.dev/wrenn/sandbox/internal/devstack"
)

// TemplateOptions configures the template benchmark.
type TemplateOptions struct {
	Envd, Init string
	Runtime    string
	// ImagesDir reuses built images (the base image takes minutes);
	// empty builds them in the benchmark's data directory.
	ImagesDir string
	// Script is tests/e2b/template-bench.mjs (node_modules beside it).
	Script string
	Runs   int
	Out    io.Writer
}

// Templates starts `wrenn dev` with the base image and runs the template
// benchmark script: the README's example built cold and cached against
// the same steps run by hand in a sandbox, and create-to-first-command
// from the template against from base; the script prints the table.
func Templates(ctx context.Context, o TemplateOptions) error {
	return withDevOptions(ctx, devstack.Options{Runtime: o.Runtime, Envd: o.Envd, Init: o.Init, Base: true, ImagesDir: o.ImagesDir}, func(info devstack.Info) error {
		cmd := exec.CommandContext(ctx, "node", filepath.Base(o.Script))
		cmd.Dir = filepath.Dir(o.Script)
		cmd.Env = append(os.Environ(), info.E2BEnv...)
		if o.Runs > 0 {
			cmd.Env = append(cmd.Env, "WRENN_BENCH_RUNS="+strconv.Itoa(o.Runs))
		}
		cmd.Stdout, cmd.Stderr = o.Out, os.Stderr
		return cmd.Run()
	})
}
