package qemu

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"git.omukk.dev/wrenn/sandbox/internal/guestimage"
	"git.omukk.dev/wrenn/sandbox/internal/runtime"
	"git.omukk.dev/wrenn/sandbox/internal/runtime/jail"
)

// Each QEMU runs confined (internal/runtime/jail): as a user of its own,
// in namespaces of its own, seeing only its sandbox's directory, its
// kernel, initramfs and disk backing files, with no capabilities and
// QEMU's seccomp sandbox on. A QEMU that a guest took over can then reach
// neither the host nor another sandbox.

const (
	// vmmGID is the group of every confined QEMU: snapshot files that
	// clones map (memory, disk) are shared through it; each jail sees
	// only its own.
	vmmGID = 2000000
	// vmmUIDBase + a sandbox's network slot is the user its QEMU runs as:
	// slots are unique among the running sandboxes of a host (across
	// agents, which have distinct slot ranges), so no two QEMUs share one.
	vmmUIDBase = vmmGID + 1
)

// jailFor confines the QEMU of spec: its user owns the sandbox's own
// files (not the snapshot files a clone links to), and the jail holds
// what QEMU opens by path.
func jailFor(spec runtime.Spec, accel, disk string) (*jail.Spec, error) {
	uid := uint32(vmmUIDBase + spec.Slot)
	if err := ownSandboxFiles(spec.Dir, uid); err != nil {
		return nil, err
	}
	ro := []string{filepath.Join(spec.ImageDir, guestimage.FileKernel), filepath.Join(spec.ImageDir, guestimage.FileInitramfs)}
	chain, err := backingChain(disk)
	if err != nil {
		return nil, err
	}
	ro = append(ro, chain...)
	s := &jail.Spec{UID: uid, GID: vmmGID, Groups: []uint32{vmmGID}, ReadOnly: ro, ReadWrite: []string{spec.Dir},
		Rlimits: map[int]uint64{
			unix.RLIMIT_NOFILE: 4096,
			unix.RLIMIT_NPROC:  512,
			unix.RLIMIT_CORE:   0,
			// No file QEMU writes is larger than the guest's disk or RAM.
			unix.RLIMIT_FSIZE: uint64(max(spec.DiskMiB, spec.MemoryMiB)+1024) << 20,
		}}
	if accel == AccelKVM {
		s.Devices = append(s.Devices, "/dev/kvm")
		if g, err := user.LookupGroup("kvm"); err == nil {
			gid, _ := strconv.Atoi(g.Gid)
			s.Groups = append(s.Groups, uint32(gid))
		}
	}
	return s, nil
}

// ownSandboxFiles gives the sandbox's directory and the files only it
// has (not hard links to a snapshot's) to uid, for QEMU to create and
// write them; the agent, root, keeps every access.
func ownSandboxFiles(dir string, uid uint32) error {
	if err := os.Chown(dir, int(uid), vmmGID); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			continue // a snapshot's file, shared through vmmGID
		}
		if err := os.Chown(filepath.Join(dir, e.Name()), int(uid), vmmGID); err != nil {
			return err
		}
	}
	return nil
}

// shareSnapshotFiles lets clones' QEMUs map a snapshot's memory (QEMU
// 7.2 opens it read-write even to map it private) and read its disk, as
// members of vmmGID; nobody else can.
func shareSnapshotFiles(snapshotDir string) error {
	for name, mode := range map[string]os.FileMode{memoryFile: 0o660, "disk.qcow2": 0o640} {
		p := filepath.Join(snapshotDir, name)
		if err := os.Chown(p, 0, vmmGID); err != nil {
			return err
		}
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
	}
	return nil
}

// backingChain lists the files a qcow2 disk layer reads through, each
// backing file's own backing file after it.
func backingChain(path string) ([]string, error) {
	var chain []string
	for depth := 0; depth < 16; depth++ {
		next, err := qcow2Backing(path)
		if err != nil || next == "" {
			return chain, err
		}
		if !filepath.IsAbs(next) {
			next = filepath.Join(filepath.Dir(path), next)
		}
		chain = append(chain, next)
		path = next
	}
	return nil, fmt.Errorf("%s: backing chain deeper than 16", path)
}

// qcow2Backing reads the backing file named in a qcow2 header (none for
// a raw file).
func qcow2Backing(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var h struct {
		Magic   [4]byte
		Version uint32
		Offset  uint64
		Size    uint32
	}
	if err := binary.Read(f, binary.BigEndian, &h); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return "", nil
		}
		return "", err
	}
	if string(h.Magic[:]) != "QFI\xfb" || h.Offset == 0 || h.Size == 0 {
		return "", nil
	}
	if h.Size > 4096 {
		return "", fmt.Errorf("%s: backing file name of %d bytes", path, h.Size)
	}
	name := make([]byte, h.Size)
	if _, err := f.ReadAt(name, int64(h.Offset)); err != nil {
		return "", fmt.Errorf("%s: backing file name: %w", path, err)
	}
	return string(name), nil
}
