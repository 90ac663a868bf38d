package firecracker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/cgroup"
	"git.omukk.dev/wrenn/sandbox/internal/guestimage"
	"git.omukk.dev/wrenn/sandbox/internal/network"
	"git.omukk.dev/wrenn/sandbox/internal/runtime"
	"git.omukk.dev/wrenn/sandbox/internal/runtime/qemu"
)

// vmmOverheadMiB is host memory allowed beyond guest RAM (Firecracker
// promises under 5 MiB; the rest is headroom for the page cache of its disk).
const vmmOverheadMiB = 64

// Driver runs sandboxes under Firecracker.
type Driver struct {
	bin string
}

// NewDriver finds the firecracker binary and a KVM that runs standard
// guests; either missing is an error saying which.
func NewDriver(bin string) (*Driver, error) {
	if bin == "" {
		bin = "firecracker"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("firecracker binary %q not found: install Firecracker 1.x on this host, or use --runtime qemu", bin)
	}
	accel, why, err := qemu.ChooseAccel(qemu.AccelAuto)
	if err != nil {
		return nil, err
	}
	if accel != qemu.AccelKVM {
		return nil, fmt.Errorf("firecracker needs a KVM that runs standard guests, and this host has none (%s): use --runtime qemu", why)
	}
	return &Driver{bin: path}, nil
}

func (d *Driver) Name() string                  { return "firecracker" }
func (d *Driver) Accelerator() (string, string) { return "kvm", "firecracker runs on KVM only" }

// Start copies the template's rootfs (a reflink where the filesystem has
// them, else a sparse copy), grows it to the sandbox's disk size, and boots
// Firecracker in the slot's namespace with a private mount namespace.
func (d *Driver) Start(ctx context.Context, spec runtime.Spec) (_ runtime.Instance, err error) {
	in := &instance{dir: spec.Dir, api: filepath.Join(spec.Dir, "fc.sock"), done: make(chan struct{})}
	defer func() {
		if err != nil {
			in.Kill()
			if rerr := in.Release(); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	in.disk = filepath.Join(spec.Dir, "disk.ext4")
	if out, err := exec.CommandContext(ctx, "cp", "--reflink=auto", "--sparse=always", filepath.Join(spec.ImageDir, guestimage.FileRootfs), in.disk).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copy rootfs: %v: %s", err, out)
	}
	if err := os.Truncate(in.disk, int64(spec.DiskMiB)<<20); err != nil {
		return nil, fmt.Errorf("size disk: %w", err)
	}
	in.cg, err = cgroup.Create("sb-"+spec.SandboxID, cgroup.Limits{CPUs: spec.VCPUs, MemoryBytes: int64(spec.MemoryMiB+vmmOverheadMiB) << 20})
	if err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(spec.Dir, "console.log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(d.bin, "--api-sock", in.api, "--id", spec.SandboxID)
	cmd.Stdout, cmd.Stderr = log, log
	// A private mount namespace (Go remounts / private in the child), and
	// the slot's network namespace inherited from the starting thread.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Setsid: true}
	if err := network.InNamespace(spec.Slot.Namespace, cmd.Start); err != nil {
		return nil, fmt.Errorf("start firecracker: %w", err)
	}
	in.cmd = cmd
	go func() {
		in.waitErr = cmd.Wait()
		close(in.done)
	}()
	if err := in.cg.Add(cmd.Process.Pid); err != nil {
		return nil, err
	}
	if err := waitSocket(ctx, in.api, in.done); err != nil {
		return nil, err
	}
	args := []string{"console=ttyS0", "reboot=k", "panic=-1", "pci=off", "root=/dev/vda", "rw", "rootfstype=ext4",
		fmt.Sprintf("wrenn.ip=%s/30", network.GuestAddr), "wrenn.gw=" + network.TapPrefix.Addr().String(),
		"wrenn.hostname=" + spec.SandboxID, "wrenn.sandbox=" + spec.SandboxID}
	if spec.TemplateID != "" {
		args = append(args, "wrenn.template="+spec.TemplateID)
	}
	client := NewClient(in.api)
	in.client = client
	for _, call := range BootCalls(spec.VCPUs, spec.MemoryMiB,
		filepath.Join(spec.ImageDir, guestimage.FileKernel), filepath.Join(spec.ImageDir, guestimage.FileInitramfs),
		strings.Join(args, " "), in.disk, network.TapName, "", map[string]any{"wrenn": map[string]any{"sandboxId": spec.SandboxID}}) {
		if err := client.Do(ctx, call); err != nil {
			return nil, err
		}
	}
	return in, nil
}

func waitSocket(ctx context.Context, path string, gone <-chan struct{}) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-gone:
			return errors.New("firecracker exited before opening its API socket")
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("firecracker did not open %s within 5s", path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type instance struct {
	dir, api, disk string
	cmd            *exec.Cmd
	client         *Client
	cg             *cgroup.Group
	done           chan struct{}
	waitErr        error
	killOnce       sync.Once
}

func (in *instance) PID() int              { return in.cmd.Process.Pid }
func (in *instance) Done() <-chan struct{} { return in.done }
func (in *instance) Err() error            { return in.waitErr }
func (in *instance) Console() string       { return filepath.Join(in.dir, "console.log") }

func (in *instance) Shutdown(ctx context.Context) error {
	if err := in.client.Do(ctx, ShutdownCall()); err != nil {
		in.Kill()
		return nil
	}
	select {
	case <-in.done:
		return nil
	case <-ctx.Done():
		in.Kill()
		return errors.New("guest did not power off in time; killed")
	}
}

func (in *instance) Kill() {
	if in.cmd == nil || in.cmd.Process == nil {
		return
	}
	in.killOnce.Do(func() { _ = in.cmd.Process.Kill() })
	<-in.done
}

func (in *instance) Release() error {
	var errs []error
	if in.cg != nil {
		if err := in.cg.Remove(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, f := range []string{in.disk, in.api} {
		if f == "" {
			continue
		}
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (in *instance) HostRSS() uint64 { return runtime.ProcessRSS(in.PID()) }

var _ runtime.Driver = (*Driver)(nil)
