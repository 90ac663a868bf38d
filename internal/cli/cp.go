package cli

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"git.omukk.dev/wrenn/sandbox/pkg/sdk"
)

// endpoint is one side of a copy: a local path, or SANDBOX:PATH.
type endpoint struct {
	sandbox, path string
}

func parseEndpoint(s string) endpoint {
	// A local path with a colon can be given as ./a:b.
	if i := strings.Index(s, ":"); i > 0 && !strings.ContainsAny(s[:i], `/\.`) {
		return endpoint{sandbox: s[:i], path: s[i+1:]}
	}
	return endpoint{path: s}
}

func (a *app) cpCmd() *cobra.Command {
	var quiet bool
	c := &cobra.Command{
		Use:   "cp SRC DST",
		Short: "Copy files and directories between this machine and a sandbox",
		Long: `Copy a file or a directory between this machine and a sandbox; the sandbox side
is written SANDBOX:PATH. Directories travel as one tar stream. As with cp -r, a
destination that is an existing directory receives SRC under its own name. '-'
as the local side is standard input or output (files only). A progress bar is
shown on a terminal (--quiet hides it).`,
		Example: `  wrenn cp ./data.csv sb-…:/home/user/
  wrenn cp sb-…:/var/log/app.log .
  wrenn cp ./project sb-…:/home/user/project
  wrenn cp sb-…:/etc/hostname -`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, dst := parseEndpoint(args[0]), parseEndpoint(args[1])
			switch {
			case src.sandbox == "" && dst.sandbox == "":
				return usageError{errors.New("one side must be in a sandbox: SANDBOX:PATH")}
			case src.sandbox != "" && dst.sandbox != "":
				return usageError{errors.New("copy between two sandboxes through this machine: one side must be local")}
			}
			ctx := cmd.Context()
			sbID := src.sandbox + dst.sandbox
			_, sb, err := a.connect(ctx, sbID)
			if err != nil {
				return err
			}
			cp := &copier{a: a, sb: sb, progress: !quiet && isTerminal(a.stderr)}
			if dst.sandbox != "" {
				return cp.upload(ctx, src.path, dst.path)
			}
			return cp.download(ctx, src.path, dst.path)
		},
	}
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	return c
}

type copier struct {
	a        *app
	sb       *sdk.Sandbox
	progress bool
}

func (c *copier) bar(total int64, what string) *progressbar.ProgressBar {
	return progressbar.NewOptions64(total, progressbar.OptionSetWriter(c.a.stderr), progressbar.OptionShowBytes(true),
		progressbar.OptionSetDescription(what), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionShowCount(),
		progressbar.OptionSetVisibility(c.progress), progressbar.OptionOnCompletion(func() { fmt.Fprintln(c.a.stderr) }),
		progressbar.OptionSetWidth(30), progressbar.OptionUseIECUnits(true))
}

// remoteTarget is where SRC lands under DST on the sandbox: inside DST
// when it is a directory (or ends in /), else DST itself.
func (c *copier) remoteTarget(ctx context.Context, dst, base string) (string, error) {
	if strings.HasSuffix(dst, "/") {
		return path.Join(dst, base), nil
	}
	st, err := c.sb.Files.Stat(ctx, dst)
	switch {
	case errors.Is(err, sdk.ErrNotFound):
		return dst, nil
	case err != nil:
		return "", err
	case st.Type == sdk.TypeDir:
		return path.Join(dst, base), nil
	}
	return dst, nil
}

func (c *copier) upload(ctx context.Context, src, dst string) error {
	if dst == "" {
		dst = "."
	}
	if src == "-" {
		if dst == "." || strings.HasSuffix(dst, "/") {
			return usageError{errors.New("copying standard input needs a file name in the sandbox")}
		}
		_, err := c.sb.Files.Write(ctx, dst, c.a.stdin)
		return err
	}
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	target, err := c.remoteTarget(ctx, dst, filepath.Base(filepath.Clean(src)))
	if err != nil {
		return err
	}
	if !st.IsDir() {
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		bar := c.bar(st.Size(), filepath.Base(src))
		if _, err := c.sb.Files.Write(ctx, target, io.TeeReader(f, bar)); err != nil {
			return err
		}
		return bar.Finish()
	}
	// A directory: one tar stream to a temporary file, unpacked from there.
	var total int64
	_ = filepath.WalkDir(src, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if i, err := d.Info(); err == nil {
				total += i.Size()
			}
		}
		return nil
	})
	bar := c.bar(total, filepath.Base(src)+"/")
	// Beside the target, on its filesystem (the sandbox's /tmp is memory).
	tmp := path.Join(path.Dir(target), ".wrenn-cp-"+randomHex()+".tar")
	defer func() {
		// Gone already unless something failed; never left behind.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = c.sb.Files.Remove(rctx, tmp)
	}()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeTar(pw, src, bar)) }()
	if _, err := c.sb.Files.Write(ctx, tmp, pr); err != nil {
		pr.CloseWithError(err)
		return err
	}
	var stderr strings.Builder
	_, err = c.sb.Commands.Run(ctx, "/bin/sh", sdk.WithArgs("-c", `mkdir -p "$1" && tar -x -f "$2" -C "$1"`, "sh", target, tmp), sdk.WithStderr(&stderr))
	if err != nil {
		return fmt.Errorf("unpack into %s: %w %s", target, err, strings.TrimSpace(stderr.String()))
	}
	return bar.Finish()
}

func (c *copier) download(ctx context.Context, src, dst string) error {
	st, err := c.sb.Files.Stat(ctx, src)
	if err != nil {
		return err
	}
	if dst == "-" {
		if st.Type == sdk.TypeDir {
			return usageError{errors.New("a directory cannot be copied to standard output")}
		}
		rc, err := c.sb.Files.Read(ctx, src)
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.Copy(c.a.stdout, rc)
		return err
	}
	target := dst
	if li, err := os.Stat(dst); err == nil && li.IsDir() || strings.HasSuffix(dst, string(os.PathSeparator)) {
		target = filepath.Join(dst, path.Base(path.Clean(src)))
	}
	if st.Type != sdk.TypeDir {
		rc, err := c.sb.Files.Read(ctx, src)
		if err != nil {
			return err
		}
		defer rc.Close()
		bar := c.bar(st.Size, path.Base(src))
		// Written beside the target and renamed: an interrupted copy
		// leaves no partial file.
		f, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".wrenn-cp-")
		if err != nil {
			return err
		}
		defer os.Remove(f.Name())
		if _, err := io.Copy(io.MultiWriter(f, bar), rc); err != nil {
			f.Close()
			return err
		}
		if err := f.Chmod(st.Mode.Perm()); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := os.Rename(f.Name(), target); err != nil {
			return err
		}
		return bar.Finish()
	}
	bar := c.bar(-1, path.Base(src)+"/")
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	var stderr strings.Builder
	h, err := c.sb.Commands.Start(ctx, "tar", sdk.WithArgs("-c", "-f", "-", "-C", src, "."), sdk.WithStdout(pw), sdk.WithStderr(&stderr))
	if err != nil {
		return err
	}
	go func() {
		_, err := h.Wait(context.Background())
		pw.CloseWithError(err)
	}()
	if err := readTar(io.TeeReader(pr, bar), target); err != nil {
		pr.CloseWithError(err)
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = h.Kill(kctx)
		h.Disconnect()
		return fmt.Errorf("copy %s: %w %s", src, err, strings.TrimSpace(stderr.String()))
	}
	return bar.Finish()
}

func randomHex() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// writeTar writes dir's tree (names relative to it) as a tar stream.
func writeTar(w io.Writer, dir string, progress io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		if !info.Mode().IsRegular() && !info.IsDir() && info.Mode()&fs.ModeSymlink == 0 {
			return nil // devices, sockets, pipes: not copied
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		h.Uname, h.Gname, h.Uid, h.Gid = "", "", 0, 0
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(io.MultiWriter(tw, progress), f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// readTar unpacks a tar stream into dir, refusing entries that would
// land outside it.
func readTar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." || name == "" {
			continue
		}
		if !fs.ValidPath(name) {
			return fmt.Errorf("the archive names %q, outside the destination", h.Name)
		}
		local := filepath.FromSlash(name)
		mode := fs.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(local, 0o755); err != nil {
				return err
			}
			_ = root.Chmod(local, mode|0o700)
		case tar.TypeReg:
			if err := root.MkdirAll(filepath.Dir(local), 0o755); err != nil {
				return err
			}
			f, err := root.OpenFile(local, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := root.MkdirAll(filepath.Dir(local), 0o755); err != nil {
				return err
			}
			_ = root.Remove(local)
			if err := root.Symlink(h.Linkname, local); err != nil {
				return err
			}
		}
	}
}
