// Package jail confines a VMM process as Firecracker's jailer does: the
// process starts in new mount, PID, IPC, UTS and network namespaces, in a
// root of its own that holds the system's programs and libraries (read
// only), a few device nodes and only the files it was given; then it
// loses every capability (its bounding set too), may gain none
// (no_new_privs), runs as an unprivileged user with resource limits, and
// only then becomes the VMM.
//
// The jailer is this same binary started under another name (see init),
// so that the confinement happens in the child between fork and exec,
// which exec.Cmd cannot do.
package jail

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

const jailerName = "wrenn-jailer"

// DefaultRoot is where each jail's root is built, in the jail's own mount
// namespace (so the same empty directory serves every jail).
const DefaultRoot = "/run/wrenn-jail"

// Spec describes a jail.
type Spec struct {
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups,omitempty"`
	// Root is the mount point the jail's root is built on (DefaultRoot).
	Root string `json:"root,omitempty"`
	// ReadOnly and ReadWrite are files or directories made visible at the
	// same path inside the jail; Devices are device nodes (/dev/kvm).
	ReadOnly  []string `json:"ro,omitempty"`
	ReadWrite []string `json:"rw,omitempty"`
	Devices   []string `json:"dev,omitempty"`
	// Rlimits by resource (unix.RLIMIT_*), soft and hard alike.
	Rlimits map[int]uint64 `json:"rlimits,omitempty"`
}

// systemDirs are shared read-only (or recreated as the symlinks they are)
// so that the VMM, a dynamically linked program, finds its libraries and
// data files.
var systemDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}

// baseDevices are the device nodes every jail gets.
var baseDevices = []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"}

// Command returns a command that runs argv (argv[0] a path) in the jail.
// Extra files, stdio and the cgroup are the caller's to set, as for any
// exec.Cmd; the process's PID is the VMM's.
func Command(s Spec, argv ...string) (*exec.Cmd, error) {
	if s.UID == 0 || s.GID == 0 {
		return nil, errors.New("a jail runs as an unprivileged user and group")
	}
	if !filepath.IsAbs(argv[0]) {
		return nil, fmt.Errorf("jail: %s must be an absolute path", argv[0])
	}
	if s.Root == "" {
		s.Root = DefaultRoot
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, append([]string{string(b)}, argv...)...)
	cmd.Args[0] = jailerName
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET,
	}
	return cmd, nil
}

func init() {
	if filepath.Base(os.Args[0]) != jailerName || len(os.Args) < 3 {
		return
	}
	// Capabilities, no_new_privs and exec are per thread: all on this one.
	goruntime.LockOSThread()
	var s Spec
	err := json.Unmarshal([]byte(os.Args[1]), &s)
	if err == nil {
		err = enter(s, os.Args[2:])
	}
	fmt.Fprintln(os.Stderr, jailerName+":", err)
	os.Exit(126)
}

// enter builds the jail, enters it, drops privileges and execs argv; it
// returns only on failure.
func enter(s Spec, argv []string) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := os.MkdirAll(s.Root, 0o755); err != nil {
		return err
	}
	root := s.Root
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=1m,mode=0755"); err != nil {
		return fmt.Errorf("jail root: %w", err)
	}
	for _, d := range systemDirs {
		fi, err := os.Lstat(d)
		switch {
		case err != nil:
			continue
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(d)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, root+d); err != nil {
				return err
			}
		default:
			if err := bind(root, d, true, unix.MS_REC); err != nil {
				return err
			}
		}
	}
	for _, f := range []string{"/etc/ld.so.cache"} {
		if _, err := os.Stat(f); err == nil {
			if err := bind(root, f, true, 0); err != nil {
				return err
			}
		}
	}
	for _, d := range append(baseDevices, s.Devices...) {
		if err := bind(root, d, false, 0); err != nil {
			return err
		}
	}
	for _, p := range s.ReadOnly {
		if err := bind(root, p, true, 0); err != nil {
			return err
		}
	}
	for _, p := range s.ReadWrite {
		if err := bind(root, p, false, 0); err != nil {
			return err
		}
	}
	// Its own /proc shows the jail's processes only (a new PID namespace).
	if err := os.Mkdir(root+"/proc", 0o555); err != nil {
		return err
	}
	if err := unix.Mount("proc", root+"/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount proc: %w", err)
	}
	if err := os.Mkdir(root+"/.old", 0o700); err != nil {
		return err
	}
	if err := unix.PivotRoot(root, root+"/.old"); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Unmount("/.old", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("leave the host's root: %w", err)
	}
	if err := os.Remove("/.old"); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("make the jail root read-only: %w", err)
	}
	for res, v := range s.Rlimits {
		if err := unix.Setrlimit(res, &unix.Rlimit{Cur: v, Max: v}); err != nil {
			return fmt.Errorf("rlimit %d: %w", res, err)
		}
	}
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("drop capability %d: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	groups := make([]int, len(s.Groups))
	for i, g := range s.Groups {
		groups[i] = int(g)
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(int(s.GID)); err != nil {
		return fmt.Errorf("setgid: %w", err)
	}
	// From root to another user: the effective, permitted and ambient
	// capabilities go with it.
	if err := syscall.Setuid(int(s.UID)); err != nil {
		return fmt.Errorf("setuid: %w", err)
	}
	return syscall.Exec(argv[0], argv, os.Environ())
}

// bind makes path (a file or a directory) visible at the same place under
// root, read-only if ro; device nodes keep working, nothing else setuid
// or device-like does.
func bind(root, path string, ro bool, extra uintptr) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	target := filepath.Join(root, path)
	if fi.IsDir() {
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
	} else {
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		f.Close()
	}
	if err := unix.Mount(path, target, "", unix.MS_BIND|extra, ""); err != nil {
		return fmt.Errorf("bind %s: %w", path, err)
	}
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_NOSUID)
	if ro {
		flags |= unix.MS_RDONLY
	}
	if fi.Mode()&os.ModeDevice == 0 {
		flags |= unix.MS_NODEV
	}
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		return fmt.Errorf("restrict %s: %w", path, err)
	}
	return nil
}
