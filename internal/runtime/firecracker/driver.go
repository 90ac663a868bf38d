package firecracker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/cgroup"
	"git.omukk.dev/wrenn/sandbox/internal/guestimage"
	"git.omukk.dev/wrenn/sandbox/internal/guestinit"
	"git.omukk.dev/wrenn/sandbox/internal/memgen"
	"git.omukk.dev/wrenn/sandbox/internal/network"
	"git.omukk.dev/wrenn/sandbox/internal/runtime"
	"git.omukk.dev/wrenn/sandbox/internal/runtime/console"
	"git.omukk.dev/wrenn/sandbox/internal/runtime/qemu"
	"git.omukk.dev/wrenn/sandbox/internal/uffd"
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
	in := newInstance(spec)
	defer func() {
		if err != nil {
			in.abandon()
		}
	}()
	if err := runtime.CopyTree(ctx, filepath.Join(spec.ImageDir, guestimage.FileRootfs), in.disk); err != nil {
		return nil, err
	}
	if err := os.Truncate(in.disk, int64(spec.DiskMiB)<<20); err != nil {
		return nil, fmt.Errorf("size disk: %w", err)
	}
	if err := d.launch(ctx, spec, in); err != nil {
		return nil, err
	}
	cmdline := "console=ttyS0 reboot=k panic=-1 pci=off rw " + guestinit.Cmdline(spec.GuestParams())
	for _, call := range BootCalls(spec.VCPUs, spec.MemoryMiB,
		filepath.Join(spec.ImageDir, guestimage.FileKernel), filepath.Join(spec.ImageDir, guestimage.FileInitramfs),
		cmdline, diskFile, network.TapName, "", map[string]any{"wrenn": map[string]any{"sandboxId": spec.SandboxID}}) {
		if err := in.client.Do(ctx, call); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// diskFile is the guest's disk, named relative to the sandbox's directory
// (Firecracker's working directory): a snapshot records the drive's path,
// so a clone loading a template's snapshot in its own directory opens its
// own disk.
const diskFile = "disk.ext4"

func newInstance(spec runtime.Spec) *instance {
	return &instance{dir: spec.Dir, id: spec.SandboxID, api: filepath.Join(spec.Dir, "fc.sock"), disk: filepath.Join(spec.Dir, diskFile), done: make(chan struct{})}
}

// launch starts the Firecracker process, limited by the sandbox's cgroup,
// and waits for its API socket.
func (d *Driver) launch(ctx context.Context, spec runtime.Spec, in *instance) error {
	var err error
	in.cg, err = cgroup.Create(cgroup.SandboxName(spec.SandboxID), cgroup.Limits{CPUs: spec.VCPUs, MemoryBytes: int64(spec.MemoryMiB+vmmOverheadMiB) << 20})
	if err != nil {
		return err
	}
	// The guest's serial console is Firecracker's stdout: kept, capped.
	keeper, err := console.Start(filepath.Join(spec.Dir, console.FileName), console.MaxBytes)
	if err != nil {
		return err
	}
	defer keeper.CloseWriter() // Firecracker has its own
	in.console = keeper
	_ = os.Remove(in.api)
	cmd := exec.Command(d.bin, "--api-sock", in.api, "--id", spec.SandboxID)
	cmd.Dir = spec.Dir
	cmd.Stdout, cmd.Stderr = keeper.W, keeper.W
	// A private mount namespace (Go remounts / private in the child), and
	// the slot's network namespace inherited from the starting thread.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Setsid: true}
	if err := network.InNamespace(spec.Namespace, cmd.Start); err != nil {
		return fmt.Errorf("start firecracker: %w", err)
	}
	in.cmd = cmd
	go func() {
		in.waitErr = cmd.Wait()
		close(in.done)
	}()
	if err := in.cg.Add(cmd.Process.Pid); err != nil {
		return err
	}
	if err := waitSocket(ctx, in.api, in.done); err != nil {
		return err
	}
	in.client = NewClient(in.api)
	return nil
}

const (
	vmstateFile = "vmstate"
	memoryDir   = "memory" // the generational chain (memgen)
	uffdSocket  = "uffd.sock"
	pageSize    = 4096
)

// Pause snapshots the guest (Full the first time, Diff after), adds the
// memory to the sandbox's generational chain, and stops Firecracker; the
// disk stays. A failed snapshot lets the guest run on.
func (in *instance) Pause(ctx context.Context) error {
	chainDir := filepath.Join(in.dir, memoryDir)
	_, statErr := os.Lstat(filepath.Join(chainDir, "current"))
	full := errors.Is(statErr, os.ErrNotExist)
	memFile := filepath.Join(in.dir, "mem.diff")
	if full {
		memFile = filepath.Join(in.dir, "mem.full")
	}
	_ = os.Remove(memFile)
	for _, call := range SnapshotCalls(filepath.Join(in.dir, vmstateFile), memFile, full) {
		if err := in.client.Do(ctx, call); err != nil {
			_ = os.Remove(memFile)
			if rerr := in.client.Do(context.Background(), ResumeCall()); rerr != nil {
				return errors.Join(fmt.Errorf("snapshot: %w", err), fmt.Errorf("and the guest could not be resumed: %w", rerr))
			}
			return fmt.Errorf("snapshot: %w", err)
		}
	}
	in.Kill()
	in.stopPageServer()
	var err error
	if full {
		_, err = memgen.Create(chainDir, memFile, pageSize)
	} else {
		var c *memgen.Chain
		if c, err = memgen.Open(chainDir); err == nil {
			_, err = c.Append(memFile, nil)
		}
	}
	if err != nil {
		return fmt.Errorf("keep the guest's memory: %w", err)
	}
	return in.releaseVMM()
}

// Resume starts Firecracker again and loads the snapshot with its memory
// served on demand from the chain by a userfaultfd page server, which
// prefetches the rest in the background and stops with the VM.
func (d *Driver) Resume(ctx context.Context, spec runtime.Spec) (_ runtime.Instance, err error) {
	in := newInstance(spec)
	defer func() {
		if err != nil {
			in.abandon()
		}
	}()
	chain, err := memgen.Open(filepath.Join(spec.Dir, memoryDir))
	if err != nil {
		return nil, err
	}
	mem, err := chain.Map()
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(spec.Dir, uffdSocket)
	in.pages, err = uffd.Listen(sock, mem, slog.Default())
	if err != nil {
		return nil, err
	}
	serveCtx, stop := context.WithCancel(context.Background())
	in.stopServe = stop
	in.served = make(chan error, 1)
	go func() { in.served <- in.pages.Serve(serveCtx) }()
	if err := d.launch(ctx, spec, in); err != nil {
		return nil, err
	}
	if err := in.client.Do(ctx, LoadCall(filepath.Join(spec.Dir, vmstateFile), sock)); err != nil {
		return nil, err
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
	dir, id, api, disk string
	cmd                *exec.Cmd
	client             *Client
	cg                 *cgroup.Group
	done               chan struct{}
	waitErr            error
	killOnce           sync.Once
	console            *console.Keeper
	// The page server of a resumed guest.
	pages     *uffd.Server
	stopServe context.CancelFunc
	served    chan error
}

// stopPageServer waits for the page server to notice its VM is gone
// (or stops it) and releases its memory.
func (in *instance) stopPageServer() {
	if in.pages == nil {
		return
	}
	select {
	case <-in.served:
	case <-time.After(5 * time.Second):
		in.stopServe()
		<-in.served
	}
	in.stopServe()
	_ = in.pages.Close()
	in.pages = nil
}

// abandon undoes a start or resume that failed.
func (in *instance) abandon() {
	in.Kill()
	in.stopPageServer()
	_ = in.releaseVMM()
}

func (in *instance) PID() int              { return in.cmd.Process.Pid }
func (in *instance) Done() <-chan struct{} { return in.done }
func (in *instance) Err() error            { return in.waitErr }
func (in *instance) Console() string       { return filepath.Join(in.dir, console.FileName) }

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

// releaseVMM frees what the running VMM held: its cgroup and socket.
func (in *instance) releaseVMM() error {
	var errs []error
	if in.console != nil {
		in.console.WaitFor(10 * time.Second)
		in.console = nil
	}
	if in.cg != nil {
		if err := in.cg.Remove(); err != nil {
			errs = append(errs, err)
		}
		in.cg = nil
	}
	if err := os.Remove(in.api); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (in *instance) Release() error {
	in.stopPageServer()
	errs := []error{in.releaseVMM()}
	if err := os.Remove(in.disk); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (in *instance) HostRSS() uint64 { return runtime.ProcessRSS(in.PID()) }

// SaveSnapshot makes a template of a paused sandbox: a copy of its disk
// and device state, and its memory as a chain of one full image.
func (d *Driver) SaveSnapshot(ctx context.Context, sandboxDir, snapshotDir string) error {
	for _, f := range []string{diskFile, vmstateFile} {
		if err := runtime.CopyTree(ctx, filepath.Join(sandboxDir, f), filepath.Join(snapshotDir, f)); err != nil {
			return err
		}
	}
	chain, err := memgen.Open(filepath.Join(sandboxDir, memoryDir))
	if err != nil {
		return err
	}
	image := filepath.Join(snapshotDir, "memory.image")
	if err := chain.WriteImage(image, nil); err != nil {
		return fmt.Errorf("write the template's memory: %w", err)
	}
	_, err = memgen.Create(filepath.Join(snapshotDir, memoryDir), image, pageSize)
	return err
}

// PrepareClone gives a new sandbox a copy of the template's disk and
// device state, and a memory chain whose first generation is the
// template's image, hard-linked: generations are never written once made,
// the clone's pauses add its own, and its page server only reads them.
func (d *Driver) PrepareClone(ctx context.Context, snapshotDir string, spec runtime.Spec) error {
	for _, f := range []string{diskFile, vmstateFile} {
		if err := runtime.CopyTree(ctx, filepath.Join(snapshotDir, f), filepath.Join(spec.Dir, f)); err != nil {
			return err
		}
	}
	tpl, err := memgen.Open(filepath.Join(snapshotDir, memoryDir))
	if err != nil {
		return err
	}
	if tpl.H.Gens != 1 {
		return fmt.Errorf("template memory %s has %d generations, want one full image", snapshotDir, tpl.H.Gens)
	}
	base := filepath.Join(spec.Dir, "memory.base")
	if err := os.Link(tpl.Path(0), base); err != nil {
		if err := runtime.CopyTree(ctx, tpl.Path(0), base); err != nil {
			return err
		}
	}
	_, err = memgen.Create(filepath.Join(spec.Dir, memoryDir), base, tpl.H.BlockSize)
	return err
}

var (
	_ runtime.Driver           = (*Driver)(nil)
	_ runtime.Resumer          = (*Driver)(nil)
	_ runtime.Snapshotter      = (*Driver)(nil)
	_ runtime.PausableInstance = (*instance)(nil)
)
