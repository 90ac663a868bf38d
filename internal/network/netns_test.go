package network

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// A namespace with a tap is made and removed; a listener in it is reachable
// only through the namespace's dialer.
func TestNamespaceTapDial(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	name := "wrenn-test-ns"
	_ = DeleteNamespace(name)
	if err := CreateNamespace(name); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := DeleteNamespace(name); err != nil {
			t.Error(err)
		}
		if NamespaceExists(name) {
			t.Error("namespace left behind")
		}
	}()
	if err := CreateNamespace(name); err == nil {
		t.Error("creating an existing namespace succeeded")
	}
	if err := AddTap(name, "tap0", netip.MustParsePrefix("169.254.0.22/30")); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName("tap0"); err == nil {
		t.Fatal("tap0 appeared in the host namespace")
	}
	var ln net.Listener
	if err := InNamespace(name, func() error {
		var err error
		ln, err = net.Listen("tcp", "169.254.0.22:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("inside\n"))
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", ln.Addr().String()); err == nil {
		t.Error("the namespace's address is reachable from the host namespace")
	}
	c, err := Dialer(name)(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, _ := c.Read(buf)
	c.Close()
	if strings.TrimSpace(string(buf[:n])) != "inside" {
		t.Fatalf("read %q", buf[:n])
	}
	if err := AddTap("wrenn-no-such-ns", "tap0", netip.MustParsePrefix("169.254.0.22/30")); err == nil {
		t.Error("tap in a missing namespace")
	}
}
