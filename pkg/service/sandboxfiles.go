package service

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/internal/envdapi"
	"git.omukk.dev/wrenn/sandbox/pkg/fault"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

// Move renames or moves a file or directory in the sandbox, as user
// (the image's default when empty).
func (g *Guest) Move(ctx context.Context, from, to, user string) (FileEntry, error) {
	if from == "" || to == "" {
		return FileEntry{}, errf(ErrInvalid, "from and to are both required")
	}
	res, err := g.t.Agent.MovePath(ctx, connect.NewRequest(&pb.MovePathRequest{SandboxId: g.t.AgentID, Source: from, Destination: to, User: user}))
	if err != nil {
		return FileEntry{}, g.t.fail("move", err)
	}
	return entryOf(res.Msg.GetEntry()), nil
}

// Port is a TCP port something listens on inside a sandbox.
type Port struct {
	Port    int
	Address string // the address it is bound to, as the guest sees it
}

// ListeningPorts lists the TCP ports listening inside the sandbox (from
// the guest's /proc/net/tcp and tcp6), envd's own left out.
func (g *Guest) ListeningPorts(ctx context.Context) ([]Port, error) {
	res, err := g.Exec(ctx, ExecInput{Cmd: "cat", Args: []string{"/proc/net/tcp", "/proc/net/tcp6"}, User: "root", TimeoutSeconds: 10})
	if err != nil {
		return nil, err
	}
	if res.ExitCode != 0 && len(res.Stdout) == 0 {
		return nil, errf(fault.Upstream, "list ports: reading /proc/net/tcp in the sandbox failed: %s", strings.TrimSpace(string(res.Stderr)))
	}
	return parseListening(res.Stdout), nil
}

// parseListening reads the LISTEN sockets of /proc/net/tcp{,6} text: each
// line's local address is hex IP:port (the IP in host byte order per
// 32-bit word), state 0A is LISTEN.
func parseListening(b []byte) []Port {
	seen := map[Port]bool{}
	var out []Port
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[3] != "0A" {
			continue
		}
		hexIP, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		port, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil || port == envdapi.Port {
			continue
		}
		raw, err := hex.DecodeString(hexIP)
		if err != nil || (len(raw) != 4 && len(raw) != 16) {
			continue
		}
		for i := 0; i+4 <= len(raw); i += 4 {
			slices.Reverse(raw[i : i+4])
		}
		addr, _ := netip.AddrFromSlice(raw)
		p := Port{Port: int(port), Address: addr.Unmap().String()}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b Port) int { return a.Port - b.Port })
	return out
}
