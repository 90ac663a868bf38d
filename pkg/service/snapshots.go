package service

import (
	"context"
	"errors"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/fault"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

// CreateSnapshot freezes one of the team's running or paused sandboxes
// into a named template on its host; new sandboxes spawn from it there.
func (s *Service) CreateSnapshot(ctx context.Context, c auth.Caller, sid uuid.UUID, name string) (db.Snapshot, error) {
	if err := validName("snapshot name", name, 100); err != nil {
		return db.Snapshot{}, err
	}
	sb, err := s.getSandbox(ctx, c, sid)
	if err != nil {
		return db.Snapshot{}, err
	}
	if sb.State != "running" && sb.State != "paused" {
		return db.Snapshot{}, errf(ErrConflict, "sandbox is %s; snapshot a running or paused sandbox", sb.State)
	}
	h, client, err := s.hostAgent(ctx, sb.HostID)
	if err != nil {
		return db.Snapshot{}, err
	}
	var snap db.Snapshot
	err = s.inTx(ctx, func(q *db.Queries) error {
		if err := s.admit(ctx, q, c.TeamID, demand{snapshot: true}); err != nil {
			return err
		}
		snap, err = q.CreateSnapshot(ctx, db.CreateSnapshotParams{
			ID: id.New(), TeamID: c.TeamID, Name: name, HostID: sb.HostID, SourceSandboxID: &sb.ID,
			Template: sb.Template, Vcpus: sb.Vcpus, MemoryMib: sb.MemoryMib, DiskMib: sb.DiskMib,
		})
		if isUniqueViolation(err) {
			return errf(ErrConflict, "the team already has a snapshot named %q", name)
		}
		return err
	})
	if err != nil {
		return db.Snapshot{}, err
	}
	actx, cancel := detach(ctx)
	defer cancel()
	res, err := client.CreateSnapshot(actx, connect.NewRequest(&pb.CreateSnapshotRequest{SandboxId: id.Format(id.Sandbox, sid), Name: id.Format(id.Snapshot, snap.ID)}))
	if err != nil {
		_ = s.Q.DeleteSnapshot(actx, snap.ID)
		return db.Snapshot{}, agentError(h, "create snapshot", err)
	}
	return s.Q.SetSnapshotReady(actx, db.SetSnapshotReadyParams{ID: snap.ID, SizeBytes: int64(res.Msg.GetSnapshot().GetSizeBytes())})
}

// ListSnapshots lists the team's snapshots.
func (s *Service) ListSnapshots(ctx context.Context, c auth.Caller) ([]db.Snapshot, error) {
	if err := requireTeam(c); err != nil {
		return nil, err
	}
	return s.Q.ListSnapshots(ctx, c.TeamID)
}

// GetSnapshot returns one of the team's snapshots.
func (s *Service) GetSnapshot(ctx context.Context, c auth.Caller, snap uuid.UUID) (db.Snapshot, error) {
	if err := requireTeam(c); err != nil {
		return db.Snapshot{}, err
	}
	sn, err := s.Q.GetSnapshot(ctx, db.GetSnapshotParams{ID: snap, TeamID: c.TeamID})
	return sn, notFound(err, "snapshot")
}

// DeleteSnapshot removes a snapshot from its host and the database; the
// host refuses while sandboxes cloned from it still run.
func (s *Service) DeleteSnapshot(ctx context.Context, c auth.Caller, snap uuid.UUID) error {
	sn, err := s.GetSnapshot(ctx, c, snap)
	if err != nil {
		return err
	}
	if sn.Kind != "user" {
		return errf(ErrConflict, "snapshot %s belongs to a template build (%s); delete the template instead", id.Format(id.Snapshot, sn.ID), sn.Name)
	}
	if err := s.deleteSnapshotFiles(ctx, sn); err != nil {
		return err
	}
	return s.Q.DeleteSnapshot(ctx, sn.ID)
}

// deleteSnapshotFiles removes a snapshot's files from its host (nothing
// when its host was deleted; already gone is fine).
func (s *Service) deleteSnapshotFiles(ctx context.Context, sn db.Snapshot) error {
	if sn.HostID == nil {
		return nil
	}
	h, client, err := s.hostAgent(ctx, sn.HostID)
	if err != nil {
		return err
	}
	_, err = client.DeleteSnapshot(ctx, connect.NewRequest(&pb.DeleteSnapshotRequest{Name: id.Format(id.Snapshot, sn.ID)}))
	if err != nil && !errors.Is(err, fault.NotFound) {
		return agentError(h, "delete snapshot", err)
	}
	return nil
}

// FindSnapshot finds one of the team's snapshots by wire ID or by name.
func (s *Service) FindSnapshot(ctx context.Context, c auth.Caller, ref string) (db.Snapshot, error) {
	if err := requireTeam(c); err != nil {
		return db.Snapshot{}, err
	}
	if u, err := id.Parse(id.Snapshot, ref); err == nil {
		return s.GetSnapshot(ctx, c, u)
	}
	sn, err := s.Q.GetSnapshotByName(ctx, db.GetSnapshotByNameParams{TeamID: c.TeamID, Name: ref})
	return sn, notFound(err, "snapshot")
}
