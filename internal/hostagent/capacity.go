package hostagent

import (
	"syscall"

	"git.omukk.dev/wrenn/sandbox/internal/sandbox"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
)

// capacityOf is what this host has and what its sandboxes hold, as the
// manager knows it: the one report behind both HostInfo and heartbeats.
func capacityOf(m *sandbox.Manager) hostapi.Capacity {
	cfg := m.Config()
	accel, _ := cfg.Driver.Accelerator()
	vcpus, mem := m.Committed()
	var st syscall.Statfs_t
	var free int64
	if syscall.Statfs(cfg.StateDir, &st) == nil {
		free = int64(st.Bavail * uint64(st.Bsize) >> 20)
	}
	return hostapi.Capacity{
		Runtime: cfg.Driver.Name(), Accelerator: accel, CPUs: int32(cfg.HostCPUs), MemoryMiB: int64(cfg.HostMemMiB), DiskFreeMiB: free,
		MaxSandboxes: int32(cfg.MaxSandboxes), Sandboxes: int32(len(m.List())), CommittedVCPUs: int32(vcpus), CommittedMemoryMiB: int64(mem),
		Templates: m.Templates(),
	}
}
