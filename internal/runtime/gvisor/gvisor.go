// Package gvisor runs sandboxes under gVisor (runsc): a user-space kernel
// for hosts without a usable KVM. Each sandbox is an OCI bundle whose root
// is an overlay of the template's tree (its rootfs.ext4 mounted read-only
// once per template, shared) and a writable layer of its own, with
// wrenn-init as the container's init and runsc's netstack on the slot's
// guest namespace.
package gvisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/cgroup"
	"git.omukk.dev/wrenn/sandbox/internal/guestimage"
	"git.omukk.dev/wrenn/sandbox/internal/guestinit"
	"git.omukk.dev/wrenn/sandbox/internal/runtime"
	"git.omukk.dev/wrenn/sandbox/internal/runtime/console"
)

// PinnedVersion is the runsc module version scripts/setup builds; it records
// it in VersionFile, since a build from the module proxy carries no version.
const (
	PinnedVersion = "v0.0.0-20260905035102-160fafc42237"
	VersionFile   = "/usr/local/lib/wrenn-runsc.version"
)

// Driver runs sandboxes with runsc.
type Driver struct {
	bin      string
	root     string // runsc --root: its container state
	mounts   string // template lowers and sandbox overlays
	platform string
	version  string

	mu     sync.Mutex
	lowers map[string]*lower // by image directory
}

type lower struct {
	dir  string
	refs int
}

// NewDriver finds runsc and checks that it runs.
func NewDriver(bin, stateDir string) (*Driver, error) {
	if bin == "" {
		bin = "runsc"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("runsc %q not found: scripts/setup builds it (or use --runtime qemu)", bin)
	}
	out, err := exec.Command(path, "--version").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("runsc --version: %v: %s", err, out)
	}
	d := &Driver{bin: path, root: filepath.Join(stateDir, "runsc"), mounts: filepath.Join(stateDir, "gvisor"), platform: "systrap", lowers: map[string]*lower{}}
	d.version = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	if strings.Contains(d.version, "VERSION_MISSING") {
		if b, err := os.ReadFile(VersionFile); err == nil {
			d.version = "runsc " + strings.TrimSpace(string(b))
		}
	}
	if !strings.Contains(d.version, PinnedVersion) {
		d.version += " (not the pinned " + PinnedVersion + ": scripts/setup installs that one)"
	}
	for _, dir := range []string{d.root, d.mounts} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func (d *Driver) Name() string { return "gvisor" }
func (d *Driver) Accelerator() (string, string) {
	return d.platform, d.version + ", platform " + d.platform + " (no KVM needed)"
}

// WantsGuestNamespace: runsc's netstack takes over a namespace's eth0.
func (d *Driver) WantsGuestNamespace() bool { return true }

// globalFlags come before every runsc command, so that run, restore and
// the rest agree on the sandbox they address and how it runs.
func (d *Driver) globalFlags() []string {
	// --allow-suid: runsc ignores set-user-ID bits unless told, so sudo
	// (and su, ping, passwd) would not work for the sandbox's users.
	return []string{"--root", d.root, "--platform", d.platform, "--network", "sandbox", "--overlay2", "none", "--allow-suid"}
}

func (d *Driver) runsc(ctx context.Context, args ...string) ([]byte, error) {
	full := append(d.globalFlags(), args...)
	cmd := exec.CommandContext(ctx, d.bin, full...)
	// Output goes to a file, not a pipe: "run --detach" leaves the sandbox
	// holding its stdout, and a pipe would never reach EOF.
	f, err := os.CreateTemp("", "wrenn-runsc-*.out")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	runErr := cmd.Run()
	out, _ := os.ReadFile(f.Name())
	if runErr != nil {
		return out, fmt.Errorf("runsc %s: %v: %s", args[0], runErr, bytes.TrimSpace(out))
	}
	return out, nil
}

// launch runs runsc run or restore with the container's stdout and stderr
// (which it keeps after runsc returns) and its user log going to a capped
// console (console.Keeper; they used to go to an already deleted file,
// which grew without bound and unseen). runsc's own errors are in
// runsc.log in the sandbox's directory.
func (d *Driver) launch(ctx context.Context, in *instance, args ...string) error {
	keeper, err := console.Start(filepath.Join(in.dir, console.FileName), console.MaxBytes)
	if err != nil {
		return err
	}
	logPath := filepath.Join(in.dir, "runsc.log")
	_ = os.Remove(logPath)
	full := append(append(d.globalFlags(), "--log", logPath), args...)
	cmd := exec.CommandContext(ctx, d.bin, full...)
	cmd.Stdout, cmd.Stderr = keeper.W, keeper.W
	runErr := cmd.Run()
	keeper.CloseWriter() // the container has its own
	in.console = keeper
	if runErr != nil {
		out, _ := os.ReadFile(logPath)
		return fmt.Errorf("runsc %s: %v: %s", args[0], runErr, bytes.TrimSpace(out))
	}
	return nil
}

// acquireLower mounts a template's rootfs read-only, once for all its sandboxes.
func (d *Driver) acquireLower(imageDir string, mf *guestimage.Manifest) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if l, ok := d.lowers[imageDir]; ok {
		l.refs++
		return l.dir, nil
	}
	dir := filepath.Join(d.mounts, "lower-"+filepath.Base(imageDir)+"-"+mf.Fingerprint[:12])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	out, err := exec.Command("mount", "-t", "ext4", "-o", "loop,ro,noload", filepath.Join(imageDir, guestimage.FileRootfs), dir).CombinedOutput()
	if err != nil {
		os.Remove(dir)
		return "", fmt.Errorf("mount template %s read-only: %v: %s", filepath.Base(imageDir), err, bytes.TrimSpace(out))
	}
	d.lowers[imageDir] = &lower{dir: dir, refs: 1}
	return dir, nil
}

func (d *Driver) releaseLower(imageDir string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	l, ok := d.lowers[imageDir]
	if !ok {
		return nil
	}
	if l.refs--; l.refs > 0 {
		return nil
	}
	delete(d.lowers, imageDir)
	if err := unmount(l.dir); err != nil {
		return err
	}
	return os.Remove(l.dir)
}

func unmount(dir string) error {
	var err error
	for range 50 {
		err = syscall.Unmount(dir, 0)
		if err == nil || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("unmount %s: %w", dir, err)
}

var containerID = regexp.MustCompile(`[^a-z0-9-]`)

// Start builds the bundle and runs it detached.
func (d *Driver) Start(ctx context.Context, spec runtime.Spec) (_ runtime.Instance, err error) {
	if spec.GuestNamespace == "" {
		return nil, errors.New("gvisor needs a slot with a guest namespace")
	}
	in := d.newInstance(spec)
	defer func() {
		if err != nil {
			err = in.abandon(err)
		}
	}()
	if err := d.prepare(in, spec); err != nil {
		return nil, err
	}
	in.launched = true
	if err := d.launch(ctx, in, "run", "--detach", "--bundle", spec.Dir, "--pid-file", filepath.Join(spec.Dir, "init.pid"), "--user-log", "/proc/self/fd/2", in.id); err != nil {
		return nil, err
	}
	if err := in.track(ctx); err != nil {
		return nil, err
	}
	return in, nil
}

func (d *Driver) newInstance(spec runtime.Spec) *instance {
	return &instance{d: d, id: "wrenn-" + containerID.ReplaceAllString(spec.SandboxID, "-"), cgroup: cgroupName(spec.SandboxID), dir: spec.Dir, imageDir: spec.ImageDir, done: make(chan struct{}), stop: make(chan struct{})}
}

// cgroupName is the sandbox's group under wrenn/, which runsc creates.
func cgroupName(sandboxID string) string {
	return cgroup.SandboxName(sandboxID)
}

// abandon undoes a start that failed with cause.
func (in *instance) abandon(cause error) error {
	in.Kill()
	if err := in.Release(); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

// prepare mounts the root and writes the OCI bundle.
func (d *Driver) prepare(in *instance, spec runtime.Spec) error {
	if err := d.mountRoot(in, spec); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(ociConfig(spec, in.merged), "", "  ")
	return os.WriteFile(filepath.Join(spec.Dir, "config.json"), b, 0o600)
}

// mountRoot makes the sandbox's root: the template's shared read-only
// tree under the sandbox's own writable layer.
func (d *Driver) mountRoot(in *instance, spec runtime.Spec) error {
	low, err := d.acquireLower(spec.ImageDir, spec.Manifest)
	if err != nil {
		return err
	}
	in.lowerHeld = true
	// The writable layer is an ext4 image of the sandbox's disk size, so the
	// disk limit holds as it does for VMs.
	layerImg, layer := filepath.Join(spec.Dir, layerFile), filepath.Join(spec.Dir, "layer")
	if _, err := os.Stat(layerImg); os.IsNotExist(err) {
		if err := makeLayer(layerImg, spec.DiskMiB); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(layer, 0o755); err != nil {
		return err
	}
	if out, err := exec.Command("mount", "-t", "ext4", "-o", "loop", layerImg, layer).CombinedOutput(); err != nil {
		return fmt.Errorf("mount the writable layer: %v: %s", err, bytes.TrimSpace(out))
	}
	in.layer = layer
	upper, work, merged := filepath.Join(layer, "upper"), filepath.Join(layer, "work"), filepath.Join(spec.Dir, "rootfs")
	for _, p := range []string{upper, work, merged} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
	}
	if err := syscall.Mount("overlay", merged, "overlay", 0, fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", low, upper, work)); err != nil {
		return fmt.Errorf("overlay root: %w", err)
	}
	in.merged = merged
	return nil
}

const (
	checkpointDir = "checkpoint"
	layerFile     = "layer.ext4"
)

// makeLayer creates a sparse ext4 image of sizeMiB.
func makeLayer(path string, sizeMiB int) error {
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", "-E", "lazy_itable_init=1,root_owner=0:0", path, fmt.Sprintf("%dM", sizeMiB)).CombinedOutput()
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("make the writable layer (%d MiB): %v: %s", sizeMiB, err, bytes.TrimSpace(out))
	}
	return nil
}

// Pause checkpoints the container (memory and kernel state) into the
// sandbox's directory, waits until it has really stopped, deletes it and
// unmounts its root; the writable layer stays.
func (in *instance) Pause(ctx context.Context) error {
	// A checkpoint that runs out of disk takes the container down with
	// it, so it is not attempted without room for the sandbox's memory.
	if err := in.roomForCheckpoint(); err != nil {
		return err
	}
	img := filepath.Join(in.dir, checkpointDir)
	tmp := img + ".part"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	if _, err := in.d.runsc(ctx, "checkpoint", "--image-path", tmp, in.id); err != nil {
		os.RemoveAll(tmp)
		// A failed checkpoint leaves the container running, or stopped;
		// only the first is a sandbox that still works.
		if st, serr := in.d.state(context.Background(), in.id); serr == nil && st.Status == "running" {
			return err
		}
		return fmt.Errorf("%w (the container did not survive it)", err)
	}
	// checkpoint returns before the container has stopped.
	for {
		st, err := in.d.state(ctx, in.id)
		if err != nil || st.Status == "stopped" {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	// On disk before the container is gone: the checkpoint is the sandbox now.
	if err := syncTree(tmp); err != nil {
		return err
	}
	_ = os.RemoveAll(img)
	if err := os.Rename(tmp, img); err != nil {
		return err
	}
	in.Kill() // deletes the stopped container's runsc state
	return in.Release()
}

// Salvage saves a container an earlier agent left behind: a finished
// checkpoint is kept, one the agent was killed in the middle of is
// completed, and a container still running is checkpointed now.
func (d *Driver) Salvage(ctx context.Context, spec runtime.Spec, _ int) (bool, error) {
	in := d.newInstance(spec)
	img := filepath.Join(spec.Dir, checkpointDir)
	part := img + ".part"
	// A checkpoint the dead agent started runs on in its orphaned runsc:
	// give it time to finish before starting one over it.
	orphanWait := time.Now().Add(20 * time.Second)
	deadline := time.Now().Add(45 * time.Second)
	for {
		if _, err := os.Stat(img); err == nil {
			break
		}
		st, err := d.state(ctx, in.id)
		if err != nil {
			return false, nil // no container and no checkpoint: nothing to save
		}
		_, partErr := os.Stat(part)
		var retry error
		switch {
		case st.Status == "stopped" && partErr == nil:
			// runsc stops a container once its checkpoint is written; the
			// agent died before it could move it into place.
			if err := syncTree(part); err != nil {
				return false, err
			}
			if err := os.Rename(part, img); err != nil {
				return false, err
			}
			continue
		case st.Status == "stopped":
			return false, nil
		case st.Status == "running" && partErr == nil && time.Now().Before(orphanWait):
			retry = errors.New("a checkpoint is under way")
		case st.Status == "running":
			in.started, in.pid = true, st.Pid
			if retry = in.Pause(ctx); retry == nil {
				continue
			}
		default:
			retry = fmt.Errorf("container is %s", st.Status)
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("could not checkpoint the container an earlier agent left: %w", retry)
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	in.started = true
	in.Kill() // removes the container's runsc state, if any is left
	_ = os.RemoveAll(part)
	return true, nil
}

// checkpointHeadroom is disk beyond the sandbox's memory that a checkpoint
// may need (kernel state, file descriptors' metadata).
const checkpointHeadroom = 64 << 20

// roomForCheckpoint fails with ENOSPC when the sandbox's directory lacks
// room for a checkpoint as large as the memory the sandbox uses now.
func (in *instance) roomForCheckpoint() error {
	used, err := cgroup.Open(in.cgroup).MemoryCurrent()
	if err != nil {
		return nil // no accounting: let runsc try
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(in.dir, &st); err != nil {
		return err
	}
	free := st.Bavail * uint64(st.Bsize)
	if need := used + checkpointHeadroom; free < need {
		return fmt.Errorf("not enough disk space to checkpoint: %d MiB free under %s, about %d MiB needed: %w", free>>20, in.dir, need>>20, syscall.ENOSPC)
	}
	return nil
}

// Resume restores a checkpoint into the sandbox's own root and namespace.
func (d *Driver) Resume(ctx context.Context, spec runtime.Spec) (_ runtime.Instance, err error) {
	img := filepath.Join(spec.Dir, checkpointDir)
	if _, err := os.Stat(img); err != nil {
		return nil, fmt.Errorf("no checkpoint to resume from: %w", err)
	}
	in := d.newInstance(spec)
	defer func() {
		if err != nil {
			err = in.abandon(err)
		}
	}()
	// The bundle is written again: the guest namespace may be another slot's now.
	if err := d.prepare(in, spec); err != nil {
		return nil, err
	}
	in.launched = true
	if err := d.launch(ctx, in, "restore", "--detach", "--image-path", img, "--bundle", spec.Dir, "--pid-file", filepath.Join(spec.Dir, "init.pid"), "--user-log", "/proc/self/fd/2", in.id); err != nil {
		return nil, err
	}
	if err := in.track(ctx); err != nil {
		return nil, err
	}
	return in, os.RemoveAll(img)
}

// track records the running container's sandbox process and starts
// watching it.
func (in *instance) track(ctx context.Context) error {
	in.started = true
	st, err := in.d.state(ctx, in.id)
	if err != nil {
		return err
	}
	in.pid = st.Pid
	go in.watch()
	return nil
}

var (
	_ runtime.Resumer          = (*Driver)(nil)
	_ runtime.PausableInstance = (*instance)(nil)
)

type state struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
}

func (d *Driver) state(ctx context.Context, id string) (*state, error) {
	out, err := d.runsc(ctx, "state", id)
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("runsc state %s: %w", id, err)
	}
	return &st, nil
}

func ociConfig(spec runtime.Spec, root string) map[string]any {
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", guestinit.ModeEnv + "=" + guestinit.ModeContainer,
		guestinit.ParamsEnv + "=" + guestinit.Cmdline(spec.GuestParams())}
	period := 100000
	return map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"terminal": false, "user": map[string]any{"uid": 0, "gid": 0},
			"args": []string{"/sbin/init"}, "env": env, "cwd": "/",
			"capabilities": capabilities(),
			"rlimits":      []map[string]any{{"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576}},
		},
		"root":     map[string]any{"path": root, "readonly": false},
		"hostname": spec.SandboxID,
		"mounts": []map[string]any{
			{"destination": "/proc", "type": "proc", "source": "proc"},
			{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": []string{"nosuid", "noexec", "nodev", "ro"}},
			{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "nodev", "mode=1777"}},
			{"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "nodev", "mode=755"}},
		},
		"linux": map[string]any{
			"namespaces": []map[string]any{
				{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
				{"type": "network", "path": "/run/netns/" + spec.GuestNamespace},
			},
			"cgroupsPath": "/wrenn/" + cgroupName(spec.SandboxID),
			"resources": map[string]any{
				"cpu":    map[string]any{"quota": spec.VCPUs * period, "period": period},
				"memory": map[string]any{"limit": int64(spec.MemoryMiB) << 20},
				"pids":   map[string]any{"limit": 4096},
			},
		},
	}
}

func capabilities() map[string]any {
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP", "CAP_SYS_TIME", "CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_PTRACE"}
	return map[string]any{"bounding": caps, "effective": caps, "permitted": caps}
}

type instance struct {
	d        *Driver
	id       string
	dir      string
	imageDir string
	merged   string
	layer    string
	pid      int
	started  bool
	// launched is set once runsc run or restore was invoked: a launch cut
	// short (its context cancelled) can leave a container, processes and
	// a cgroup that started never learned of.
	launched  bool
	cgroup    string
	lowerHeld bool
	// console keeps the container's output, capped; it ends with the
	// container's sandbox process.
	console *console.Keeper

	done     chan struct{}
	stop     chan struct{}
	doneOnce sync.Once
	killOnce sync.Once
	exitErr  error
}

// watch notices the sandbox process going away (runsc detaches it, so it is
// not this process's child to wait for).
func (in *instance) watch() {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-in.stop:
			return
		case <-t.C:
		}
		if !runtime.ProcessAlive(in.pid) {
			in.exitErr = errors.New("the gVisor sandbox process exited")
			in.doneOnce.Do(func() { close(in.done) })
			return
		}
	}
}

func (in *instance) PID() int              { return in.pid }
func (in *instance) Done() <-chan struct{} { return in.done }
func (in *instance) Err() error            { return in.exitErr }
func (in *instance) Console() string       { return filepath.Join(in.dir, console.FileName) }

func (in *instance) Shutdown(ctx context.Context) error {
	if !in.started {
		return nil
	}
	_, _ = in.d.runsc(ctx, "kill", in.id, "TERM")
	for {
		st, err := in.d.state(ctx, in.id)
		if err != nil || st.Status == "stopped" {
			break
		}
		select {
		case <-ctx.Done():
			in.Kill()
			return errors.New("sandbox did not stop in time; killed")
		case <-time.After(50 * time.Millisecond):
		}
	}
	in.Kill()
	return nil
}

// Kill stops the container at once and deletes its runsc state.
func (in *instance) Kill() {
	in.killOnce.Do(func() {
		close(in.stop)
		if in.started || in.launched {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, _ = in.d.runsc(ctx, "kill", "--all", in.id, "KILL")
			_, _ = in.d.runsc(ctx, "delete", "--force", in.id)
		}
		in.doneOnce.Do(func() { close(in.done) })
	})
}

func (in *instance) Release() error {
	var errs []error
	if in.console != nil {
		in.console.WaitFor(consoleDrain)
		in.console = nil
	}
	if in.launched {
		// runsc removes its cgroup on delete, unless it was killed before
		// it recorded the container.
		if err := cgroup.Open(in.cgroup).Remove(); err != nil {
			errs = append(errs, err)
		}
	}
	if in.merged != "" {
		if err := unmount(in.merged); err != nil {
			errs = append(errs, err)
		}
	}
	if in.layer != "" {
		if err := unmount(in.layer); err != nil {
			errs = append(errs, err)
		}
	}
	if in.lowerHeld {
		if err := in.d.releaseLower(in.imageDir); err != nil {
			errs = append(errs, err)
		}
		in.lowerHeld = false
	}
	return errors.Join(errs...)
}

// consoleDrain is how long Release waits for the console keeper to see
// the last of the container's output once it is gone.
const consoleDrain = 10 * time.Second

func (in *instance) HostRSS() uint64 { return runtime.ProcessRSS(in.pid) }

// Reclaim removes what an earlier agent left: runsc containers under its
// root, then every mount below the state directory, deepest first.
func (d *Driver) Reclaim(stateDir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	if out, err := d.runsc(ctx, "list", "--quiet"); err == nil {
		for _, id := range strings.Fields(string(out)) {
			_, _ = d.runsc(ctx, "kill", "--all", id, "KILL")
			if _, err := d.runsc(ctx, "delete", "--force", id); err != nil {
				errs = append(errs, err)
			}
		}
	}
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for line := range strings.Lines(string(raw)) {
		f := strings.Fields(line)
		if len(f) > 4 && (strings.HasPrefix(f[4], stateDir+"/")) {
			points = append(points, unescape(f[4]))
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		if err := unmount(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// unescape decodes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

var _ runtime.Salvager = (*Driver)(nil)

var _ runtime.Driver = (*Driver)(nil)

// SaveSnapshot copies a paused sandbox's writable layer and checkpoint.
func (d *Driver) SaveSnapshot(ctx context.Context, sandboxDir, snapshotDir string) error {
	for _, f := range []string{layerFile, checkpointDir} {
		if err := runtime.CopyTree(ctx, filepath.Join(sandboxDir, f), filepath.Join(snapshotDir, f)); err != nil {
			return err
		}
	}
	return nil
}

// PrepareClone gives a new sandbox its own copies of both; a larger disk
// than the snapshot's grows the layer.
func (d *Driver) PrepareClone(ctx context.Context, snapshotDir string, spec runtime.Spec) error {
	for _, f := range []string{layerFile, checkpointDir} {
		if err := runtime.CopyTree(ctx, filepath.Join(snapshotDir, f), filepath.Join(spec.Dir, f)); err != nil {
			return err
		}
	}
	layer := filepath.Join(spec.Dir, layerFile)
	fi, err := os.Stat(layer)
	if err != nil {
		return err
	}
	if want := int64(spec.DiskMiB) << 20; want > fi.Size() {
		if err := os.Truncate(layer, want); err != nil {
			return err
		}
		if out, err := exec.CommandContext(ctx, "resize2fs", "-f", layer).CombinedOutput(); err != nil {
			return fmt.Errorf("grow the writable layer: %v: %s", err, bytes.TrimSpace(out))
		}
	}
	return nil
}

var _ runtime.Snapshotter = (*Driver)(nil)

// syncTree fsyncs every file under dir, and dir itself.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", p, err)
		}
		return nil
	})
}
