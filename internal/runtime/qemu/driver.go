package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"git.omukk.dev/wrenn/sandbox/internal/cgroup"
	"git.omukk.dev/wrenn/sandbox/internal/guestimage"
	"git.omukk.dev/wrenn/sandbox/internal/guestinit"
	"git.omukk.dev/wrenn/sandbox/internal/network"
	"git.omukk.dev/wrenn/sandbox/internal/runtime"
	"git.omukk.dev/wrenn/sandbox/internal/runtime/console"
)

// vmmOverheadMiB is host memory allowed to QEMU beyond guest RAM (device
// emulation, and under TCG the translation cache, capped by tb-size).
const vmmOverheadMiB = 192

// Driver runs sandboxes as QEMU microVMs.
type Driver struct {
	accel, reason string
	// Log receives what a running guest's watcher notices (default: slog's).
	Log *slog.Logger
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
	return &Driver{accel: a, reason: why, Log: slog.Default()}, nil
}

func (d *Driver) Name() string                  { return "qemu" }
func (d *Driver) Accelerator() (string, string) { return d.accel, d.reason }
func cgroupName(sandboxID string) string        { return cgroup.SandboxName(sandboxID) }
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
	if err := d.launch(ctx, in, spec, false); err != nil {
		return nil, err
	}
	in.watchDisk(d.log())
	return in, nil
}

func (d *Driver) log() *slog.Logger {
	if d.Log == nil {
		return slog.Default()
	}
	return d.Log
}

// launch boots the guest of in, or with incoming, starts QEMU waiting for
// its saved device state.
func (d *Driver) launch(ctx context.Context, in *instance, spec runtime.Spec, incoming bool) error {
	tap, err := network.OpenTap(spec.Namespace, network.TapName)
	if err != nil {
		return err
	}
	defer tap.Close() // QEMU has its own copy once started
	in.mem, err = mappedMemory(spec.Dir)
	if err != nil {
		return err
	}
	confined, err := jailFor(spec, d.accel, in.disk)
	if err != nil {
		return fmt.Errorf("confine QEMU: %w", err)
	}
	var state *os.File
	if incoming {
		// Read by QEMU from this descriptor: it cannot open the path.
		if state, err = os.Open(filepath.Join(spec.Dir, stateFile)); err != nil {
			return err
		}
		defer state.Close()
	}
	keeper, err := console.Start(filepath.Join(spec.Dir, console.FileName), console.MaxBytes)
	if err != nil {
		return err
	}
	vm := &VM{
		Jail: confined, IncomingFile: state,
		MemoryFile: in.mem, Incoming: incoming, LegacyIncoming: in.legacyState,
		Accel: d.accel, VCPUs: spec.VCPUs, MemoryMiB: spec.MemoryMiB,
		Kernel: filepath.Join(spec.ImageDir, guestimage.FileKernel), Initrd: filepath.Join(spec.ImageDir, guestimage.FileInitramfs),
		Disk: in.disk, DiskFormat: "qcow2", TapFile: tap,
		QMPSocket: filepath.Join(spec.Dir, "qmp.sock"), ConsoleLog: keeper.Path, ConsoleFile: keeper.W,
		Cmdline: guestinit.Cmdline(spec.GuestParams()),
	}
	in.vm, err = Start(context.Background(), vm)
	if err != nil {
		keeper.Stop()
		return err
	}
	keeper.CloseWriter() // QEMU has its own
	in.console = keeper
	return in.cg.Add(in.vm.Cmd.Process.Pid)
}

type instance struct {
	// saving excludes the disk watcher's cont while a pause holds the
	// guest stopped.
	saving         sync.Mutex
	watcherDone    chan struct{}
	dir, sandboxID string
	disk           string
	mem            string // the memory file QEMU maps (memoryFile, or a clone's memoryBase)
	legacyState    bool   // restoring a state saved by an earlier Wrenn (see legacyState)
	vm             *Instance
	cg             *cgroup.Group
	// console keeps the serial console, capped; it ends with QEMU.
	console *console.Keeper
}

// endConsole waits for the console keeper, once QEMU has exited.
func (in *instance) endConsole() {
	if in.console != nil {
		in.console.Wait()
		in.console = nil
	}
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

// waitWatcher waits for the disk watcher, which ends with the process.
func (in *instance) waitWatcher() {
	if in.watcherDone != nil {
		<-in.watcherDone
	}
}

func (in *instance) Release() error {
	in.waitWatcher()
	in.endConsole()
	var errs []error
	if in.cg != nil {
		if err := in.cg.Remove(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, f := range []string{in.disk, filepath.Join(in.dir, "qmp.sock"), filepath.Join(in.dir, memoryFile), filepath.Join(in.dir, memoryBase), filepath.Join(in.dir, memoryTmpFile), filepath.Join(in.dir, stateFile), filepath.Join(in.dir, stateTmpFile)} {
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

// diskRoomToContinue is the free space under the sandbox's directory that
// lets a guest stopped on a full disk continue.
const diskRoomToContinue = 64 << 20

// watchDisk continues a guest that QEMU stopped because a write to its
// disk layer failed (werror=enospc, QEMU's default: the request is kept
// and retried, nothing is lost) once the host disk has room again, and
// logs both; without it the sandbox would stay frozen. It ends with the
// QEMU process.
func (in *instance) watchDisk(log *slog.Logger) {
	in.watcherDone = make(chan struct{})
	go func() {
		defer close(in.watcherDone)
		stalled := false
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-in.vm.Done():
				return
			case <-tick.C:
			}
			in.saving.Lock()
			stalled = in.continueAfterDiskFull(log, stalled)
			in.saving.Unlock()
		}
	}()
}

func (in *instance) continueAfterDiskFull(log *slog.Logger, stalled bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := in.vm.QMP.Execute(ctx, "query-status", nil)
	if err != nil {
		return stalled
	}
	var st struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(raw, &st) != nil || st.Status != "io-error" {
		return false
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(in.dir, &fs); err != nil {
		return stalled
	}
	free := int64(fs.Bavail) * fs.Bsize
	if free < diskRoomToContinue {
		if !stalled {
			log.Warn("guest stopped: a write to its disk layer failed, the host disk is full; it continues once there is room", "sandbox", in.sandboxID, "free_mib", free>>20, "dir", in.dir)
		}
		return true
	}
	if _, err := in.vm.QMP.Execute(ctx, "cont", nil); err != nil {
		log.Error("continue a guest stopped on a disk error", "sandbox", in.sandboxID, "err", err)
		return stalled
	}
	log.Info("guest continues: the host disk has room again", "sandbox", in.sandboxID, "free_mib", free>>20)
	return false
}

var (
	_ runtime.Driver   = (*Driver)(nil)
	_ runtime.Salvager = (*Driver)(nil)
)

// State files of a paused sandbox, beside its disk layer.
const (
	stateFile     = "state" // device state (no RAM), from xen-save-devices-state
	stateTmpFile  = "state.part"
	memoryFile    = "memory" // guest RAM
	memoryTmpFile = "memory.part"
	// memoryBase is a clone's link to its template's memory, mapped until
	// the clone's first pause gives it a memory file of its own.
	memoryBase = "memory.base"
)

// mappedMemory is the memory file a guest in dir maps: its own, or, for a
// clone not yet paused, its template's.
func mappedMemory(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(dir, memoryFile)); err == nil {
		return filepath.Join(dir, memoryFile), nil
	}
	if _, err := os.Stat(filepath.Join(dir, memoryBase)); err == nil {
		return filepath.Join(dir, memoryBase), nil
	}
	return filepath.Join(dir, memoryFile), nil // a new guest: QEMU creates it
}

// Pause stops the guest and saves the pages it wrote and its device state.
func (in *instance) Pause(ctx context.Context) error {
	in.saving.Lock()
	err := saveState(ctx, in.vm.QMP, in.PID(), in.dir, in.mem)
	in.saving.Unlock()
	if err != nil {
		return err
	}
	_, _ = in.vm.QMP.Execute(ctx, "quit", nil)
	select {
	case <-in.vm.Done():
	case <-ctx.Done():
		in.Kill()
	}
	in.waitWatcher()
	in.endConsole()
	// The process is gone; its cgroup and socket go, the disk, memory and
	// state stay for Resume.
	if in.cg != nil {
		if err := in.cg.Remove(); err != nil {
			return err
		}
		in.cg = nil
	}
	_ = os.Remove(filepath.Join(in.dir, "qmp.sock"))
	// The disk layer is written through the host's page cache
	// (cache=unsafe); a paused sandbox must survive the host going down.
	return syncFile(in.disk)
}

// saveState stops the guest of QEMU pid, saves the pages it wrote into the
// sandbox's memory file (a clone's first pause copies its template's
// memory first) and its device state; on failure the guest runs on and
// the files a resume would read are as they were.
func saveState(ctx context.Context, q *QMP, pid int, dir, mapped string) error {
	if _, err := q.Execute(ctx, "stop", nil); err != nil {
		return err
	}
	stateTmp, memTmp := filepath.Join(dir, stateTmpFile), filepath.Join(dir, memoryTmpFile)
	resume := func(cause error) error {
		os.Remove(stateTmp)
		os.Remove(memTmp)
		if _, err := q.Execute(context.Background(), "cont", nil); err != nil {
			return errors.Join(cause, fmt.Errorf("and the guest could not be resumed: %w", err))
		}
		return cause
	}
	target := filepath.Join(dir, memoryFile)
	clone := filepath.Base(mapped) == memoryBase
	if clone {
		if err := runtime.CopyTree(ctx, mapped, memTmp); err != nil {
			return resume(fmt.Errorf("give the clone its own memory file: %w", err))
		}
		target = memTmp
	}
	if _, err := saveGuestMemory(pid, mapped, target); err != nil {
		return resume(fmt.Errorf("save guest memory: %w", err))
	}
	// live: the disk image is released as at the end of a migration; a
	// cont after a failure takes it back.
	if _, err := q.Execute(ctx, "xen-save-devices-state", map[string]any{"filename": stateTmp, "live": true}); err != nil {
		return resume(fmt.Errorf("save device state: %w (is the disk full?)", err))
	}
	if err := syncFile(stateTmp); err != nil {
		return resume(err)
	}
	if clone {
		if err := os.Rename(memTmp, filepath.Join(dir, memoryFile)); err != nil {
			return resume(err)
		}
	}
	if err := os.Rename(stateTmp, filepath.Join(dir, stateFile)); err != nil {
		return resume(err)
	}
	if clone {
		_ = os.Remove(mapped) // only the link: the template keeps its file
	}
	return nil
}

// Salvage saves a guest an earlier agent left behind: one whose state was
// already written only loses its process; a live one is paused through
// its QMP socket as Pause does.
func (d *Driver) Salvage(ctx context.Context, spec runtime.Spec, pid int) (bool, error) {
	alive := pid > 0 && runtime.ProcessAlive(pid) && runtime.ProcessOwnedBy(pid, spec.Dir)
	if _, err := os.Stat(filepath.Join(spec.Dir, stateFile)); err != nil && alive {
		q, err := DialQMP(ctx, filepath.Join(spec.Dir, "qmp.sock"))
		if err != nil {
			return false, fmt.Errorf("reach the guest left running: %w", err)
		}
		mapped, merr := mappedMemory(spec.Dir)
		if merr != nil {
			q.Close()
			return false, merr
		}
		err = saveState(ctx, q, pid, spec.Dir, mapped)
		if err == nil {
			_, _ = q.Execute(ctx, "quit", nil)
		}
		q.Close()
		if err != nil {
			return false, err
		}
	}
	if alive {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 250 && runtime.ProcessAlive(pid); i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
	_ = os.Remove(filepath.Join(spec.Dir, "qmp.sock"))
	_ = os.Remove(filepath.Join(spec.Dir, stateTmpFile))
	_ = os.Remove(filepath.Join(spec.Dir, memoryTmpFile))
	_ = cgroup.Open(cgroupName(spec.SandboxID)).Remove()
	_, err := os.Stat(filepath.Join(spec.Dir, stateFile))
	return err == nil, nil
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", filepath.Base(path), err)
	}
	return nil
}

// waitStatus polls query-status until done says so.
func waitStatus(ctx context.Context, q *QMP, done func(status string) (bool, error)) error {
	for {
		raw, err := q.Execute(ctx, "query-status", nil)
		if err != nil {
			return err
		}
		var st struct {
			Status string `json:"status"`
		}
		_ = json.Unmarshal(raw, &st)
		ok, err := done(st.Status)
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Resume restores a guest paused into spec.Dir: its memory file is mapped
// (pages load as the guest touches them) and its device state loaded.
func (d *Driver) Resume(ctx context.Context, spec runtime.Spec) (_ runtime.Instance, err error) {
	state := filepath.Join(spec.Dir, stateFile)
	if _, err := os.Stat(state); err != nil {
		return nil, fmt.Errorf("no saved state to resume from: %w", err)
	}
	legacy, err := legacyState(state)
	if err != nil {
		return nil, err
	}
	in := &instance{dir: spec.Dir, sandboxID: spec.SandboxID, disk: diskPath(spec.Dir), legacyState: legacy}
	defer func() {
		if err != nil {
			in.Kill()
			if in.cg != nil {
				in.cg.Remove()
			}
			os.Remove(filepath.Join(spec.Dir, "qmp.sock"))
		}
	}()
	in.cg, err = cgroup.Create(cgroupName(spec.SandboxID), cgroup.Limits{CPUs: spec.VCPUs, MemoryBytes: int64(spec.MemoryMiB+vmmOverheadMiB) << 20})
	if err != nil {
		return nil, err
	}
	if err := d.launch(ctx, in, spec, true); err != nil {
		return nil, err
	}
	// xen-load-devices-state would read the same file, but QEMU 7.2 aborts
	// after it (an unregistered yank instance); an incoming migration whose
	// stream has no RAM section loads it and leaves the mapped memory be.
	q := in.vm.QMP
	if legacy {
		if _, err := q.Execute(ctx, "migrate-set-capabilities", map[string]any{"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}}}); err != nil {
			return nil, err
		}
	}
	if _, err := q.Execute(ctx, "migrate-incoming", map[string]any{"uri": fmt.Sprintf("fd:%d", in.vm.VM.IncomingFD())}); err != nil {
		return nil, err
	}
	if err := waitStatus(ctx, q, func(st string) (bool, error) {
		switch st {
		case "inmigrate":
			return false, nil
		case "running", "paused", "postmigrate", "prelaunch":
			return true, nil
		}
		return false, fmt.Errorf("loading device state: QEMU is %s", st)
	}); err != nil {
		return nil, fmt.Errorf("%w: %s", err, strings.TrimSpace(in.vm.Stderr()))
	}
	if _, err := q.Execute(ctx, "cont", nil); err != nil {
		return nil, err
	}
	// The state is spent: a later pause writes a new one.
	if err := os.Remove(state); err != nil {
		return nil, err
	}
	in.watchDisk(d.log())
	return in, nil
}

// legacyState tells a state file saved before guest RAM was mapped private
// (Wrenn's first QEMU pauses: a migration with x-ignore-shared, whose
// stream opens with a configuration section) from a device state.
func legacyState(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var head [9]byte // magic, version, first section type
	if _, err := io.ReadFull(f, head[:]); err != nil {
		return false, fmt.Errorf("saved state %s: %w", path, err)
	}
	if string(head[:4]) != "QEVM" {
		return false, fmt.Errorf("saved state %s is not a QEMU state", path)
	}
	const sectionConfiguration = 0x07
	return head[8] == sectionConfiguration, nil
}

var _ runtime.Resumer = (*Driver)(nil)
var _ runtime.PausableInstance = (*instance)(nil)

// SaveSnapshot copies a paused sandbox's disk layer, memory and state.
func (d *Driver) SaveSnapshot(ctx context.Context, sandboxDir, snapshotDir string) error {
	for _, f := range []string{"disk.qcow2", memoryFile, stateFile} {
		if err := runtime.CopyTree(ctx, filepath.Join(sandboxDir, f), filepath.Join(snapshotDir, f)); err != nil {
			return err
		}
	}
	return nil
}

// PrepareClone gives a new sandbox a disk layer over the snapshot's (which
// stays read-only as its backing file) and maps the snapshot's memory
// copy-on-write: a hard link keeps it alive should the snapshot be
// deleted, and the clone's guest never writes to it (share=off).
func (d *Driver) PrepareClone(ctx context.Context, snapshotDir string, spec runtime.Spec) error {
	if err := shareSnapshotFiles(snapshotDir); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", filepath.Join(snapshotDir, "disk.qcow2"), "-o", "lazy_refcounts=on", diskPath(spec.Dir), fmt.Sprintf("%dM", spec.DiskMiB)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("create disk layer over the snapshot: %v: %s", err, bytes.TrimSpace(out))
	}
	base := filepath.Join(spec.Dir, memoryBase)
	if err := os.Link(filepath.Join(snapshotDir, memoryFile), base); err != nil {
		// Another filesystem: a copy does the same.
		if err := runtime.CopyTree(ctx, filepath.Join(snapshotDir, memoryFile), base); err != nil {
			return err
		}
	}
	return runtime.CopyTree(ctx, filepath.Join(snapshotDir, stateFile), filepath.Join(spec.Dir, stateFile))
}

var _ runtime.Snapshotter = (*Driver)(nil)
