package portfwd

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// listener is one listening TCP socket found in /proc/net/tcp{,6}.
type listener struct {
	addr  netip.AddrPort
	inode uint64
}

const tcpListen = "0A"

// scanListeners reads the kernel's socket tables directly: no walk of
// /proc/<pid>/fd, no helper processes, no goroutines.
func scanListeners(procNet string) ([]listener, error) {
	var out []listener
	for _, name := range []string{"tcp", "tcp6"} {
		ls, err := parseTable(procNet + "/" + name)
		if err != nil {
			if os.IsNotExist(err) {
				continue // no IPv6 in this kernel
			}
			return nil, err
		}
		out = append(out, ls...)
	}
	return out, nil
}

func parseTable(path string) ([]listener, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []listener
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != tcpListen {
			continue
		}
		ap, err := parseHexAddr(fields[1])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		inode, err := strconv.ParseUint(fields[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: inode %q: %w", path, fields[9], err)
		}
		out = append(out, listener{addr: ap, inode: inode})
	}
	return out, sc.Err()
}

// parseHexAddr decodes "0100007F:1F90": the address as 32-bit words in host
// (little-endian) order, then the port in big-endian hex.
func parseHexAddr(s string) (netip.AddrPort, error) {
	hexIP, hexPort, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("address %q has no port", s)
	}
	raw, err := hex.DecodeString(hexIP)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("address %q is not 4 or 16 hex bytes", s)
	}
	for i := 0; i < len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port in %q: %w", s, err)
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}
