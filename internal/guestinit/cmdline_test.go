package guestinit

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	p, err := ParseCmdline("console=ttyS0 root=/dev/vdb rw wrenn.ip=169.254.0.21/30 wrenn.gw=169.254.0.22 wrenn.dns=1.1.1.1,9.9.9.9 wrenn.hostname=sb-1 wrenn.sandbox=sb1 wrenn.template=base wrenn.future=x\n")
	if err != nil {
		t.Fatal(err)
	}
	if p.Root != "/dev/vdb" || p.Addr.String() != "169.254.0.21/30" || p.Gateway.String() != "169.254.0.22" ||
		len(p.DNS) != 2 || p.Hostname != "sb-1" || p.SandboxID != "sb1" || p.TemplateID != "base" || p.Extra["wrenn.future"] != "x" {
		t.Fatalf("parsed %+v", p)
	}
	d, err := ParseCmdline("quiet")
	if err != nil || d.Root != "/dev/vda" || d.RootFSType != "ext4" || d.Addr.IsValid() {
		t.Fatalf("defaults %+v %v", d, err)
	}
	for _, bad := range []string{"wrenn.ip=300.1.1.1/30", "wrenn.ip=169.254.0.21", "wrenn.gw=nope", "wrenn.dns=1.1.1.1,x"} {
		if _, err := ParseCmdline(bad); err == nil || !strings.Contains(err.Error(), strings.SplitN(bad, "=", 2)[0]) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

// What Cmdline writes, ParseCmdline reads back whole, DNS included.
func TestCmdlineRoundTrip(t *testing.T) {
	want := &Params{
		Root: "/dev/vda", RootFSType: "ext4",
		Addr: netip.MustParsePrefix("169.254.0.21/30"), Gateway: netip.MustParseAddr("169.254.0.22"),
		DNS:      []netip.Addr{netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("1.1.1.1")},
		Hostname: "sb-1", SandboxID: "sb-1", TemplateID: "base",
		Extra: map[string]string{"wrenn.b": "2", "wrenn.a": "1"},
	}
	line := Cmdline(want)
	if !strings.Contains(line, "wrenn.dns=10.99.0.2,1.1.1.1") || !strings.HasSuffix(line, "wrenn.a=1 wrenn.b=2") {
		t.Fatalf("cmdline %q", line)
	}
	got, err := ParseCmdline("console=ttyS0 " + line)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parsed back %+v, want %+v", got, want)
	}
	if line := Cmdline(&Params{SandboxID: "x"}); line != "wrenn.sandbox=x" {
		t.Fatalf("unset parameters written: %q", line)
	}
}
