package guestinit

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ModuleList is where the image builder puts the kernel modules to load, one
// path per line in dependency order; "?" before a path marks it optional
// (hardware that may be absent, such as the KVM PTP clock).
const ModuleList = "/etc/wrenn/modules"

// NewRoot is where the root disk is mounted before switching to it.
const NewRoot = "/newroot"

// Initramfs is the first stage: load the drivers the kernel lacks, mount the
// root disk and switch to it, running its /sbin/init as the new PID 1.
func Initramfs() error {
	if err := mountAll([]mount{
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	}); err != nil {
		return err
	}
	params, err := readCmdline()
	if err != nil {
		return err
	}
	if err := loadModules(ModuleList); err != nil {
		return err
	}
	if err := waitForDevice(params.Root, 15*time.Second); err != nil {
		return err
	}
	if err := os.MkdirAll(NewRoot, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(params.Root, NewRoot, params.RootFSType, 0, ""); err != nil {
		return fmt.Errorf("mount root %s (%s) on %s: %w", params.Root, params.RootFSType, NewRoot, err)
	}
	for _, m := range []string{"/dev", "/proc", "/sys"} {
		target := filepath.Join(NewRoot, m)
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m, target, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s into the root: %w", m, err)
		}
	}
	// switch_root: make the new root "/", then become its init. The
	// initramfs files stay in memory; they are a few MB.
	if err := unix.Chdir(NewRoot); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move root to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	init := "/sbin/init"
	if err := unix.Exec(init, []string{init}, os.Environ()); err != nil {
		return fmt.Errorf("exec %s on the root disk: %w", init, err)
	}
	return nil
}

type mount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

func mountAll(ms []mount) error {
	for _, m := range ms {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", m.target, err)
		}
		if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

func loadModules(list string) error {
	f, err := os.Open(list)
	if err != nil {
		if os.IsNotExist(err) {
			return nil // a kernel with the drivers built in needs none
		}
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		optional := strings.HasPrefix(line, "?")
		path := strings.TrimPrefix(line, "?")
		if err := loadModule(path); err != nil {
			if optional {
				fmt.Fprintf(os.Stderr, "wrenn-init: optional module %s not loaded: %v\n", filepath.Base(path), err)
				continue
			}
			return err
		}
	}
	return sc.Err()
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open module %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", path, err)
	}
	return nil
}

func waitForDevice(dev string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(dev); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("root device %s did not appear within %s: is the disk attached as virtio-blk?", dev, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
