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
	"github.com/google/uuid"

	"git.omukk.dev/wrenn/sandbox/internal/envdapi"
	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

// MovePath renames or moves a file or directory in a running sandbox, as
// user (the image's default when empty).
func (s *Service) MovePath(ctx context.Context, c auth.Caller, sid uuid.UUID, from, to, user string) (*pb.FileEntry, error) {
	if from == "" || to == "" {
		return nil, errf(ErrInvalid, "from and to are both required")
	}
	t, err := s.Running(ctx, c, sid)
	if err != nil {
		return nil, err
	}
	res, err := t.Agent.MovePath(ctx, connect.NewRequest(&pb.MovePathRequest{SandboxId: t.AgentID, Source: from, Destination: to, User: user}))
	if err != nil {
		return nil, AgentError(t.Host, "move", err)
	}
	return res.Msg.GetEntry(), nil
}

// Port is a TCP port something listens on inside a sandbox.
type Port struct {
	Port    int
	Address string // the address it is bound to, as the guest sees it
}

// ListeningPorts lists the TCP ports listening inside a running sandbox
// (from the guest's /proc/net/tcp and tcp6), envd's own left out.
func (s *Service) ListeningPorts(ctx context.Context, c auth.Caller, sid uuid.UUID) ([]Port, error) {
	t, err := s.Running(ctx, c, sid)
	if err != nil {
		return nil, err
	}
	res, err := t.Agent.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: t.AgentID, Cmd: "cat", Args: []string{"/proc/net/tcp", "/proc/net/tcp6"}, User: "root", TimeoutSeconds: 10}))
	if err != nil {
		return nil, AgentError(t.Host, "list ports", err)
	}
	if res.Msg.GetExitCode() != 0 && len(res.Msg.GetStdout()) == 0 {
		return nil, errf(ErrHost, "list ports: reading /proc/net/tcp in the sandbox failed: %s", strings.TrimSpace(string(res.Msg.GetStderr())))
	}
	return parseListening(res.Msg.GetStdout()), nil
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
