package hostagent

import (
	"context"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/internal/egress"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

// SetSandboxNetwork replaces a sandbox's own egress policy.
func (s *Service) SetSandboxNetwork(_ context.Context, req *connect.Request[pb.SetSandboxNetworkRequest]) (*connect.Response[pb.SetSandboxNetworkResponse], error) {
	info, err := s.M.SetNetwork(req.Msg.SandboxId, policyFromPB(req.Msg.Network))
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.SetSandboxNetworkResponse{Sandbox: toPB(info)}), nil
}

func policyFromPB(p *pb.NetworkPolicy) egress.Policy {
	return egress.Policy{AllowOut: p.GetAllowOut(), DenyOut: p.GetDenyOut()}
}

func policyToPB(p egress.Policy) *pb.NetworkPolicy {
	if p.Empty() {
		return nil
	}
	return &pb.NetworkPolicy{AllowOut: p.AllowOut, DenyOut: p.DenyOut}
}
