package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"git.omukk.dev/wrenn/sandbox/internal/devstack"
	"git.omukk.dev/wrenn/sandbox/internal/guestimage"
)

func (a *app) devCmd() *cobra.Command {
	var (
		o       devstack.Options
		verbose bool
	)
	exe, _ := os.Executable()
	binDir := filepath.Dir(exe)
	c := &cobra.Command{
		Use:   "dev",
		Short: "Run PostgreSQL, the control plane, the sandbox proxy and an agent on this machine (root)",
		Long: `Run the whole platform on this machine: a private PostgreSQL, the control plane
with its sandbox proxy, and a host agent with the best runtime the host has. It
builds the minimal image if it is missing, creates an admin, a team and an API key
on the first run, and prints how to use them. Ctrl-C stops the agent (pausing its
sandboxes), the control plane and PostgreSQL; the next run reuses the data.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelInfo
			}
			o.Out = a.stdout
			o.Log = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
			o.CLI = exe
			return devstack.Run(cmd.Context(), o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.DataDir, "data-dir", "/var/lib/wrenn-dev", "where PostgreSQL, the agent, images and credentials live (kept between runs)")
	f.StringVar(&o.ImagesDir, "images-dir", "", "guest images (default <data-dir>/images)")
	f.StringVar(&o.Runtime, "runtime", "auto", "auto (firecracker or qemu on a KVM that runs standard guests, else gvisor, else qemu/TCG), qemu, gvisor or firecracker")
	f.StringVar(&o.Listen, "listen", "127.0.0.1:8080", "control plane API")
	f.StringVar(&o.ProxyListen, "proxy-listen", "127.0.0.1:8081", "sandbox proxy (by the E2b-Sandbox-Id and E2b-Sandbox-Port headers)")
	f.IntVar(&o.ProxyTLSPort, "proxy-tls-port", 8443, "also serve the sandbox proxy over TLS on this loopback port, by host name <port>-<sandboxID>.<sandbox-domain>, with a CA kept in <data-dir>/tls (0: off)")
	f.StringVar(&o.SandboxDomain, "sandbox-domain", "wrenn.localhost", "the TLS proxy's domain; names under localhost resolve to this machine without DNS")
	f.StringVar(&o.AgentListen, "agent-listen", "127.0.0.1:7070", "host agent")
	f.BoolVar(&o.Base, "base", false, "also build the base image (Debian with python3, git, ...; debootstrap takes minutes)")
	f.StringVar(&o.Envd, "envd", filepath.Join(binDir, "envd"), "envd binary for images")
	f.StringVar(&o.Init, "init", filepath.Join(binDir, "wrenn-init"), "wrenn-init binary for images")
	f.BoolVar(&o.CodeInterpreter, "code-interpreter", false, "also build the code-interpreter image (base + Jupyter kernels; template code-interpreter-v1 of E2B's code-interpreter SDK)")
	f.StringVar(&o.CodeInterpreterBin, "code-interpreter-bin", filepath.Join(binDir, "code-interpreter"), "code-interpreter binary for the code-interpreter image")
	f.BoolVar(&verbose, "verbose", false, "log at info level (default: warnings only)")
	return c
}

func defaultImagesDir() string {
	if d := os.Getenv("WRENN_STATE_DIR"); d != "" {
		return filepath.Join(d, "images")
	}
	return guestimage.DefaultDir
}

func (a *app) imageCmd() *cobra.Command {
	var (
		dir string
		o   guestimage.Options
	)
	c := &cobra.Command{
		Use:   "image",
		Short: "Build, verify and list guest images",
		Long: `Guest images are directories the agent boots sandboxes from: a kernel, an
initramfs, a root filesystem and a manifest. The agent finds template X in
<state dir>/images/X (default ` + guestimage.DefaultDir + `; $WRENN_STATE_DIR changes it).`,
	}
	c.PersistentFlags().StringVar(&dir, "dir", defaultImagesDir(), "images directory (the agent's <state dir>/images)")
	var from, registryUser, registryPasswordFile string
	var insecureRegistry bool
	build := &cobra.Command{
		Use:   "build " + strings.Join(guestimage.Kinds, "|") + " | NAME --from-image REF",
		Short: "Build a guest image (unchanged inputs skip the build)",
		Long: `Build one of the built-in images, or (with --from-image) an image named NAME
from an OCI image: its layers flattened (whiteouts applied) plus envd,
wrenn-init and the default user. The image must have /bin/bash.`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: guestimage.Kinds,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name, o.Dir, o.Progress = args[0], dir, a.stderr
			if from != "" {
				src := &guestimage.ImageSource{Ref: from, Insecure: insecureRegistry}
				src.Auth.Username = registryUser
				if registryPasswordFile != "" {
					pw, err := os.ReadFile(registryPasswordFile)
					if err != nil {
						return fmt.Errorf("--registry-password-file: %w", err)
					}
					src.Auth.Password = strings.TrimRight(string(pw), "\r\n")
				}
				o.FromImage = src
			} else if registryUser != "" || registryPasswordFile != "" || insecureRegistry {
				return fmt.Errorf("--registry-username, --registry-password-file and --insecure-registry go with --from-image")
			}
			res, err := guestimage.Build(cmd.Context(), o)
			if err != nil {
				return fmt.Errorf("build image %s: %w", args[0], err)
			}
			fmt.Fprintln(a.stdout, res.Dir)
			return nil
		},
	}
	bf := build.Flags()
	bf.StringVar(&o.Envd, "envd", "bin/envd", "envd binary to install")
	bf.StringVar(&o.Init, "init", "bin/wrenn-init", "wrenn-init binary to install")
	bf.StringVar(&o.CodeInterpreter, "code-interpreter", "bin/code-interpreter", "code-interpreter binary to install (code-interpreter image)")
	bf.StringVar(&o.KernelVersion, "kernel", "", "kernel version from /boot (default: the newest)")
	bf.StringVar(&o.Mirror, "mirror", "", "Debian mirror for the base image (default http://deb.debian.org/debian)")
	bf.BoolVar(&o.Force, "force", false, "rebuild even when the image is up to date")
	bf.StringVar(&from, "from-image", "", "OCI image reference to build NAME from (e.g. registry.example.com/team/app:1)")
	bf.StringVar(&registryUser, "registry-username", "", "user name for the registry (with --registry-password-file)")
	bf.StringVar(&registryPasswordFile, "registry-password-file", "", "file holding the registry password (kept out of the command line)")
	bf.BoolVar(&insecureRegistry, "insecure-registry", false, "reach the registry over plain HTTP (a local registry)")
	verify := &cobra.Command{
		Use:   "verify NAME",
		Short: "Check an image's files against its manifest",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := guestimage.Verify(filepath.Join(dir, args[0]))
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s: ok (kernel %s, built %s)\n", args[0], m.Kernel, m.Created.Format(time.RFC3339))
			return nil
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List built images and whether they verify",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			entries, err := os.ReadDir(dir)
			if err != nil {
				return err
			}
			for _, e := range entries {
				if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
					continue
				}
				var status string
				m, err := guestimage.Verify(filepath.Join(dir, e.Name()))
				if err != nil {
					status = err.Error()
				} else {
					status = fmt.Sprintf("ok, kernel %s, rootfs %.1f MiB", m.Kernel, float64(m.Files[guestimage.FileRootfs].Size)/(1<<20))
				}
				fmt.Fprintf(a.stdout, "%s\t%s\n", e.Name(), status)
			}
			return nil
		},
	}
	c.AddCommand(build, verify, list)
	return group(c)
}

// benchCmd runs wrenn-bench, which sits beside wrenn (the benchmarks and
// the test harnesses they start are kept out of this binary).
func (a *app) benchCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "bench envd|boot|agent|snapshot|cp|sdk [flags]",
		Short:              "Run a benchmark (wrenn-bench, installed beside wrenn)",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			bin := filepath.Join(filepath.Dir(exe), "wrenn-bench")
			if _, err := os.Stat(bin); err != nil {
				if bin, err = exec.LookPath("wrenn-bench"); err != nil {
					return errors.New("wrenn-bench is not installed beside wrenn or on PATH (make build builds it)")
				}
			}
			// Replaced, so signals and the exit code are wrenn-bench's own.
			return syscall.Exec(bin, append([]string{bin}, args...), os.Environ())
		},
	}
}

func (a *app) manCmd() *cobra.Command {
	var dir string
	c := &cobra.Command{
		Use:   "man",
		Short: "Write man pages: wrenn(1) to standard output, or one per command into --dir",
		Example: `  wrenn man | man -l -
  wrenn man --dir /usr/local/share/man/man1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			root := cmd.Root()
			root.DisableAutoGenTag = true
			header := &doc.GenManHeader{Title: "WRENN", Section: "1", Source: "Wrenn", Manual: "Wrenn manual"}
			if dir == "" {
				return doc.GenMan(root, header, a.stdout)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			if err := doc.GenManTree(root, header, dir); err != nil {
				return err
			}
			fmt.Fprintln(a.stderr, "man pages written to", dir)
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "write a page per command into this directory")
	return c
}
