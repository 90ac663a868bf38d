package hostagent

import (
	"git.omukk.dev/wrenn/sandbox/internal/sandbox"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
)

// capacityOf is what this host has and what its sandboxes hold, as the
// manager knows it: the one report behind both HostInfo and heartbeats.
func capacityOf(m *sandbox.Manager) hostapi.Capacity {
	cfg := m.Config()
	accel, _ := cfg.Driver.Accelerator()
	vcpus, mem := m.Committed()
	// What the host can still promise to a new sandbox's disk, not just
	// what is free: disks already promised are thin and fill later.
	free := m.DiskAvailableMiB()
	return hostapi.Capacity{
		Runtime: cfg.Driver.Name(), Accelerator: accel, CPUs: int32(cfg.HostCPUs), MemoryMiB: int64(cfg.HostMemMiB), DiskFreeMiB: free,
		MaxSandboxes: int32(cfg.MaxSandboxes), Sandboxes: int32(len(m.List())), CommittedVCPUs: int32(vcpus), CommittedMemoryMiB: int64(mem),
		Templates: m.Templates(),
	}
}
