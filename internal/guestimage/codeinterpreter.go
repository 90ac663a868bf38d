package guestimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"git.omukk.dev/wrenn/sandbox/internal/guestinit"
)

// CodeInterpreterKind is the image E2B's code-interpreter SDKs run in
// (their template code-interpreter-v1): base, Jupyter kernels for Python
// and R from Debian, the common data packages, and Wrenn's code
// interpreter server, which wrenn-init starts before envd.
const CodeInterpreterKind = "code-interpreter"

// Debian packages the code-interpreter image adds to base: IPython's
// kernel and the data stack agents reach for first, and R with its Jupyter
// kernel (IRkernel). Debian packages no JavaScript, TypeScript, Java or
// bash kernel for bookworm, so those languages are not offered. SciPy (and
// so scikit-learn and seaborn) is left out: Debian's depends on Pythran,
// which brings a C++ toolchain and Boost (about 500 MB). Matplotlib's
// fonttools takes SciPy or munkres: munkres, named here, is the one apt
// then picks. pip installs what is missing (the image lets pip install
// into the system Python).
var codeInterpreterPackages = []string{
	"python3-ipykernel", "python3-numpy", "python3-pandas", "python3-matplotlib", "python3-munkres", "python3-sympy",
	"python3-pil", "python3-requests", "python3-bs4", "python3-openpyxl", "python3-pip",
	"r-cran-irkernel",
}

// codeInterpreterFingerprint covers what the image adds to base.
func (b *builder) codeInterpreterFingerprint(base *Manifest) (string, map[string]string, error) {
	e, err := hashFile(b.opts.CodeInterpreter)
	if err != nil {
		return "", nil, fmt.Errorf("input code-interpreter: %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "builder %s\nimage %s\nbase %s\ncode-interpreter %s\npackages %s\n", BuilderVersion, b.opts.Name, base.Fingerprint, e.Sha256, strings.Join(codeInterpreterPackages, ","))
	components := map[string]string{"kernel": base.Kernel, "base": base.Fingerprint[:16], "code-interpreter": e.Sha256[:16]}
	return hex.EncodeToString(h.Sum(nil)), components, nil
}

// privately runs a shell script in a mount namespace of its own: whatever
// it mounts (the base image's disk, /proc and /dev in a chroot) goes away
// with it, on every path, and the host never sees it.
func (b *builder) privately(ctx context.Context, script string, args ...string) error {
	cmd := exec.CommandContext(ctx, "unshare", append([]string{"--mount", "--propagation", "private", "--", "sh", "-euc", script, "sh"}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C", "HOME=/root"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if b.opts.Progress != nil {
		cmd.Stdout = &prefixWriter{w: b.opts.Progress, buf: &out}
		cmd.Stderr = cmd.Stdout
	}
	if err := cmd.Run(); err != nil {
		tail := out.String()
		if len(tail) > 3000 {
			tail = tail[len(tail)-3000:]
		}
		return fmt.Errorf("%v\n%s", err, tail)
	}
	return nil
}

// codeInterpreterTree copies base's root filesystem (mounted read-only in
// a private mount namespace, copied with every owner, mode and link), adds
// the packages with apt in a chroot, and installs the server.
func (b *builder) codeInterpreterTree(ctx context.Context, root, baseDir string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	mnt := filepath.Join(b.stage, "base-mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	b.step("copy the base image's root filesystem")
	if err := b.privately(ctx, `mount -t ext4 -o loop,ro,noload "$1" "$2"; cp -a "$2/." "$3/"`, filepath.Join(baseDir, FileRootfs), mnt, root); err != nil {
		return fmt.Errorf("copy the base image: %w", err)
	}
	_ = os.Remove(mnt)
	// apt in the chroot needs the host's resolver, and must not start
	// services; both are undone before the image is made.
	resolv := filepath.Join(root, "etc/resolv.conf")
	hostResolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return fmt.Errorf("the host's resolv.conf (apt needs it): %w", err)
	}
	baseResolv, _ := os.ReadFile(resolv)
	policy := filepath.Join(root, "usr/sbin/policy-rc.d")
	_ = os.Remove(resolv)
	if err := os.WriteFile(resolv, hostResolv, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(policy, []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
		return err
	}
	b.step("apt-get install %s (from %s)", strings.Join(codeInterpreterPackages, " "), b.mirror())
	sources := fmt.Sprintf("deb %s bookworm main\n", b.mirror())
	if err := os.WriteFile(filepath.Join(root, "etc/apt/sources.list"), []byte(sources), 0o644); err != nil {
		return err
	}
	// Matplotlib builds its font cache on first import: do it here, once,
	// rather than in every sandbox's first plot.
	script := `root=$1; shift
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
chroot "$root" apt-get -q update
chroot "$root" apt-get -q install -y --no-install-recommends "$@"
chroot "$root" apt-get clean
chroot "$root" python3 -c 'import matplotlib.pyplot'
`
	if err := b.privately(ctx, script, append([]string{root}, codeInterpreterPackages...)...); err != nil {
		return fmt.Errorf("install the code interpreter's packages: %w", err)
	}
	_ = os.Remove(policy)
	if err := os.WriteFile(resolv, baseResolv, 0o644); err != nil {
		return err
	}
	// A sandbox is the user's machine: pip may install into the system
	// Python (PEP 668 would refuse).
	if err := os.WriteFile(filepath.Join(root, "etc/pip.conf"), []byte("[global]\nbreak-system-packages = true\n"), 0o644); err != nil {
		return err
	}
	for _, junk := range []string{"var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man", "usr/share/locale"} {
		p := filepath.Join(root, junk)
		_ = os.RemoveAll(p)
		_ = os.MkdirAll(p, 0o755)
	}
	for _, lang := range []string{"python3", "ir"} {
		if _, err := os.Stat(filepath.Join(root, "usr/share/jupyter/kernels", lang, "kernel.json")); err != nil {
			return fmt.Errorf("the image has no %s kernel spec after installing its package: %w", lang, err)
		}
	}
	return copyFile(b.opts.CodeInterpreter, filepath.Join(root, strings.TrimPrefix(guestinit.CodeInterpreterPath, "/")), 0o755)
}
