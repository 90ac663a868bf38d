package guestinit

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// Params are what the host tells the guest: on the kernel command line in
// a VM, in the ParamsEnv variable in a container. Cmdline writes them and
// ParseCmdline reads them; nothing else spells the wrenn.* parameters.
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

// Cmdline renders p as ParseCmdline reads it: root= and rootfstype= when
// set, then the wrenn.* parameters that have values, Extra's in sorted
// order. The driver adds the kernel's own parameters.
func Cmdline(p *Params) string {
	var f []string
	add := func(key, val string) {
		if val != "" {
			f = append(f, key+"="+val)
		}
	}
	add("root", p.Root)
	add("rootfstype", p.RootFSType)
	if p.Addr.IsValid() {
		add("wrenn.ip", p.Addr.String())
	}
	if p.Gateway.IsValid() {
		add("wrenn.gw", p.Gateway.String())
	}
	dns := make([]string, 0, len(p.DNS))
	for _, a := range p.DNS {
		dns = append(dns, a.String())
	}
	add("wrenn.dns", strings.Join(dns, ","))
	add("wrenn.hostname", p.Hostname)
	add("wrenn.sandbox", p.SandboxID)
	add("wrenn.template", p.TemplateID)
	for _, k := range slices.Sorted(maps.Keys(p.Extra)) {
		add(k, p.Extra[k])
	}
	return strings.Join(f, " ")
}

func readCmdline() (*Params, error) {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return nil, fmt.Errorf("read /proc/cmdline: %w", err)
	}
	return ParseCmdline(string(b))
}
