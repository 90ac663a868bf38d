package hostagent

import (
	"context"
	"time"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/internal/sandbox"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

// The lifecycle of sandboxes and snapshots, as the manager runs it.

func (s *Service) HostInfo(context.Context, *connect.Request[pb.HostInfoRequest]) (*connect.Response[pb.HostInfoResponse], error) {
	c := capacityOf(s.M)
	_, why := s.M.Config().Driver.Accelerator()
	return connect.NewResponse(&pb.HostInfoResponse{
		HostId: s.HostID, Cpus: uint32(c.CPUs), MemoryMib: uint64(c.MemoryMiB), DiskFreeMib: uint64(c.DiskFreeMiB),
		Runtimes: []string{c.Runtime}, Runtime: c.Runtime, Accelerator: c.Accelerator, AcceleratorReason: why,
		Templates: c.Templates, Sandboxes: uint32(c.Sandboxes), MaxSandboxes: uint32(c.MaxSandboxes),
		CommittedVcpus: uint32(c.CommittedVCPUs), CommittedMemoryMib: uint64(c.CommittedMemoryMiB),
	}), nil
}

func toPB(i sandbox.Info) *pb.Sandbox {
	st := map[sandbox.State]pb.SandboxState{
		sandbox.Creating: pb.SandboxState_SANDBOX_STATE_CREATING, sandbox.Running: pb.SandboxState_SANDBOX_STATE_RUNNING,
		sandbox.Pausing: pb.SandboxState_SANDBOX_STATE_PAUSING, sandbox.Paused: pb.SandboxState_SANDBOX_STATE_PAUSED,
		sandbox.Resuming: pb.SandboxState_SANDBOX_STATE_RESUMING, sandbox.Stopping: pb.SandboxState_SANDBOX_STATE_STOPPING,
		sandbox.Stopped: pb.SandboxState_SANDBOX_STATE_STOPPED, sandbox.Error: pb.SandboxState_SANDBOX_STATE_ERROR,
	}[i.State]
	out := &pb.Sandbox{
		Id: i.ID, Template: i.Template, State: st, Vcpus: uint32(i.VCPUs), MemoryMib: uint32(i.MemoryMiB), DiskMib: uint32(i.DiskMiB),
		CreatedAtUnixMs: i.CreatedAt.UnixMilli(), AllowInternet: i.AllowInternet, Metadata: i.Metadata, Runtime: i.Runtime,
		Error: i.Err, EnvdVersion: i.EnvdVersion, HostAddress: i.HostAddress, OnTimeout: pb.TimeoutAction_TIMEOUT_ACTION_DESTROY,
		GuestFault: i.GuestFault, Network: policyToPB(i.Network),
	}
	out.Snapshot = i.Snapshot
	if i.OnTimeout == sandbox.OnTimeoutPause {
		out.OnTimeout = pb.TimeoutAction_TIMEOUT_ACTION_PAUSE
	}
	if !i.ExpiresAt.IsZero() {
		out.ExpiresAtUnixMs = i.ExpiresAt.UnixMilli()
	}
	return out
}

func (s *Service) CreateSandbox(ctx context.Context, req *connect.Request[pb.CreateSandboxRequest]) (*connect.Response[pb.CreateSandboxResponse], error) {
	m := req.Msg
	onTimeout := sandbox.OnTimeoutDestroy
	if m.OnTimeout == pb.TimeoutAction_TIMEOUT_ACTION_PAUSE {
		onTimeout = sandbox.OnTimeoutPause
	}
	info, err := s.M.Create(ctx, sandbox.Request{
		ID: m.SandboxId, Template: m.Template, VCPUs: int(m.Vcpus), MemoryMiB: int(m.MemoryMib), DiskMiB: int(m.DiskMib),
		Timeout: time.Duration(m.TimeoutSeconds) * time.Second, EnvVars: m.EnvVars, AllowInternet: m.AllowInternet,
		Metadata: m.Metadata, AccessToken: m.EnvdAccessToken, OnTimeout: onTimeout, Snapshot: m.Snapshot,
		Network: policyFromPB(m.Network),
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.CreateSandboxResponse{Sandbox: toPB(info)}), nil
}

func (s *Service) DestroySandbox(_ context.Context, req *connect.Request[pb.DestroySandboxRequest]) (*connect.Response[pb.DestroySandboxResponse], error) {
	if err := s.M.Destroy(req.Msg.SandboxId); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.DestroySandboxResponse{}), nil
}

func (s *Service) GetSandbox(_ context.Context, req *connect.Request[pb.GetSandboxRequest]) (*connect.Response[pb.GetSandboxResponse], error) {
	sb, err := s.M.Get(req.Msg.SandboxId)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.GetSandboxResponse{Sandbox: toPB(sb.Info())}), nil
}

func (s *Service) ListSandboxes(_ context.Context, _ *connect.Request[pb.ListSandboxesRequest]) (*connect.Response[pb.ListSandboxesResponse], error) {
	out := &pb.ListSandboxesResponse{}
	for _, i := range s.M.List() {
		out.Sandboxes = append(out.Sandboxes, toPB(i))
	}
	return connect.NewResponse(out), nil
}

func (s *Service) SetSandboxTimeout(_ context.Context, req *connect.Request[pb.SetSandboxTimeoutRequest]) (*connect.Response[pb.SetSandboxTimeoutResponse], error) {
	info, err := s.M.SetTimeout(req.Msg.SandboxId, time.Duration(req.Msg.TimeoutSeconds)*time.Second)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.SetSandboxTimeoutResponse{Sandbox: toPB(info)}), nil
}

func (s *Service) PauseSandbox(ctx context.Context, req *connect.Request[pb.PauseSandboxRequest]) (*connect.Response[pb.PauseSandboxResponse], error) {
	info, err := s.M.Pause(ctx, req.Msg.SandboxId)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.PauseSandboxResponse{Sandbox: toPB(info)}), nil
}

func (s *Service) ResumeSandbox(ctx context.Context, req *connect.Request[pb.ResumeSandboxRequest]) (*connect.Response[pb.ResumeSandboxResponse], error) {
	info, err := s.M.Resume(ctx, req.Msg.SandboxId, time.Duration(req.Msg.TimeoutSeconds)*time.Second)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.ResumeSandboxResponse{Sandbox: toPB(info)}), nil
}

func snapshotPB(si *sandbox.SnapshotInfo) *pb.Snapshot {
	return &pb.Snapshot{Name: si.Name, Template: si.Template, SourceSandboxId: si.Source, Vcpus: uint32(si.VCPUs), MemoryMib: uint32(si.MemoryMiB), DiskMib: uint32(si.DiskMiB), CreatedAtUnixMs: si.Created.UnixMilli(), SizeBytes: uint64(si.SizeBytes), Runtime: si.Runtime}
}

func (s *Service) CreateSnapshot(ctx context.Context, req *connect.Request[pb.CreateSnapshotRequest]) (*connect.Response[pb.CreateSnapshotResponse], error) {
	si, err := s.M.CreateSnapshot(ctx, req.Msg.SandboxId, req.Msg.Name)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.CreateSnapshotResponse{Snapshot: snapshotPB(si)}), nil
}

func (s *Service) DeleteSnapshot(_ context.Context, req *connect.Request[pb.DeleteSnapshotRequest]) (*connect.Response[pb.DeleteSnapshotResponse], error) {
	if err := s.M.DeleteSnapshot(req.Msg.Name); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.DeleteSnapshotResponse{}), nil
}

func (s *Service) ListSnapshots(_ context.Context, _ *connect.Request[pb.ListSnapshotsRequest]) (*connect.Response[pb.ListSnapshotsResponse], error) {
	out := &pb.ListSnapshotsResponse{}
	for _, si := range s.M.ListSnapshots() {
		out.Snapshots = append(out.Snapshots, snapshotPB(si))
	}
	return connect.NewResponse(out), nil
}

func metricsPB(m sandbox.Metrics) *pb.SandboxMetrics {
	return &pb.SandboxMetrics{TimestampUnixMs: m.At.UnixMilli(), CpuUsedPct: m.CPUUsedPct, CpuCount: m.CPUCount, MemUsedBytes: m.MemUsed, MemTotalBytes: m.MemTotal, DiskUsedBytes: m.DiskUsed, DiskTotalBytes: m.DiskTotal, HostRssBytes: m.HostRSS, MemCacheBytes: m.MemCache}
}

func (s *Service) GetSandboxMetrics(_ context.Context, req *connect.Request[pb.GetSandboxMetricsRequest]) (*connect.Response[pb.GetSandboxMetricsResponse], error) {
	recent, err := s.M.Metrics(req.Msg.SandboxId)
	if err != nil {
		return nil, err
	}
	out := &pb.GetSandboxMetricsResponse{}
	for _, m := range recent {
		out.Recent = append(out.Recent, metricsPB(m))
	}
	if len(out.Recent) > 0 {
		out.Latest = out.Recent[len(out.Recent)-1]
	}
	return connect.NewResponse(out), nil
}
