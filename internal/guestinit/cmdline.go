package guestinit

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// Params are what the host tells the guest on the kernel command line.
type Params struct {
	Root       string       // root=, the root block device
	RootFSType string       // rootfstype=
	Addr       netip.Prefix // wrenn.ip=169.254.0.21/30
	Gateway    netip.Addr   // wrenn.gw=169.254.0.22
	DNS        []netip.Addr // wrenn.dns=1.1.1.1,9.9.9.9
	Hostname   string       // wrenn.hostname=
	SandboxID  string       // wrenn.sandbox=
	TemplateID string       // wrenn.template=
	Extra      map[string]string
}

// ParseCmdline reads the parameters this package understands; anything
// malformed is an error naming the parameter, since a guest configured
// half-way is worse than one that says why it stopped.
func ParseCmdline(line string) (*Params, error) {
	p := &Params{Root: "/dev/vda", RootFSType: "ext4", Hostname: "sandbox", Extra: map[string]string{}}
	for _, field := range strings.Fields(line) {
		key, val, _ := strings.Cut(field, "=")
		var err error
		switch key {
		case "root":
			p.Root = val
		case "rootfstype":
			p.RootFSType = val
		case "wrenn.ip":
			p.Addr, err = netip.ParsePrefix(val)
		case "wrenn.gw":
			p.Gateway, err = netip.ParseAddr(val)
		case "wrenn.dns":
			for s := range strings.SplitSeq(val, ",") {
				a, perr := netip.ParseAddr(s)
				if perr != nil {
					err = perr
					break
				}
				p.DNS = append(p.DNS, a)
			}
		case "wrenn.hostname":
			p.Hostname = val
		case "wrenn.sandbox":
			p.SandboxID = val
		case "wrenn.template":
			p.TemplateID = val
		default:
			if strings.HasPrefix(key, "wrenn.") {
				p.Extra[key] = val
			}
		}
		if err != nil {
			return nil, fmt.Errorf("kernel command line %s: %w", field, err)
		}
	}
	return p, nil
}

func readCmdline() (*Params, error) {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return nil, fmt.Errorf("read /proc/cmdline: %w", err)
	}
	return ParseCmdline(string(b))
}
