// Package guestinit is wrenn-init, PID 1 of every Wrenn guest. In the
// initramfs it loads the kernel modules the guest needs and switches to the
// root disk; on the root disk it mounts the virtual filesystems, configures
// the hostname and network from the kernel command line, keeps the clock
// right, reaps orphans, supervises envd, and powers off cleanly on SIGTERM
// or the ACPI power button.
package guestinit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// EnvdPath is where images install envd.
const EnvdPath = "/usr/bin/envd"

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Run is PID 1 on the root disk. It returns only on a setup failure; a clean
// shutdown ends in poweroff.
func Run(log *slog.Logger) error {
	if os.Getenv(ModeEnv) == ModeContainer {
		return runInContainer(log)
	}
	if err := mountAll([]mount{
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666"},
		{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	}); err != nil {
		return err
	}
	// Ctrl-Alt-Del (Firecracker's SendCtrlAltDel) becomes SIGINT to this
	// process, a clean shutdown, instead of an immediate reboot.
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)
	if _, err := os.Lstat("/dev/ptmx"); err != nil {
		_ = os.Symlink("pts/ptmx", "/dev/ptmx")
	}
	params, err := readCmdline()
	if err != nil {
		return err
	}
	if err := unix.Sethostname([]byte(params.Hostname)); err != nil {
		return fmt.Errorf("set hostname: %w", err)
	}
	if err := ensureHosts(params.Hostname); err != nil {
		log.Warn("could not name the host in /etc/hosts", "err", err)
	}
	if err := configureNetwork(params); err != nil {
		return err
	}
	growRootFS(params.Root, log)
	os.Setenv("PATH", defaultPath)
	os.Setenv("HOME", "/root")

	p := &pid1{log: log, children: map[int]*child{}, events: make(chan func(), 16)}
	p.startEnvd(&child{name: "envd", argv: envdCommand(params)})
	if chrony := chronyCommand(); chrony != nil {
		p.supervise(&child{name: "chronyd", argv: chrony})
	}
	p.watchPowerButtons()
	return p.loop()
}

// ModeEnv set to ModeContainer tells wrenn-init it is a container's init
// (gVisor): the runtime has mounted the filesystems, set the hostname and
// configured the network, so only the resolver, supervision and reaping
// are left. ParamsEnv carries the Params a VM would find on its kernel
// command line, in the same form.
const (
	ModeEnv       = "WRENN_INIT_MODE"
	ModeContainer = "container"
	ParamsEnv     = "WRENN_GUEST_PARAMS"
)

func runInContainer(log *slog.Logger) error {
	params, err := ParseCmdline(os.Getenv(ParamsEnv))
	if err != nil {
		return fmt.Errorf("%s: %w", ParamsEnv, err)
	}
	if err := writeResolvConf(params.DNS); err != nil {
		return err
	}
	os.Setenv("PATH", defaultPath)
	os.Setenv("HOME", "/root")
	if name, err := os.Hostname(); err == nil {
		if err := ensureHosts(name); err != nil {
			log.Warn("could not name the host in /etc/hosts", "err", err)
		}
	}
	p := &pid1{log: log, children: map[int]*child{}, events: make(chan func(), 16), container: true}
	p.startEnvd(&child{name: "envd", argv: envdCommand(params)})
	return p.loop()
}

// envdCommand starts envd with the sandbox's and template's IDs.
func envdCommand(params *Params) []string {
	args := []string{EnvdPath}
	if params.SandboxID != "" {
		args = append(args, "--sandbox-id", params.SandboxID)
	}
	if params.TemplateID != "" {
		args = append(args, "--template-id", params.TemplateID)
	}
	return args
}

// writeResolvConf points the guest's resolver at the host's choice of
// name servers; with none given the image's file stays.
func writeResolvConf(dns []netip.Addr) error {
	if len(dns) == 0 {
		return nil
	}
	var b strings.Builder
	for _, d := range dns {
		fmt.Fprintf(&b, "nameserver %s\n", d)
	}
	if err := os.WriteFile("/etc/resolv.conf", []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write resolv.conf: %w", err)
	}
	return nil
}

func configureNetwork(p *Params) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	if !p.Addr.IsValid() {
		return nil // no network asked for
	}
	eth, err := netlink.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("find eth0 for wrenn.ip=%s: %w", p.Addr, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr.Addr().AsSlice(), Mask: net.CIDRMask(p.Addr.Bits(), p.Addr.Addr().BitLen())}}
	if err := netlink.AddrReplace(eth, addr); err != nil {
		return fmt.Errorf("set eth0 address %s: %w", p.Addr, err)
	}
	if err := netlink.LinkSetUp(eth); err != nil {
		return fmt.Errorf("bring eth0 up: %w", err)
	}
	if p.Gateway.IsValid() {
		route := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: p.Gateway.AsSlice()}
		if err := netlink.RouteReplace(route); err != nil {
			return fmt.Errorf("default route via %s: %w", p.Gateway, err)
		}
	}
	return writeResolvConf(p.DNS)
}

// chronyCommand disciplines the clock from the KVM PTP clock where the
// hypervisor offers one and the image has chrony; otherwise the host's
// timestamp in envd's /init sets the clock.
func chronyCommand() []string {
	if _, err := os.Stat("/dev/ptp0"); err != nil {
		return nil
	}
	bin, err := lookPath("chronyd")
	if err != nil {
		return nil
	}
	conf := "refclock PHC /dev/ptp0 poll 2 dpoll -2\nmakestep 0.1 -1\n"
	if err := os.WriteFile("/run/wrenn-chrony.conf", []byte(conf), 0o644); err != nil {
		return nil
	}
	return []string{bin, "-d", "-f", "/run/wrenn-chrony.conf"}
}

func lookPath(name string) (string, error) {
	for dir := range strings.SplitSeq(defaultPath, ":") {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// child is a supervised process, restarted with backoff when it dies.
type child struct {
	name    string
	argv    []string
	pid     int
	started time.Time
	backoff time.Duration
}

type pid1 struct {
	log          *slog.Logger
	children     map[int]*child
	events       chan func() // work for the main loop from timers and readers
	shuttingDown bool
	container    bool // a container's init: exit instead of powering off
}

const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

func (p *pid1) supervise(c *child) {
	attr := &os.ProcAttr{Env: []string{"PATH=" + defaultPath, "HOME=/root"}, Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}, Dir: "/"}
	proc, err := os.StartProcess(c.argv[0], c.argv, attr)
	if err != nil {
		p.log.Error("start failed", "name", c.name, "err", err)
		p.restartLater(c)
		return
	}
	c.pid, c.started = proc.Pid, time.Now()
	_ = proc.Release() // reaped by the loop's wait4(-1), never by os.Process
	p.children[c.pid] = c
	p.log.Info("started", "name", c.name, "pid", c.pid)
}

func (p *pid1) restartLater(c *child) {
	if time.Since(c.started) > 10*time.Second {
		c.backoff = 0 // it ran well for a while: restart at once
	}
	if c.backoff == 0 {
		c.backoff = minBackoff
	} else {
		c.backoff = min(2*c.backoff, maxBackoff)
	}
	delay := c.backoff
	time.AfterFunc(delay, func() {
		p.events <- func() {
			if !p.shuttingDown {
				p.supervise(c)
			}
		}
	})
}

func (p *pid1) loop() error {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT, unix.SIGPWR)
	for {
		select {
		case s := <-sigs:
			if s == unix.SIGCHLD {
				p.reap()
				continue
			}
			p.log.Info("shutting down", "signal", s.String())
			p.shutdown()
		case f := <-p.events:
			f()
		}
	}
}

// reap collects every exited child: supervised ones are restarted, orphans
// inherited from the user's processes are simply released.
func (p *pid1) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
		c, ok := p.children[pid]
		if !ok {
			continue
		}
		delete(p.children, pid)
		p.log.Warn("exited, restarting", "name", c.name, "pid", pid, "status", describe(ws))
		if !p.shuttingDown {
			p.restartLater(c)
		}
	}
}

func describe(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "signal " + unix.SignalName(ws.Signal())
	}
	return fmt.Sprintf("exit %d", ws.ExitStatus())
}

// shutdown stops every process (TERM, then KILL after a grace period),
// syncs and unmounts the disks, and powers off. It does not return.
func (p *pid1) shutdown() {
	p.shuttingDown = true
	_ = unix.Kill(-1, unix.SIGTERM)
	if !p.waitNoChildren(3 * time.Second) {
		_ = unix.Kill(-1, unix.SIGKILL)
		p.waitNoChildren(2 * time.Second)
	}
	unix.Sync()
	if p.container {
		p.log.Info("exiting")
		os.Exit(0)
	}
	_ = unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
	unix.Sync()
	p.log.Info("powering off")
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	// Without a way to power off, a restart ends a VM run with -no-reboot.
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {}
}

func (p *pid1) waitNoChildren(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.ECHILD) {
			return true
		}
		if pid <= 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return false
}

// watchPowerButtons turns an ACPI power button press (QMP system_powerdown)
// into a clean shutdown.
func (p *pid1) watchPowerButtons() {
	devs, _ := filepath.Glob("/dev/input/event*")
	for _, dev := range devs {
		f, err := os.Open(dev)
		if err != nil {
			continue
		}
		go func() {
			defer f.Close()
			// struct input_event on 64-bit: timeval (16), type, code (u16), value (s32).
			buf := make([]byte, 24)
			for {
				if _, err := io.ReadFull(f, buf); err != nil {
					return
				}
				typ := binary.LittleEndian.Uint16(buf[16:])
				code := binary.LittleEndian.Uint16(buf[18:])
				value := int32(binary.LittleEndian.Uint32(buf[20:]))
				const evKey, keyPower = 1, 116
				if typ == evKey && code == keyPower && value == 1 {
					p.events <- func() {
						p.log.Info("power button pressed")
						p.shutdown()
					}
					return
				}
			}
		}()
	}
}

// ext4IocResizeFS is EXT4_IOC_RESIZE_FS, _IOW('f', 16, __u64).
const ext4IocResizeFS = 0x40086610

// growRootFS grows the root filesystem online to fill its disk: images are
// built small, and each sandbox's disk layer has the size it was given.
func growRootFS(dev string, log *slog.Logger) {
	sizeFile := filepath.Join("/sys/class/block", filepath.Base(dev), "size")
	b, err := os.ReadFile(sizeFile)
	if err != nil {
		return
	}
	sectors, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil || st.Type != unix.EXT4_SUPER_MAGIC {
		return
	}
	blocks := sectors * 512 / uint64(st.Bsize)
	if blocks <= st.Blocks+uint64(8<<20)/uint64(st.Bsize) {
		return // within a few MB of the disk: nothing worth doing
	}
	fd, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), ext4IocResizeFS, uintptr(unsafe.Pointer(&blocks))); errno != 0 {
		log.Warn("could not grow the root filesystem", "device", dev, "err", errno.Error())
		return
	}
	log.Info("grew the root filesystem", "device", dev, "bytes", blocks*uint64(st.Bsize))
}
