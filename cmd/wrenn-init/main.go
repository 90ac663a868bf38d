// Command wrenn-init is PID 1 of Wrenn guests: the initramfs's /init (load
// modules, mount the root disk, switch to it) and the root disk's /sbin/init
// (mounts, network, clock, reaping, envd supervision, clean poweroff).
package main

import (
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"

	"git.omukk.dev/wrenn/sandbox/internal/guestinit"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "wrenn-init")
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "wrenn-init: must run as PID 1 of a guest")
		os.Exit(2)
	}
	var err error
	// The kernel starts the initramfs's init as /init; it execs the root
	// disk's as /sbin/init.
	if os.Args[0] == "/init" {
		err = guestinit.Initramfs()
	} else {
		err = guestinit.Run(log)
	}
	// Returning would panic the kernel without a word: say why, then power
	// off so the host sees the VM stop instead of hang.
	log.Error("guest init failed; powering off", "err", err)
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}
