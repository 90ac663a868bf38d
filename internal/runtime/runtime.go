// Package runtime defines what the agent needs of a sandbox runtime: start a
// guest from an image in a network slot and stop it. The drivers are qemu
// (microVMs; KVM or TCG), firecracker (microVMs on KVM) and gvisor (a
// user-space kernel for hosts without usable KVM).
package runtime

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"git.omukk.dev/wrenn/sandbox/internal/guestimage"
	"git.omukk.dev/wrenn/sandbox/internal/guestinit"
	"git.omukk.dev/wrenn/sandbox/internal/network"
)

// Spec is one guest to start.
type Spec struct {
	SandboxID  string
	TemplateID string
	ImageDir   string
	Manifest   *guestimage.Manifest
	VCPUs      int
	MemoryMiB  int
	DiskMiB    int
	// Namespace is the sandbox's network namespace, where a VM's tap
	// (network.TapName) is and its VMM runs.
	Namespace string
	// GuestNamespace is the guest's own network namespace, addressed and
	// routed as a VM's eth0 would be, for drivers that want one.
	GuestNamespace string
	Dir            string // the sandbox's own directory: disk layer, sockets, logs
	DNS            []netip.Addr
}

// GuestParams are what the guest is told about itself (its network, name
// servers, hostname and IDs): what guestinit.Cmdline writes for a VM's
// kernel and guestinit reads back in every guest.
func (s Spec) GuestParams() *guestinit.Params {
	return &guestinit.Params{
		Root: "/dev/vda", RootFSType: "ext4",
		Addr:     netip.PrefixFrom(network.GuestAddr, network.TapPrefix.Bits()),
		Gateway:  network.TapPrefix.Addr(),
		DNS:      s.DNS,
		Hostname: s.SandboxID, SandboxID: s.SandboxID, TemplateID: s.TemplateID,
	}
}

// Instance is a running guest. Its lifetime is the sandbox's, never a request's.
type Instance interface {
	PID() int
	Done() <-chan struct{} // closed when the guest's process has exited
	Err() error            // why it exited, after Done
	// Shutdown asks the guest to power off and waits; when ctx ends first
	// the guest is killed.
	Shutdown(ctx context.Context) error
	Kill()
	// Release frees what the driver holds for the guest (disk layer,
	// cgroup, sockets); the guest must have exited.
	Release() error
	HostRSS() uint64 // resident memory of the guest's process on the host
	Console() string // path of the guest's console log
}

// Driver starts guests.
type Driver interface {
	Name() string
	// Accelerator says what the driver runs guests with and why.
	Accelerator() (name, reason string)
	Start(ctx context.Context, spec Spec) (Instance, error)
}

// GuestNamespaceDriver is a driver whose guest is a network namespace of its
// own rather than a VM behind a tap (Spec.GuestNamespace).
type GuestNamespaceDriver interface {
	WantsGuestNamespace() bool
}

// Reclaimer is a driver that must clean up after an earlier agent run
// (containers, mounts) before the agent removes sandbox directories.
type Reclaimer interface {
	Reclaim(stateDir string) error
}

// PausableInstance can save its guest to its directory and exit, to be
// brought back by the driver's Resume.
type PausableInstance interface {
	Instance
	// Pause saves the guest's state and stops its process; the disk and
	// memory stay in the sandbox's directory. After a failed Pause the
	// guest is still running.
	Pause(ctx context.Context) error
}

// Resumer brings back a guest that an instance of it paused into spec.Dir.
type Resumer interface {
	Resume(ctx context.Context, spec Spec) (Instance, error)
}

// Snapshotter turns a paused sandbox's directory into a snapshot template
// and prepares new sandboxes' directories from one, which Resume then
// starts. The template's files are never written after SaveSnapshot.
type Snapshotter interface {
	SaveSnapshot(ctx context.Context, sandboxDir, snapshotDir string) error
	PrepareClone(ctx context.Context, snapshotDir string, spec Spec) error
}

// Salvager saves, as Pause would, a guest that an earlier agent run left
// running or half-paused in dir (the agent was killed), so that Resume
// can bring it back. It reports whether dir now holds a resumable guest;
// false means there is nothing left to save.
type Salvager interface {
	Salvage(ctx context.Context, spec Spec, pid int) (bool, error)
}

// Capabilities are what a driver can do beyond starting guests, found once
// when the agent starts. A nil interface is a capability the driver lacks.
type Capabilities struct {
	// Resumer brings paused guests back; without it sandboxes cannot be
	// paused (nor kept across agent restarts).
	Resumer     Resumer
	Snapshotter Snapshotter
	Salvager    Salvager
	Reclaimer   Reclaimer
	// GuestNamespace: the driver's guests want a network namespace of
	// their own (Spec.GuestNamespace).
	GuestNamespace bool
}

// CapabilitiesOf resolves d's capabilities, refusing a set that cannot
// work: templates and salvaged guests both come back through Resume.
func CapabilitiesOf(d Driver) (Capabilities, error) {
	var c Capabilities
	c.Resumer, _ = d.(Resumer)
	c.Snapshotter, _ = d.(Snapshotter)
	c.Salvager, _ = d.(Salvager)
	c.Reclaimer, _ = d.(Reclaimer)
	if g, ok := d.(GuestNamespaceDriver); ok {
		c.GuestNamespace = g.WantsGuestNamespace()
	}
	if c.Resumer == nil {
		if c.Snapshotter != nil {
			return c, fmt.Errorf("the %s runtime makes snapshots but cannot resume them (it has no Resume)", d.Name())
		}
		if c.Salvager != nil {
			return c, fmt.Errorf("the %s runtime salvages guests but cannot resume them (it has no Resume)", d.Name())
		}
	}
	return c, nil
}

// ProcessOwnedBy checks that pid is a guest of dir (its command line names
// files there), so a recycled pid is never touched.
func ProcessOwnedBy(pid int, dir string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && strings.Contains(string(b), dir+"/")
}

// ProcessRSS is the resident memory of a process, 0 when it is gone.
func ProcessRSS(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// ProcessAlive reports whether pid exists and is not a zombie: a process
// this agent did not start (runsc detaches its sandbox) is reaped by
// someone else, maybe late.
func ProcessAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// CopyTree copies a file or directory for a snapshot or a clone, with
// reflinks where the filesystem has them, else sparsely (memory images
// and disk layers are mostly holes). Running out of space is ENOSPC.
func CopyTree(ctx context.Context, src, dst string) error {
	out, err := exec.CommandContext(ctx, "cp", "-a", "--reflink=auto", "--sparse=always", src, dst).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("No space left")) {
			err = syscall.ENOSPC
		}
		return fmt.Errorf("copy %s: %w: %s", filepath.Base(src), err, bytes.TrimSpace(out))
	}
	return nil
}
