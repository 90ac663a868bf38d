package sandbox

import (
	"fmt"
	"path/filepath"
	"syscall"

	"git.omukk.dev/wrenn/sandbox/internal/runtime"
)

// Disk layers are thin: a sandbox's disk takes host space as the guest
// writes. What the host promised (each sandbox's disk size) is counted
// against what it has free, so that a sandbox cannot be given a disk the
// host could never hold, and a host reports what it can still promise.

// diskReserveMiB is the host space never promised to sandboxes: at most
// 1 GiB, and a tenth of a small filesystem.
func diskReserveMiB(totalMiB int64) int64 { return min(1024, totalMiB/10) }

// diskAvailableLocked is the disk (MiB) this host can still promise: free
// space on the state directory's filesystem, less what its sandboxes were
// promised and have not written yet, less the reserve. Callers hold m.mu.
func (m *Manager) diskAvailableLocked() int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(m.cfg.StateDir, &st); err != nil {
		return 0
	}
	free := int64(st.Bavail) * st.Bsize >> 20
	total := int64(st.Blocks) * st.Bsize >> 20
	var owed int64
	for id, s := range m.boxes {
		// A box's request is fixed once it is in boxes; its directory is
		// named for its ID, whether made yet or not.
		promised := int64(s.info.DiskMiB) - runtime.AllocatedBytes(filepath.Join(m.sandboxesDir(), id))>>20
		owed += max(promised, 0)
	}
	return max(free-owed-diskReserveMiB(total), 0)
}

// DiskAvailableMiB is the disk this host can still promise to a sandbox.
func (m *Manager) DiskAvailableMiB() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.diskAvailableLocked()
}

// fitDiskLocked bounds a new sandbox's disk by what the host can promise:
// a disk the request left to the template's default shrinks to fit (not
// below the template's root filesystem); one asked for is refused if it
// does not fit. Callers hold m.mu.
func (m *Manager) fitDiskLocked(r *Request, rootfsMiB int, defaulted bool) error {
	avail := m.diskAvailableLocked()
	if defaulted && int64(r.DiskMiB) > avail {
		r.DiskMiB = max(int(avail), rootfsMiB)
	}
	if int64(r.DiskMiB) > avail {
		return fmt.Errorf("%w: a disk of %d MiB; this host can promise %d MiB more of its free space", ErrNoCapacity, r.DiskMiB, avail)
	}
	return nil
}
