package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"git.omukk.dev/wrenn/sandbox/internal/cgroup"
	"git.omukk.dev/wrenn/sandbox/internal/guestimage"
	"git.omukk.dev/wrenn/sandbox/internal/network"
	"git.omukk.dev/wrenn/sandbox/internal/runtime"
)

// vmmOverheadMiB is host memory allowed to QEMU beyond guest RAM (device
// emulation, and under TCG the translation cache, capped by tb-size).
const vmmOverheadMiB = 192

// Driver runs sandboxes as QEMU microVMs.
type Driver struct {
	accel, reason string
}

// NewDriver checks QEMU is installed and resolves the accelerator.
func NewDriver(accel string) (*Driver, error) {
	for _, bin := range []string{Binary, "qemu-img"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%s not found: install qemu-system-x86 and qemu-utils (scripts/setup)", bin)
		}
	}
	a, why, err := ChooseAccel(accel)
	if err != nil {
		return nil, err
	}
	return &Driver{accel: a, reason: why}, nil
}

func (d *Driver) Name() string                  { return "qemu" }
func (d *Driver) Accelerator() (string, string) { return d.accel, d.reason }
func cgroupName(sandboxID string) string        { return "sb-" + sandboxID }
func diskPath(dir string) string                { return filepath.Join(dir, "disk.qcow2") }

// Start makes the sandbox's copy-on-write disk over the image's read-only
// rootfs, limits it with a cgroup, and boots it on the slot's tap.
func (d *Driver) Start(ctx context.Context, spec runtime.Spec) (_ runtime.Instance, err error) {
	in := &instance{dir: spec.Dir, sandboxID: spec.SandboxID}
	defer func() {
		if err != nil {
			in.Kill()
			if rerr := in.Release(); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	backing, err := filepath.Abs(filepath.Join(spec.ImageDir, guestimage.FileRootfs))
	if err != nil {
		return nil, err
	}
	size := fmt.Sprintf("%dM", spec.DiskMiB)
	out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", backing, "-o", "lazy_refcounts=on", diskPath(spec.Dir), size).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("create disk layer: %v: %s", err, bytes.TrimSpace(out))
	}
	in.disk = diskPath(spec.Dir)
	in.cg, err = cgroup.Create(cgroupName(spec.SandboxID), cgroup.Limits{CPUs: spec.VCPUs, MemoryBytes: int64(spec.MemoryMiB+vmmOverheadMiB) << 20})
	if err != nil {
		return nil, err
	}
	tap, err := network.OpenTap(spec.Slot.Namespace, network.TapName)
	if err != nil {
		return nil, err
	}
	defer tap.Close() // QEMU has its own copy once started
	cmdline := []string{
		fmt.Sprintf("wrenn.ip=%s/30", network.GuestAddr),
		"wrenn.gw=" + network.TapPrefix.Addr().String(),
		"wrenn.hostname=" + spec.SandboxID,
		"wrenn.sandbox=" + spec.SandboxID,
	}
	if spec.TemplateID != "" {
		cmdline = append(cmdline, "wrenn.template="+spec.TemplateID)
	}
	if len(spec.DNS) > 0 {
		var dns []string
		for _, a := range spec.DNS {
			dns = append(dns, a.String())
		}
		cmdline = append(cmdline, "wrenn.dns="+strings.Join(dns, ","))
	}
	vm := &VM{
		Accel: d.accel, VCPUs: spec.VCPUs, MemoryMiB: spec.MemoryMiB,
		Kernel: filepath.Join(spec.ImageDir, guestimage.FileKernel), Initrd: filepath.Join(spec.ImageDir, guestimage.FileInitramfs),
		Disk: in.disk, DiskFormat: "qcow2", TapFile: tap,
		QMPSocket: filepath.Join(spec.Dir, "qmp.sock"), ConsoleLog: filepath.Join(spec.Dir, "console.log"),
		Cmdline: strings.Join(cmdline, " "),
	}
	in.vm, err = Start(context.Background(), vm)
	if err != nil {
		return nil, err
	}
	if err := in.cg.Add(in.vm.Cmd.Process.Pid); err != nil {
		return nil, err
	}
	return in, nil
}

type instance struct {
	dir, sandboxID string
	disk           string
	vm             *Instance
	cg             *cgroup.Group
}

func (in *instance) PID() int              { return in.vm.Cmd.Process.Pid }
func (in *instance) Done() <-chan struct{} { return in.vm.Done() }
func (in *instance) Console() string       { return in.vm.VM.ConsoleLog }

func (in *instance) Err() error {
	if err := in.vm.Err(); err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(in.vm.Stderr()))
	}
	return nil
}

func (in *instance) Shutdown(ctx context.Context) error {
	if _, err := in.vm.QMP.Execute(ctx, "system_powerdown", nil); err != nil {
		in.Kill()
		return nil // it is stopped either way; the power button was just not heard
	}
	select {
	case <-in.vm.Done():
		return nil
	case <-ctx.Done():
		in.Kill()
		return fmt.Errorf("guest did not power off in time; killed")
	}
}

func (in *instance) Kill() {
	if in.vm != nil {
		in.vm.Kill()
	}
}

func (in *instance) Release() error {
	var errs []error
	if in.cg != nil {
		if err := in.cg.Remove(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, f := range []string{in.disk, filepath.Join(in.dir, "qmp.sock")} {
		if f == "" {
			continue
		}
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (in *instance) HostRSS() uint64 { return ProcessRSS(in.PID()) }

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

var _ runtime.Driver = (*Driver)(nil)
