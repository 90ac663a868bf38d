// Package guestimage builds and checks guest images: a directory holding the
// kernel as an uncompressed ELF (vmlinux), an initramfs that loads the
// kernel's modules and mounts the root disk, an ext4 root filesystem made
// without mounting anything (mkfs.ext4 -d), and a manifest with the sha256 of
// every file. Images are data for the agent, which finds them by name under
// its state directory.
package guestimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// BuilderVersion changes whenever the builder makes different images from
// the same inputs, so that they are rebuilt.
const BuilderVersion = "2"

// DefaultDir is where the agent looks for images: <state dir>/images.
const DefaultDir = "/var/lib/wrenn/images"

// Image file names inside an image directory.
const (
	FileKernel    = "vmlinux"
	FileInitramfs = "initramfs.cpio"
	FileRootfs    = "rootfs.ext4"
	FileManifest  = "manifest.json"
)

// Kinds of image this builder makes.
var Kinds = []string{"minimal", "base", CodeInterpreterKind}

// BaselineKind is the busybox-only image boot benchmarks compare with: the
// same kernel and initramfs, but a shell script as init that configures the
// network and serves HTTP with busybox httpd: no wrenn-init, no envd.
const BaselineKind = "busybox-baseline"

// Options say what to build and where.
type Options struct {
	Name          string // one of Kinds
	Dir           string // images root; the image lands in Dir/Name
	Envd          string // envd binary (static)
	Init          string // wrenn-init binary (static)
	KernelVersion string // "" for the newest in /boot
	Mirror        string // Debian mirror for base (default: deb.debian.org)
	Force         bool   // rebuild even when up to date
	Progress      io.Writer

	// CodeInterpreter is the code-interpreter binary (static), for the
	// code-interpreter image.
	CodeInterpreter string

	// FromImage builds the image Name from an OCI image instead of one
	// of Kinds.
	FromImage *ImageSource
}

// Manifest describes a built image.
type Manifest struct {
	Name           string    `json:"name"`
	BuilderVersion string    `json:"builderVersion"`
	Fingerprint    string    `json:"fingerprint"`
	Created        time.Time `json:"created"`
	Kernel         string    `json:"kernel"`
	// DefaultUser is who commands run as unless a request names a user;
	// the agent passes it to envd's /init.
	DefaultUser string               `json:"defaultUser"`
	Components  map[string]string    `json:"components"`
	Files       map[string]FileEntry `json:"files"`
}

// FileEntry is one file of an image.
type FileEntry struct {
	Size   int64  `json:"size"`
	Sha256 string `json:"sha256"`
}

// Result says what Build did.
type Result struct {
	Dir      string
	Manifest *Manifest
	Skipped  bool // up to date; nothing was built
	Duration time.Duration
}

type builder struct {
	opts    Options
	kernel  *Kernel
	stage   string
	started time.Time
}

func (b *builder) step(format string, args ...any) {
	if b.opts.Progress != nil {
		fmt.Fprintf(b.opts.Progress, "[%5.1fs] %s: %s\n", time.Since(b.started).Seconds(), b.opts.Name, fmt.Sprintf(format, args...))
	}
}

// Build makes the image Options.Name, atomically: it is built beside its
// final place and renamed into it, so a failure leaves the previous image
// (or nothing) and never a half-written one.
func Build(ctx context.Context, opts Options) (*Result, error) {
	b := &builder{opts: opts, started: time.Now()}
	if !validKind(opts.Name) && opts.FromImage == nil {
		return nil, fmt.Errorf("unknown image %q: choose one of %s", opts.Name, strings.Join(Kinds, ", "))
	}
	for _, bin := range []struct{ what, path string }{{"envd", opts.Envd}, {"wrenn-init", opts.Init}} {
		if fi, err := os.Stat(bin.path); err != nil || !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s binary %q: not found (run make build)", bin.what, bin.path)
		}
	}
	var base *Result
	if opts.Name == CodeInterpreterKind {
		if fi, err := os.Stat(opts.CodeInterpreter); err != nil || !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("code-interpreter binary %q: not found (run make build)", opts.CodeInterpreter)
		}
		// It is base plus packages: base is built first (or found up to date).
		bo := opts
		bo.Name, bo.Force = "base", false
		var err error
		if base, err = Build(ctx, bo); err != nil {
			return nil, err
		}
	}
	if opts.FromImage != nil {
		if err := b.pullSource(ctx); err != nil {
			return nil, err
		}
	}
	k, err := FindKernel(opts.KernelVersion)
	if err != nil {
		return nil, err
	}
	b.kernel = k
	var fp string
	var components map[string]string
	if base != nil {
		fp, components, err = b.codeInterpreterFingerprint(base.Manifest)
	} else {
		fp, components, err = b.fingerprint()
	}
	if err != nil {
		return nil, err
	}
	final := filepath.Join(opts.Dir, opts.Name)
	if !opts.Force {
		if m, err := Verify(final); err == nil && m.Fingerprint == fp {
			b.step("up to date (%s)", final)
			return &Result{Dir: final, Manifest: m, Skipped: true, Duration: time.Since(b.started)}, nil
		}
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create images directory: %w", err)
	}
	b.stage, err = os.MkdirTemp(opts.Dir, "."+opts.Name+".build-")
	if err != nil {
		return nil, fmt.Errorf("create build directory: %w", err)
	}
	defer os.RemoveAll(b.stage)

	b.step("kernel %s → %s", k.Version, FileKernel)
	if err := ExtractVmlinux(ctx, k.Image, filepath.Join(b.stage, FileKernel)); err != nil {
		return nil, err
	}
	b.step("initramfs")
	if err := b.initramfs(ctx); err != nil {
		return nil, err
	}
	b.step("root filesystem tree")
	tree := filepath.Join(b.stage, "tree")
	switch {
	case opts.FromImage != nil:
		err = b.ociTree(ctx, tree)
	case opts.Name == "minimal":
		err = b.minimalTree(ctx, tree)
	case opts.Name == "base":
		err = b.baseTree(ctx, tree)
	case opts.Name == CodeInterpreterKind:
		err = b.codeInterpreterTree(ctx, tree, base.Dir)
	case opts.Name == BaselineKind:
		err = b.baselineTree(ctx, tree)
	}
	if err != nil {
		return nil, err
	}
	if opts.Name != BaselineKind {
		if err := b.installWrenn(tree); err != nil {
			return nil, err
		}
	}
	b.step("mkfs.ext4 → %s", FileRootfs)
	if err := makeExt4(ctx, tree, filepath.Join(b.stage, FileRootfs)); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(tree); err != nil {
		return nil, err
	}
	b.step("manifest")
	m := &Manifest{Name: opts.Name, BuilderVersion: BuilderVersion, Fingerprint: fp, Created: time.Now().UTC(), Kernel: k.Version, DefaultUser: userName, Components: components, Files: map[string]FileEntry{}}
	for _, name := range []string{FileKernel, FileInitramfs, FileRootfs} {
		e, err := hashFile(filepath.Join(b.stage, name))
		if err != nil {
			return nil, err
		}
		m.Files[name] = e
	}
	mb, _ := json.MarshalIndent(m, "", "  ")
	if err := writeFileSync(filepath.Join(b.stage, FileManifest), append(mb, '\n')); err != nil {
		return nil, fmt.Errorf("write manifest: %w", err)
	}
	if err := os.Chmod(b.stage, 0o755); err != nil {
		return nil, err
	}
	if err := replaceDir(b.stage, final); err != nil {
		return nil, err
	}
	b.step("done in %.1fs: %s (rootfs %s)", time.Since(b.started).Seconds(), final, humanSize(m.Files[FileRootfs].Size))
	return &Result{Dir: final, Manifest: m, Duration: time.Since(b.started)}, nil
}

func validKind(name string) bool {
	for _, k := range append(Kinds, BaselineKind) {
		if k == name {
			return true
		}
	}
	return false
}

// fingerprint covers every input of the image, so an unchanged one is not rebuilt.
func (b *builder) fingerprint() (string, map[string]string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "builder %s\nimage %s\nkernel %s\n", BuilderVersion, b.opts.Name, b.kernel.Version)
	components := map[string]string{"kernel": b.kernel.Version}
	inputs := []struct{ name, path string }{{"envd", b.opts.Envd}, {"wrenn-init", b.opts.Init}, {"vmlinuz", b.kernel.Image}}
	if b.opts.Name != "base" && b.opts.FromImage == nil {
		inputs = append(inputs, struct{ name, path string }{"busybox", busyboxPath}, struct{ name, path string }{"bash", bashStaticPath})
	}
	for _, in := range inputs {
		e, err := hashFile(in.path)
		if err != nil {
			return "", nil, fmt.Errorf("input %s: %w", in.name, err)
		}
		fmt.Fprintf(h, "%s %s\n", in.name, e.Sha256)
		components[in.name] = e.Sha256[:16]
	}
	if b.opts.Name == "base" {
		fmt.Fprintf(h, "packages %s\nmirror %s\n", strings.Join(basePackages, ","), b.mirror())
	}
	if src := b.opts.FromImage; src != nil {
		fmt.Fprintf(h, "oci %s\n", src.pulled.Digest)
		components["image"] = src.Ref + "@" + src.pulled.Digest
	}
	return hex.EncodeToString(h.Sum(nil)), components, nil
}

// Verify checks an image directory against its manifest: every file is there
// with the recorded size and sha256.
func Verify(dir string) (*Manifest, error) {
	raw, err := os.ReadFile(filepath.Join(dir, FileManifest))
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", dir, err)
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("image %s: manifest: %w", dir, err)
	}
	for _, name := range []string{FileKernel, FileInitramfs, FileRootfs} {
		want, ok := m.Files[name]
		if !ok {
			return nil, fmt.Errorf("image %s: manifest lists no %s", dir, name)
		}
		got, err := hashFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", dir, err)
		}
		if got != want {
			return nil, fmt.Errorf("image %s: %s is corrupt (size %d, sha256 %s; manifest says %d, %s): rebuild it with wrenn image build %s --force", dir, name, got.Size, got.Sha256[:12], want.Size, want.Sha256[:12], m.Name)
		}
	}
	return &m, nil
}

func hashFile(path string) (FileEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return FileEntry{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return FileEntry{}, fmt.Errorf("read %s: %w", path, err)
	}
	return FileEntry{Size: n, Sha256: hex.EncodeToString(h.Sum(nil))}, nil
}

func writeFileSync(path string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// replaceDir moves a finished build into place; an older image is moved
// aside first and removed only once the new one is in.
func replaceDir(stage, final string) error {
	old := ""
	if _, err := os.Stat(final); err == nil {
		old = final + ".old-" + fmt.Sprint(time.Now().UnixNano())
		if err := os.Rename(final, old); err != nil {
			return fmt.Errorf("move the previous image aside: %w", err)
		}
	}
	if err := os.Rename(stage, final); err != nil {
		if old != "" {
			_ = os.Rename(old, final)
		}
		return fmt.Errorf("move the image into place: %w", err)
	}
	if old != "" {
		return os.RemoveAll(old)
	}
	return nil
}

// initramfs holds wrenn-init as /init and the kernel modules the guest needs
// before it can reach its disk and network.
func (b *builder) initramfs(ctx context.Context) error {
	mods, err := ResolveModules(b.kernel,
		[]string{"virtio_mmio", "virtio_blk", "virtio_net", "ext4", "crc32c_generic"},
		[]string{"button", "evdev", "ptp_kvm"})
	if err != nil {
		return err
	}
	root := filepath.Join(b.stage, "initramfs")
	for _, d := range []string{"dev", "proc", "sys", "newroot", "etc/wrenn"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := copyFile(b.opts.Init, filepath.Join(root, "init"), 0o755); err != nil {
		return err
	}
	var list strings.Builder
	for _, m := range mods {
		dst := filepath.Join("/lib/modules", b.kernel.Version, m.Path)
		if err := copyFile(filepath.Join(b.kernel.Modules, m.Path), filepath.Join(root, dst), 0o644); err != nil {
			return err
		}
		if m.Optional {
			list.WriteString("?")
		}
		list.WriteString(dst + "\n")
	}
	if err := os.WriteFile(filepath.Join(root, "etc/wrenn/modules"), []byte(list.String()), 0o644); err != nil {
		return err
	}
	if err := cpioArchive(ctx, root, filepath.Join(b.stage, FileInitramfs)); err != nil {
		return err
	}
	return os.RemoveAll(root)
}

func cpioArchive(ctx context.Context, root, out string) error {
	var names []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		names = append(names, rel)
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, "cpio", "--create", "--format=newc", "--null", "--quiet", "--owner=0:0", "--reproducible")
	cmd.Dir = root
	cmd.Stdin = strings.NewReader(strings.Join(names, "\x00") + "\x00")
	cmd.Stdout = f
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("cpio: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return f.Close()
}

// makeExt4 sizes the filesystem to its content plus room to work in, and
// fills it from the tree without mounting anything.
func makeExt4(ctx context.Context, tree, out string) error {
	var used int64
	err := filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if fi, err := d.Info(); err == nil && fi.Mode().IsRegular() {
			used += (fi.Size() + 4095) &^ 4095
		}
		used += 4096 // inode and directory overhead, roughly
		return nil
	})
	if err != nil {
		return err
	}
	// Room to work in, not room to grow: a sandbox's disk gets its size
	// from its own copy-on-write layer.
	sizeMiB := used>>20 + used>>23 + 12
	cmd := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-L", "wrenn-root", "-d", tree,
		"-E", "root_owner=0:0", "-O", "^has_journal", "-m", "0", out, fmt.Sprintf("%dM", sizeMiB))
	var outb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &outb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mkfs.ext4 (%d MiB): %v: %s", sizeMiB, err, strings.TrimSpace(outb.String()))
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

func humanSize(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

var errNoBase = errors.New("base image: debootstrap is not installed (scripts/setup installs it)")
