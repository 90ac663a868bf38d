package osuser

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Filesystem operations as the requesting user.
//
// envd runs as root, but a request made for user "user" must be able to do
// to the filesystem exactly what that user could, no more: not read a
// root-only file, not replace a root-owned file through a symlink that code
// in the sandbox planted. Checking permissions in envd before acting (stat,
// then open) cannot be made correct: between the check and the use, guest
// code can swap any path component for a symlink. So envd does not check;
// it lets the kernel check, by making the system calls themselves with the
// user's credentials. Do runs a function on an OS thread locked to it whose
// effective UID and GID and supplementary groups are the user's: every
// open, mkdir, rename, unlink, stat and xattr call in it is checked by the
// kernel, component by component and symlink by symlink, at the moment it
// happens, against what the user may do. Symlinks are followed with the
// user's rights, so they lead only where the user could go anyway (and the
// kernel's protected_symlinks rules apply in sticky directories). Files and
// directories created in it belong to the user without a chown.
//
// Credentials on Linux belong to each thread; only the C library (and Go's
// syscall.Setuid) broadcasts a change to every thread. The raw system calls
// here change the calling thread alone. The real and saved UIDs stay 0 so
// that the thread can become root again afterwards; changing the effective
// UID from 0 clears the thread's effective capabilities (CAP_DAC_OVERRIDE,
// CAP_FOWNER, …), so root's privileges do not leak into the user's calls.
// setfsuid(2) would be narrower, but gVisor does not implement it, while it
// keeps per-thread setresuid as Linux does. A thread that fails to become
// root again is never given back to the Go scheduler: its goroutine exits
// still locked, and the runtime ends the thread. Threads the runtime starts
// while one is locked are cloned from a clean template thread, not from it.
// Descriptors opened inside Do keep the access they were opened with and
// can be used on any goroutine afterwards.

// Do runs f with u's filesystem permissions (see above). When envd already
// is u (root acting as root, or a non-root envd acting as itself), f runs
// directly.
func (u *User) Do(f func() error) error {
	if u.IsSelf() {
		return f()
	}
	if err := CanActAs(u); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := u.become(); err != nil {
			if restoreRoot() != nil {
				done <- err
				return // the thread dies with this goroutine
			}
			runtime.UnlockOSThread()
			done <- err
			return
		}
		ferr := f()
		if err := restoreRoot(); err != nil {
			done <- fmt.Errorf("envd could not switch back from user %s: %w", u.Name, err)
			return // the thread dies with this goroutine
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}

// rootGroups are envd's own supplementary groups, restored after each Do.
var rootGroups = func() []uint32 {
	gs, err := unix.Getgroups()
	if err != nil {
		return nil
	}
	out := make([]uint32, len(gs))
	for i, g := range gs {
		out[i] = uint32(g)
	}
	return out
}()

const unchanged = ^uintptr(0) // -1: leave this ID as it is

func setgroups(gs []uint32) error {
	var p unsafe.Pointer
	if len(gs) > 0 {
		p = unsafe.Pointer(&gs[0])
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(gs)), uintptr(p), 0); e != 0 {
		return fmt.Errorf("setgroups: %w", e)
	}
	return nil
}

// become switches the calling (locked) thread to u: groups and GID first,
// while the thread still has CAP_SETGID.
func (u *User) become() error {
	groups := u.Groups
	if len(groups) == 0 {
		groups = []uint32{u.GID}
	}
	if err := setgroups(groups); err != nil {
		return err
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, unchanged, uintptr(u.GID), unchanged); e != 0 {
		return fmt.Errorf("setresgid %d: %w", u.GID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, unchanged, uintptr(u.UID), unchanged); e != 0 {
		return fmt.Errorf("setresuid %d: %w", u.UID, e)
	}
	// Defence in depth: with SECBIT_NO_SETUID_FIXUP (or a kernel that does
	// not clear them), capabilities would survive the switch and override
	// every permission check. Refuse to act rather than act as root.
	var hdr = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	if data[0].Effective != 0 || data[1].Effective != 0 {
		return errors.New("the thread kept capabilities after switching users; refusing to act as a user with root's privileges")
	}
	return nil
}

// restoreRoot makes the calling thread envd's own again: UID first, which
// brings back the capabilities needed to restore the GID and groups.
func restoreRoot() error {
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, unchanged, uintptr(os.Getuid()), unchanged); e != 0 {
		return fmt.Errorf("setresuid back: %w", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, unchanged, uintptr(os.Getgid()), unchanged); e != 0 {
		return fmt.Errorf("setresgid back: %w", e)
	}
	return setgroups(rootGroups)
}
