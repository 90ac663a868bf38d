package service

import (
	"context"
	"encoding/json"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"git.omukk.dev/wrenn/sandbox/internal/egress"
	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

// Network is the sandbox's own egress policy as stored.
func (sb Sandbox) Network() egress.Policy {
	var p egress.Policy
	_ = json.Unmarshal(sb.Sandbox.Network, &p)
	return p
}

// checkNetwork validates a policy from a request; f names its lists in
// errors (E2B and /v1 spell them differently).
func checkNetwork(p *egress.Policy, f egress.Fields) error {
	if p == nil {
		return nil
	}
	n, err := egress.Normalize(*p, f)
	if err != nil {
		return errf(ErrInvalid, "%v", err)
	}
	*p = n
	return nil
}

func networkPB(p *egress.Policy) *pb.NetworkPolicy {
	if p == nil || p.Empty() {
		return nil
	}
	return &pb.NetworkPolicy{AllowOut: p.AllowOut, DenyOut: p.DenyOut}
}

// storeNetwork writes a sandbox's policy.
func (s *Service) storeNetwork(ctx context.Context, sid uuid.UUID, p egress.Policy) (db.Sandbox, error) {
	b, _ := json.Marshal(p)
	return s.Q.SetSandboxNetwork(ctx, db.SetSandboxNetworkParams{ID: sid, Network: b})
}

// SetNetwork replaces a running or paused sandbox's egress policy (E2B's
// PUT /sandboxes/{id}/network): its host applies it at once to a running
// sandbox, and a paused one gets it when it resumes.
func (s *Service) SetNetwork(ctx context.Context, c auth.Caller, sid uuid.UUID, p egress.Policy, f egress.Fields) (Sandbox, error) {
	if err := checkNetwork(&p, f); err != nil {
		return Sandbox{}, err
	}
	sb, err := s.getSandbox(ctx, c, sid)
	if err != nil {
		return Sandbox{}, err
	}
	if sb.State != "running" && sb.State != "paused" {
		return Sandbox{}, errf(ErrConflict, "sandbox is %s; only a running or paused sandbox's network can change", sb.State)
	}
	h, client, err := s.hostAgent(ctx, sb.HostID)
	if err != nil {
		return Sandbox{}, err
	}
	done := s.markBusy(sid)
	defer done()
	_, err = client.SetSandboxNetwork(ctx, connect.NewRequest(&pb.SetSandboxNetworkRequest{SandboxId: id.Format(id.Sandbox, sid), Network: networkPB(&p)}))
	if err != nil {
		return Sandbox{}, agentError(h, "set sandbox network", err)
	}
	row, err := s.storeNetwork(ctx, sid, p)
	return Sandbox{Sandbox: row, HostStatus: h.Status}, err
}
