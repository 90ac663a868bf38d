package guestinit

import (
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
