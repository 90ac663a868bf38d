// Package network owns the host side of sandbox networking: named network
// namespaces, the tap a guest's NIC is attached to, and dialing into a
// namespace from the host process.
package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// InNamespace runs fn on an OS thread switched into the named namespace.
// Sockets fn opens stay in that namespace after it returns.
func InNamespace(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("current namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(name)
		if err != nil {
			errc <- fmt.Errorf("namespace %s: %w", name, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", name, err)
			return
		}
		ferr := fn()
		// If switching back fails the thread stays locked, and the runtime
		// retires it with the goroutine instead of reusing it elsewhere.
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// CreateNamespace makes a named namespace (bind-mounted under /run/netns,
// as ip-netns does) with its loopback up.
func CreateNamespace(name string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		h, err := netns.NewNamed(name) // switches this thread into it
		if err != nil {
			errc <- fmt.Errorf("create namespace %s: %w", name, err)
			_ = netns.Set(orig)
			return
		}
		defer h.Close()
		var lerr error
		if lo, err := netlink.LinkByName("lo"); err != nil {
			lerr = err
		} else {
			lerr = netlink.LinkSetUp(lo)
		}
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		}
		if lerr != nil {
			_ = netns.DeleteNamed(name)
			errc <- fmt.Errorf("namespace %s: bring lo up: %w", name, lerr)
			return
		}
		errc <- nil
	}()
	return <-errc
}

// DeleteNamespace removes a named namespace; a missing one is not an error.
func DeleteNamespace(name string) error {
	if err := netns.DeleteNamed(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete namespace %s: %w", name, err)
	}
	return nil
}

// NamespaceExists reports whether /run/netns/<name> exists.
func NamespaceExists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

// AddTap creates tap device name inside namespace ns with addr, up.
func AddTap(ns, name string, addr netip.Prefix) error {
	return InNamespace(ns, func() error {
		tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name}, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_DEFAULTS | netlink.TUNTAP_NO_PI}
		if err := netlink.LinkAdd(tap); err != nil {
			return fmt.Errorf("create tap %s: %w", name, err)
		}
		// LinkAdd keeps the tap's fds open; the tap is persistent, so they
		// are not needed (QEMU opens it by name).
		for _, f := range tap.Fds {
			f.Close()
		}
		link, err := netlink.LinkByName(name)
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: prefixNet(addr)}); err != nil {
			return fmt.Errorf("address %s on %s: %w", addr, name, err)
		}
		return netlink.LinkSetUp(link)
	})
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Dialer returns a DialContext that connects from inside namespace ns.
func Dialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := InNamespace(ns, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// OpenTap opens the existing tap device name in namespace ns for a VMM,
// which is given the descriptor (QEMU: -netdev tap,fd=N) and need not run
// in the namespace itself.
func OpenTap(ns, name string) (*os.File, error) {
	var f *os.File
	err := InNamespace(ns, func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("attach to tap %s in %s: %w", name, ns, err)
		}
		f = os.NewFile(uintptr(fd), "/dev/net/tun:"+name)
		return nil
	})
	return f, err
}

func namespaceHandle(name string) (netns.NsHandle, error) {
	h, err := netns.GetFromName(name)
	if err != nil {
		return 0, fmt.Errorf("namespace %s: %w", name, err)
	}
	return h, nil
}
