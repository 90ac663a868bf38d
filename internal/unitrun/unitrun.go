// Package unitrun starts a systemd service unit's ExecStart the way
// systemd would, for tests on machines where systemd is not PID 1 (so
// systemctl and systemd-run cannot start anything): a clean environment
// with the unit's Environment= and EnvironmentFile=, its User= and Group=
// with the user's groups, UMask=, AmbientCapabilities=, Type=notify with
// a NOTIFY_SOCKET that accepts READY=1 only from the main process
// (NotifyAccess=main, checked by the sender's credentials) within
// TimeoutStartSec=, and a stop by KillMode=, KillSignal= and
// TimeoutStopSec=. Drop-ins in <unit>.d/*.conf apply, as systemd's do.
//
// The sandboxing directives (ProtectSystem=, SystemCallFilter=, …) need
// systemd itself: they are listed in Unapplied, checked by `systemd-analyze
// verify` and `systemd-analyze security` instead, and any other directive
// this package does not know is an error, so a unit never claims more
// than a test exercised.
package unitrun

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/unit"
	"golang.org/x/sys/unix"
)

// Unapplied are [Service] directives a test cannot apply without systemd.
var Unapplied = []string{
	"CapabilityBoundingSet", "NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
	"ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock",
	"ProtectHostname", "ProtectProc", "ProcSubset", "RestrictAddressFamilies", "RestrictNamespaces", "RestrictRealtime",
	"RestrictSUIDSGID", "LockPersonality", "MemoryDenyWriteExecute", "RemoveIPC", "DevicePolicy",
	"SystemCallArchitectures", "SystemCallFilter", "SystemCallErrorNumber", "LimitNOFILE", "TasksMax",
	"Restart", "RestartSec",
}

// applied are the [Service] directives Start and Stop honour.
var applied = []string{
	"Type", "NotifyAccess", "ExecStart", "Environment", "EnvironmentFile", "User", "Group", "UMask",
	"AmbientCapabilities", "TimeoutStartSec", "TimeoutStopSec", "KillMode", "KillSignal", "WorkingDirectory",
}

// Unit is a parsed service unit with its drop-ins.
type Unit struct {
	Name    string
	Service map[string][]string
}

// Load reads a unit file and the drop-ins beside it in dropinDirs
// (<dir>/<name>.d/*.conf, in name order, as systemd applies them). An
// empty assignment resets a list directive, as in systemd.
func Load(path string, dropinDirs ...string) (*Unit, error) {
	u := &Unit{Name: filepath.Base(path), Service: map[string][]string{}}
	files := []string{path}
	for _, d := range dropinDirs {
		confs, _ := filepath.Glob(filepath.Join(d, u.Name+".d", "*.conf"))
		slices.Sort(confs)
		files = append(files, confs...)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		opts, err := unit.Deserialize(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, o := range opts {
			if o.Section != "Service" {
				continue
			}
			if !slices.Contains(applied, o.Name) && !slices.Contains(Unapplied, o.Name) {
				return nil, fmt.Errorf("%s: [Service] %s= is neither applied by unitrun nor listed as needing systemd", f, o.Name)
			}
			if o.Value == "" {
				u.Service[o.Name] = nil
				continue
			}
			u.Service[o.Name] = append(u.Service[o.Name], o.Value)
		}
	}
	if len(u.Service["ExecStart"]) != 1 {
		return nil, fmt.Errorf("%s: want one ExecStart=, have %d", path, len(u.Service["ExecStart"]))
	}
	return u, nil
}

func (u *Unit) last(name, def string) string {
	if v := u.Service[name]; len(v) > 0 {
		return v[len(v)-1]
	}
	return def
}

// Process is a started unit.
type Process struct {
	u      *Unit
	cmd    *exec.Cmd
	sock   *net.UnixConn
	dir    string
	exited chan struct{}
	err    error

	mu      sync.Mutex
	notices []string
	ready   chan struct{}
}

// Options for Start.
type Options struct {
	// Output receives the process's stdout and stderr (the journal's
	// stand-in).
	Output io.Writer
}

// Start runs ExecStart and, for Type=notify, waits for READY=1 from the
// main process within TimeoutStartSec (default 90 s).
func (u *Unit) Start(o Options) (*Process, error) {
	args, err := splitCommand(u.Service["ExecStart"][0])
	if err != nil {
		return nil, err
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	attr := &syscall.SysProcAttr{Setpgid: true}
	if name := u.last("User", ""); name != "" {
		usr, err := user.Lookup(name)
		if err != nil {
			return nil, fmt.Errorf("User=%s: %w", name, err)
		}
		uid, _ := strconv.ParseUint(usr.Uid, 10, 32)
		gid, _ := strconv.ParseUint(usr.Gid, 10, 32)
		if g := u.last("Group", ""); g != "" {
			grp, err := user.LookupGroup(g)
			if err != nil {
				return nil, fmt.Errorf("Group=%s: %w", g, err)
			}
			gid, _ = strconv.ParseUint(grp.Gid, 10, 32)
		}
		cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		groups, _ := usr.GroupIds()
		for _, g := range groups {
			n, _ := strconv.ParseUint(g, 10, 32)
			cred.Groups = append(cred.Groups, uint32(n))
		}
		attr.Credential = cred
		env = append(env, "USER="+usr.Username, "LOGNAME="+usr.Username, "HOME="+usr.HomeDir, "SHELL=/usr/sbin/nologin")
	} else {
		env = append(env, "USER=root", "LOGNAME=root", "HOME=/root", "SHELL=/bin/sh")
	}
	for _, line := range u.Service["AmbientCapabilities"] {
		for _, name := range strings.Fields(line) {
			c, ok := capabilities[name]
			if !ok {
				return nil, fmt.Errorf("AmbientCapabilities=%s: unitrun knows %v", name, capabilities)
			}
			attr.AmbientCaps = append(attr.AmbientCaps, c)
		}
	}
	for _, f := range u.Service["EnvironmentFile"] {
		optional := strings.HasPrefix(f, "-")
		vars, err := readEnvFile(strings.TrimPrefix(f, "-"))
		if err != nil {
			if optional && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("EnvironmentFile=%s: %w", f, err)
		}
		env = append(env, vars...)
	}
	for _, line := range u.Service["Environment"] {
		words, err := splitCommand(line)
		if err != nil {
			return nil, fmt.Errorf("Environment=%s: %w", line, err)
		}
		env = append(env, words...)
	}
	p := &Process{u: u, exited: make(chan struct{}), ready: make(chan struct{})}
	notify := u.last("Type", "simple") == "notify"
	if notify {
		if p.dir, err = os.MkdirTemp("", "unitrun-"); err != nil {
			return nil, err
		}
		// The service's user must reach the socket.
		if err := os.Chmod(p.dir, 0o755); err != nil {
			return nil, err
		}
		path := filepath.Join(p.dir, "notify")
		if p.sock, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"}); err != nil {
			return nil, err
		}
		if err := os.Chmod(path, 0o777); err != nil {
			return nil, err
		}
		raw, _ := p.sock.SyscallConn()
		var serr error
		_ = raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })
		if serr != nil {
			return nil, serr
		}
		env = append(env, "NOTIFY_SOCKET="+path)
	}
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Env, p.cmd.SysProcAttr, p.cmd.Dir = env, attr, u.last("WorkingDirectory", "/")
	p.cmd.Stdout, p.cmd.Stderr = o.Output, o.Output
	if mask := u.last("UMask", ""); mask != "" {
		m, err := strconv.ParseUint(mask, 8, 32)
		if err != nil {
			return nil, fmt.Errorf("UMask=%s: %w", mask, err)
		}
		// The child inherits the umask; set it around the fork.
		old := syscall.Umask(int(m))
		err = p.cmd.Start()
		syscall.Umask(old)
		if err != nil {
			p.cleanup()
			return nil, err
		}
	} else if err := p.cmd.Start(); err != nil {
		p.cleanup()
		return nil, err
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	if !notify {
		close(p.ready)
		return p, nil
	}
	go p.readNotifications()
	timeout, err := seconds(u.last("TimeoutStartSec", "90s"))
	if err != nil {
		return nil, err
	}
	select {
	case <-p.ready:
		return p, nil
	case <-p.exited:
		p.cleanup()
		return nil, fmt.Errorf("%s exited before READY=1: %v", u.Name, p.err)
	case <-time.After(timeout):
		_ = p.Stop()
		return nil, fmt.Errorf("%s: no READY=1 within TimeoutStartSec=%s", u.Name, timeout)
	}
}

// readNotifications takes sd_notify messages; with NotifyAccess=main
// (or unset, whose default for Type=notify is main) only the main
// process's count, as in systemd.
func (p *Process) readNotifications() {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	for {
		n, oobn, _, _, err := p.sock.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		var sender int32 = -1
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, m := range msgs {
				if cred, err := unix.ParseUnixCredentials(&m); err == nil {
					sender = cred.Pid
				}
			}
		}
		access := p.u.last("NotifyAccess", "main")
		if access == "none" || (access == "main" && int(sender) != p.cmd.Process.Pid) {
			p.record(fmt.Sprintf("ignored from pid %d: %q", sender, buf[:n]))
			continue
		}
		for line := range strings.Lines(string(buf[:n])) {
			line = strings.TrimSpace(line)
			p.record(line)
			if line == "READY=1" {
				select {
				case <-p.ready:
				default:
					close(p.ready)
				}
			}
		}
	}
}

func (p *Process) record(s string) {
	p.mu.Lock()
	p.notices = append(p.notices, s)
	p.mu.Unlock()
}

// Notifications are the sd_notify lines received so far.
func (p *Process) Notifications() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.notices)
}

// Pid is the main process's.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed when the main process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Stop does what `systemctl stop` does: KillSignal (default SIGTERM) to
// the main process (KillMode=mixed or process) or to all of its
// processes (control-group, the default), up to TimeoutStopSec for the
// main process to exit, then SIGKILL to what is left (except under
// KillMode=process). The process group stands in for the unit's cgroup.
// It returns the main process's exit error, if it did not exit 0.
func (p *Process) Stop() error {
	defer p.cleanup()
	sig := syscall.SIGTERM
	if s := p.u.last("KillSignal", "SIGTERM"); s != "SIGTERM" {
		n := unix.SignalNum(s)
		if n == 0 {
			return fmt.Errorf("KillSignal=%s: unknown signal", s)
		}
		sig = n
	}
	mode := p.u.last("KillMode", "control-group")
	timeout, err := seconds(p.u.last("TimeoutStopSec", "90s"))
	if err != nil {
		return err
	}
	pid := p.cmd.Process.Pid
	if mode == "control-group" {
		_ = syscall.Kill(-pid, sig)
	} else {
		_ = syscall.Kill(pid, sig)
	}
	select {
	case <-p.exited:
	case <-time.After(timeout):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.exited
		return fmt.Errorf("%s did not stop within TimeoutStopSec=%s: killed", p.u.Name, timeout)
	}
	if mode != "process" {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	return p.err
}

func (p *Process) cleanup() {
	if p.sock != nil {
		p.sock.Close()
	}
	if p.dir != "" {
		os.RemoveAll(p.dir)
	}
}

var capabilities = map[string]uintptr{"CAP_NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE}

// seconds parses systemd's time spans as they appear in Wrenn's units
// ("90s", "5min", "15min", "infinity" is refused: a test must end).
func seconds(s string) (time.Duration, error) {
	s = strings.ReplaceAll(s, "min", "m")
	if _, err := strconv.Atoi(s); err == nil {
		s += "s"
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("time span %q: %w", s, err)
	}
	return d, nil
}

// splitCommand splits a command line the way systemd does for the forms
// Wrenn's units use: words, and double- or single-quoted words.
func splitCommand(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord, quote := false, rune(0)
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unbalanced quote in %q", s)
	}
	if inWord {
		out = append(out, cur.String())
	}
	if len(out) == 0 {
		return nil, errors.New("empty command")
	}
	return out, nil
}

// readEnvFile reads KEY=VALUE lines; # and ; start comments; values may
// be quoted.
func readEnvFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s: %q is not KEY=VALUE", path, line)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		out = append(out, strings.TrimSpace(k)+"="+v)
	}
	return out, sc.Err()
}
