package guestimage

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// binaries builds envd and wrenn-init once for the package's tests.
func binaries(t *testing.T) (envd, init string) {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"envd", "wrenn-init"} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, name), "git.omukk.dev/wrenn/sandbox/cmd/"+name)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
	}
	return filepath.Join(dir, "envd"), filepath.Join(dir, "wrenn-init")
}

func needTools(t *testing.T) {
	t.Helper()
	if _, err := FindKernel(""); err != nil {
		t.Skipf("no kernel to build with: %v", err)
	}
	for _, tool := range []string{"xz", "cpio", "mkfs.ext4", busyboxPath, bashStaticPath} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing (scripts/setup installs it)", tool)
		}
	}
}

func TestBuildMinimalVerifySkipAndCorrupt(t *testing.T) {
	needTools(t)
	envd, init := binaries(t)
	dir := t.TempDir()
	var progress strings.Builder
	opts := Options{Name: "minimal", Dir: dir, Envd: envd, Init: init, Progress: &progress}
	res, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped || !strings.Contains(progress.String(), "mkfs.ext4") {
		t.Fatalf("first build skipped or showed no progress:\n%s", progress.String())
	}
	entries, _ := os.ReadDir(res.Dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "initramfs.cpio,manifest.json,rootfs.ext4,vmlinux" {
		t.Fatalf("image holds %v", names)
	}
	if size := res.Manifest.Files[FileRootfs].Size; size >= 40<<20 {
		t.Errorf("minimal rootfs is %d bytes; the target is under 40 MiB", size)
	}
	head := make([]byte, 4)
	f, _ := os.Open(filepath.Join(res.Dir, FileKernel))
	f.Read(head)
	f.Close()
	if string(head) != "\x7fELF" {
		t.Errorf("vmlinux is not an ELF file")
	}
	// The root filesystem holds what a guest needs, owned by the right users.
	out, err := exec.Command("debugfs", "-R", "ls -l /home", filepath.Join(res.Dir, FileRootfs)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), " 1000 ") {
		t.Errorf("debugfs ls /home: %v\n%s", err, out)
	}
	for _, p := range []string{"/sbin/init", "/usr/bin/envd", "/bin/bash", "/bin/busybox", "/etc/passwd"} {
		if out, err := exec.Command("debugfs", "-R", "stat "+p, filepath.Join(res.Dir, FileRootfs)).CombinedOutput(); err != nil || strings.Contains(string(out), "not found") {
			t.Errorf("rootfs lacks %s: %s", p, out)
		}
	}

	again, err := Build(context.Background(), opts)
	if err != nil || !again.Skipped {
		t.Fatalf("unchanged inputs rebuilt the image: %v %+v", err, again)
	}

	// A corrupt file is caught, named, and a build repairs it.
	rootfs := filepath.Join(res.Dir, FileRootfs)
	fh, err := os.OpenFile(rootfs, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteAt([]byte("garbage"), 1<<20)
	fh.Close()
	if _, err := Verify(res.Dir); err == nil || !strings.Contains(err.Error(), "rootfs.ext4 is corrupt") {
		t.Fatalf("verify of a corrupt rootfs: %v", err)
	}
	fixed, err := Build(context.Background(), opts)
	if err != nil || fixed.Skipped {
		t.Fatalf("rebuild of a corrupt image: %v %+v", err, fixed)
	}
	if _, err := Verify(res.Dir); err != nil {
		t.Fatal(err)
	}
	leftovers, _ := os.ReadDir(dir)
	if len(leftovers) != 1 {
		t.Errorf("images dir holds %d entries, want only the image", len(leftovers))
	}
}

func TestBuildBadInput(t *testing.T) {
	needTools(t)
	envd, init := binaries(t)
	dir := t.TempDir()
	cases := map[string]Options{
		"unknown image":  {Name: "fancy", Dir: dir, Envd: envd, Init: init},
		"missing kernel": {Name: "minimal", Dir: dir, Envd: envd, Init: init, KernelVersion: "0.0.0-none"},
		"missing envd":   {Name: "minimal", Dir: dir, Envd: filepath.Join(dir, "nope"), Init: init},
		"missing init":   {Name: "minimal", Dir: dir, Envd: envd, Init: filepath.Join(dir, "nope")},
	}
	for name, o := range cases {
		if _, err := Build(context.Background(), o); err == nil {
			t.Errorf("%s: built", name)
		} else if name == "missing kernel" && !strings.Contains(err.Error(), "linux-image-amd64") {
			t.Errorf("missing kernel: %v does not say what to install", err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed builds left %d entries", len(entries))
	}
}

// A full disk fails the build with the cause, and leaves no partial image.
func TestBuildDiskFull(t *testing.T) {
	needTools(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	envd, init := binaries(t)
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=48m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	defer syscall.Unmount(dir, syscall.MNT_DETACH)
	_, err := Build(context.Background(), Options{Name: "minimal", Dir: dir, Envd: envd, Init: init})
	if err == nil {
		t.Fatal("a build into 48 MiB succeeded")
	}
	if !strings.Contains(err.Error(), "no space left") && !strings.Contains(err.Error(), "No space left") && !strings.Contains(err.Error(), "Could not allocate") {
		t.Errorf("error does not name the full disk: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed build left %v", entries)
	}
}

func TestResolveModulesOrdersDependencies(t *testing.T) {
	k, err := FindKernel("")
	if err != nil {
		t.Skip(err)
	}
	mods, err := ResolveModules(k, []string{"ext4", "virtio_blk"}, []string{"no_such_module"})
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range mods {
		pos[m.Name] = i
	}
	for _, dep := range []string{"jbd2", "mbcache"} {
		if p, ok := pos[dep]; ok && p > pos["ext4"] {
			t.Errorf("%s loads after ext4", dep)
		}
	}
	if p, ok := pos["virtio"]; ok && p > pos["virtio_blk"] {
		t.Error("virtio loads after virtio_blk")
	}
	if _, err := ResolveModules(k, []string{"no_such_module"}, nil); err == nil {
		t.Error("a missing required module resolved")
	}
}
