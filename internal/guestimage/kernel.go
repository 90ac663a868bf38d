package guestimage

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// Kernel is a Debian kernel package's files on the build host.
type Kernel struct {
	Version string // e.g. 6.1.0-56-amd64
	Image   string // /boot/vmlinuz-<version>
	Modules string // /lib/modules/<version>
}

// FindKernel picks /boot/vmlinuz-<version> (the newest when version is "").
func FindKernel(version string) (*Kernel, error) {
	if version == "" {
		imgs, _ := filepath.Glob("/boot/vmlinuz-*")
		if len(imgs) == 0 {
			return nil, errors.New("no kernel in /boot: install linux-image-amd64 (scripts/setup does)")
		}
		slices.Sort(imgs)
		version = strings.TrimPrefix(filepath.Base(imgs[len(imgs)-1]), "vmlinuz-")
	}
	k := &Kernel{Version: version, Image: "/boot/vmlinuz-" + version, Modules: "/lib/modules/" + version}
	if _, err := os.Stat(k.Image); err != nil {
		return nil, fmt.Errorf("kernel %s: %w (install linux-image-amd64)", version, err)
	}
	if _, err := os.Stat(filepath.Join(k.Modules, "modules.dep")); err != nil {
		return nil, fmt.Errorf("modules of kernel %s: %w", version, err)
	}
	return k, nil
}

var xzMagic = []byte{0xFD, '7', 'z', 'X', 'Z', 0x00}

// ExtractVmlinux writes the uncompressed ELF kernel inside a bzImage: QEMU
// boots it directly through PVH, and it is what Firecracker boots.
func ExtractVmlinux(ctx context.Context, bzImage, out string) error {
	data, err := os.ReadFile(bzImage)
	if err != nil {
		return fmt.Errorf("read kernel: %w", err)
	}
	off := bytes.Index(data, xzMagic)
	if off < 0 {
		return fmt.Errorf("%s has no xz-compressed payload; only xz kernels (Debian's) are supported", bzImage)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, "xz", "--decompress", "--stdout", "--single-stream")
	cmd.Stdin = bytes.NewReader(data[off:])
	cmd.Stdout = f
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("decompress the kernel in %s: %v: %s", bzImage, err, strings.TrimSpace(stderr.String()))
	}
	if err := f.Close(); err != nil {
		return err
	}
	head := make([]byte, 4)
	g, err := os.Open(out)
	if err != nil {
		return err
	}
	defer g.Close()
	if _, err := g.Read(head); err != nil || !bytes.Equal(head, []byte("\x7fELF")) {
		return fmt.Errorf("the payload of %s is not an ELF kernel", bzImage)
	}
	return nil
}

// Module is one kernel module to put in the initramfs.
type Module struct {
	Name     string
	Path     string // relative to the modules directory
	Optional bool
}

// ResolveModules returns the modules to load for names, each after its
// dependencies (from modules.dep), skipping built-in ones.
func ResolveModules(k *Kernel, required, optional []string) ([]Module, error) {
	deps := map[string][]string{} // module name -> dependency paths
	paths := map[string]string{}
	f, err := os.Open(filepath.Join(k.Modules, "modules.dep"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		name := moduleName(mod)
		paths[name] = mod
		deps[name] = strings.Fields(rest)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(k.Modules, "modules.builtin")); err == nil {
		for l := range strings.Lines(string(b)) {
			builtin[moduleName(strings.TrimSpace(l))] = true
		}
	}
	var out []Module
	seen := map[string]bool{}
	var visit func(name string, opt bool) error
	visit = func(name string, opt bool) error {
		name = strings.ReplaceAll(name, "-", "_")
		if seen[name] || builtin[name] {
			return nil
		}
		p, ok := paths[name]
		if !ok {
			if opt {
				return nil
			}
			return fmt.Errorf("kernel %s has no module %s and does not build it in", k.Version, name)
		}
		seen[name] = true
		for _, d := range deps[name] {
			if err := visit(moduleName(d), opt); err != nil {
				return err
			}
		}
		out = append(out, Module{Name: name, Path: p, Optional: opt})
		return nil
	}
	for _, n := range required {
		if err := visit(n, false); err != nil {
			return nil, err
		}
	}
	for _, n := range optional {
		if err := visit(n, true); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func moduleName(path string) string {
	base := filepath.Base(path)
	base = strings.TrimSuffix(base, filepath.Ext(base)) // .xz/.zst, if any
	base = strings.TrimSuffix(base, ".ko")
	return strings.ReplaceAll(base, "-", "_")
}
