// Package qemu runs guest images as QEMU microVMs (-M microvm, virtio-mmio
// disk and network, QMP on a per-VM socket) and picks the accelerator: KVM
// where a standard guest can run, TCG software emulation elsewhere.
package qemu

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Accelerators.
const (
	AccelAuto = "auto"
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// Binary is the QEMU system emulator used.
const Binary = "qemu-system-x86_64"

// ChooseAccel resolves "auto": KVM only when /dev/kvm is there and is not a
// PVM-only nested KVM (on which a standard guest kernel hangs at boot). It
// returns the choice and why it was made.
func ChooseAccel(requested string) (string, string, error) {
	switch requested {
	case AccelKVM:
		if _, err := os.Stat("/dev/kvm"); err != nil {
			return "", "", fmt.Errorf("accelerator kvm requested but /dev/kvm is missing: %w", err)
		}
		return AccelKVM, "requested", nil
	case AccelTCG:
		return AccelTCG, "requested", nil
	case AccelAuto, "":
	default:
		return "", "", fmt.Errorf("unknown accelerator %q: use auto, kvm or tcg", requested)
	}
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return AccelTCG, "no /dev/kvm", nil
	}
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		return AccelTCG, "/dev/kvm is PVM-only nested KVM, which cannot boot a standard guest", nil
	}
	return AccelKVM, "/dev/kvm is usable", nil
}

// HostTSCkHz is the host's TSC frequency, passed to TCG guests
// (tsc_early_khz) so they do not hang calibrating it against the PIT.
func HostTSCkHz() (int, error) {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(key) == "cpu MHz" {
			mhz, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err != nil {
				return 0, fmt.Errorf("cpu MHz %q: %w", val, err)
			}
			return int(mhz * 1000), nil
		}
	}
	return 0, errors.New("no cpu MHz in /proc/cpuinfo")
}

// VM is what one microVM is started with.
type VM struct {
	Accel      string // kvm or tcg (already resolved)
	VCPUs      int
	MemoryMiB  int
	Kernel     string // ELF vmlinux, booted through PVH
	Initrd     string
	Disk       string
	DiskFormat string   // raw or qcow2
	TapFile    *os.File // an open tap (network.OpenTap); nil for no network
	MAC        string
	Cmdline    string // appended to the fixed part: guestinit.Cmdline's parameters
	QMPSocket  string
	ConsoleLog string
	// MemoryFile backs guest RAM with a file mapped private (share=off):
	// the guest reads it lazily and what it writes stays in QEMU until a
	// pause saves it (see memory.go).
	MemoryFile string
	// Incoming starts QEMU waiting for a saved device state
	// (migrate-incoming) as xen-save-devices-state writes it: no RAM, no
	// configuration section, no trailing VM description.
	Incoming bool
	// LegacyIncoming expects instead a whole migration stream, as Wrenn
	// saved before device states (configuration section and all).
	LegacyIncoming bool
}

// Args is QEMU's command line for vm.
func (vm *VM) Args() ([]string, error) {
	cmdline := "console=ttyS0 reboot=t panic=-1 rw loglevel=4"
	args := []string{"-M", "microvm", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"}
	switch vm.Accel {
	case AccelKVM:
		args = append(args, "-accel", "kvm", "-cpu", "host")
	case AccelTCG:
		// tb-size caps the translation cache (1 GiB by default) so a TCG
		// guest's host memory stays near its RAM.
		args = append(args, "-accel", "tcg,tb-size=64", "-cpu", "max")
		khz, err := HostTSCkHz()
		if err != nil {
			return nil, fmt.Errorf("host TSC frequency for a TCG guest: %w", err)
		}
		cmdline += fmt.Sprintf(" tsc_early_khz=%d", khz)
	default:
		return nil, fmt.Errorf("accelerator %q is not resolved", vm.Accel)
	}
	format := vm.DiskFormat
	if format == "" {
		format = "raw"
	}
	mem := strconv.Itoa(max(vm.MemoryMiB, 128))
	if vm.MemoryFile != "" {
		args = append(args, "-object", fmt.Sprintf("memory-backend-file,id=mem,size=%sM,mem-path=%s,share=off", mem, vm.MemoryFile))
		args[1] = "microvm,memory-backend=mem,suppress-vmdesc=on"
	}
	switch {
	case vm.Incoming && vm.LegacyIncoming:
		args = append(args, "-incoming", "defer")
	case vm.Incoming:
		args = append(args, "-incoming", "defer", "-global", "migration.send-configuration=off")
	}
	args = append(args,
		"-smp", strconv.Itoa(max(vm.VCPUs, 1)),
		"-m", mem,
		"-kernel", vm.Kernel,
		"-drive", fmt.Sprintf("id=root,file=%s,format=%s,if=none,cache=unsafe", vm.Disk, format),
		"-device", "virtio-blk-device,drive=root",
		"-qmp", "unix:"+vm.QMPSocket+",server=on,wait=off",
	)
	if vm.Initrd != "" {
		args = append(args, "-initrd", vm.Initrd)
	}
	if vm.TapFile != nil {
		nd := "tap,id=net0,fd=3" // ExtraFiles[0] in Command
		dev := "virtio-net-device,netdev=net0"
		if vm.MAC != "" {
			dev += ",mac=" + vm.MAC
		}
		args = append(args, "-netdev", nd, "-device", dev)
	}
	if vm.ConsoleLog != "" {
		args = append(args, "-serial", "file:"+vm.ConsoleLog)
	}
	if vm.Cmdline != "" {
		cmdline += " " + vm.Cmdline
	}
	args = append(args, "-append", cmdline)
	return args, nil
}

// Command is the exec.Cmd that starts vm. The tap descriptor is handed
// over, so QEMU itself runs in the caller's namespace.
func (vm *VM) Command() (*exec.Cmd, error) {
	args, err := vm.Args()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(Binary, args...)
	if vm.TapFile != nil {
		cmd.ExtraFiles = []*os.File{vm.TapFile}
	}
	return cmd, nil
}
