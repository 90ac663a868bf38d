package service

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/config"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
)

// DefaultDiskEstimateMiB is what a sandbox that names no disk counts
// against its team's disk quota until its host reports the real size
// (the template's root filesystem and some headroom).
const DefaultDiskEstimateMiB = 2048

// QuotaUse is one limit of a team and what the team uses of it.
type QuotaUse struct {
	Limit int64
	Used  int64
}

// TeamQuota is a team's limits with its use; Custom says an admin set
// them (otherwise they are the installation's defaults).
type TeamQuota struct {
	Sandboxes, VCPUs, MemoryMiB, DiskMiB, Snapshots, CreatesPerMinute QuotaUse
	Custom                                                            bool
}

// QuotaOverride is an admin's limits for one team; a nil field is the
// installation's default.
type QuotaOverride struct {
	Sandboxes, VCPUs, Snapshots, CreatesPerMinute *int32
	MemoryMiB, DiskMiB                            *int64
}

// limits merges a team's override into the defaults.
func (s *Service) limits(ctx context.Context, q *db.Queries, team uuid.UUID) (config.Quota, bool, error) {
	l := s.Config.Quota
	o, err := q.GetTeamQuota(ctx, team)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, false, nil
	}
	if err != nil {
		return l, false, err
	}
	set := func(v *int32, into *int) {
		if v != nil {
			*into = int(*v)
		}
	}
	set(o.Sandboxes, &l.Sandboxes)
	set(o.Vcpus, &l.VCPUs)
	set(o.Snapshots, &l.Snapshots)
	set(o.CreatesPerMinute, &l.CreatesPerMinute)
	if o.MemoryMib != nil {
		l.MemoryMiB = *o.MemoryMib
	}
	if o.DiskMib != nil {
		l.DiskMiB = *o.DiskMib
	}
	return l, true, nil
}

func (s *Service) usage(ctx context.Context, q *db.Queries, team uuid.UUID) (db.TeamUsageRow, error) {
	return q.TeamUsage(ctx, db.TeamUsageParams{TeamID: team, DefaultDiskMib: DefaultDiskEstimateMiB})
}

func (s *Service) teamQuota(ctx context.Context, team uuid.UUID) (TeamQuota, error) {
	l, custom, err := s.limits(ctx, s.Q, team)
	if err != nil {
		return TeamQuota{}, err
	}
	u, err := s.usage(ctx, s.Q, team)
	if err != nil {
		return TeamQuota{}, err
	}
	return TeamQuota{
		Sandboxes: QuotaUse{int64(l.Sandboxes), int64(u.Sandboxes)}, VCPUs: QuotaUse{int64(l.VCPUs), int64(u.Vcpus)},
		MemoryMiB: QuotaUse{l.MemoryMiB, u.MemoryMib}, DiskMiB: QuotaUse{l.DiskMiB, u.DiskMib},
		Snapshots: QuotaUse{int64(l.Snapshots), int64(u.Snapshots)}, CreatesPerMinute: QuotaUse{int64(l.CreatesPerMinute), int64(u.CreatedLastMinute)},
		Custom: custom,
	}, nil
}

// GetTeamQuota returns the limits and use of a team the caller belongs to.
func (s *Service) GetTeamQuota(ctx context.Context, c auth.Caller, team uuid.UUID) (TeamQuota, error) {
	if _, err := s.teamRole(ctx, c, team); err != nil {
		return TeamQuota{}, err
	}
	return s.teamQuota(ctx, team)
}

// AdminSetQuota gives a team its own limits (nil fields: the defaults).
func (s *Service) AdminSetQuota(ctx context.Context, c auth.Caller, team uuid.UUID, o QuotaOverride) (TeamQuota, error) {
	if err := requireAdmin(c); err != nil {
		return TeamQuota{}, err
	}
	for _, v := range []*int32{o.Sandboxes, o.VCPUs, o.Snapshots, o.CreatesPerMinute} {
		if v != nil && *v < 0 {
			return TeamQuota{}, errf(ErrInvalid, "quota limits cannot be negative")
		}
	}
	for _, v := range []*int64{o.MemoryMiB, o.DiskMiB} {
		if v != nil && *v < 0 {
			return TeamQuota{}, errf(ErrInvalid, "quota limits cannot be negative")
		}
	}
	if _, err := s.Q.GetTeam(ctx, team); err != nil {
		return TeamQuota{}, notFound(err, "team")
	}
	_, err := s.Q.SetTeamQuota(ctx, db.SetTeamQuotaParams{TeamID: team, Sandboxes: o.Sandboxes, Vcpus: o.VCPUs, MemoryMib: o.MemoryMiB,
		DiskMib: o.DiskMiB, Snapshots: o.Snapshots, CreatesPerMinute: o.CreatesPerMinute})
	if err != nil {
		return TeamQuota{}, err
	}
	return s.teamQuota(ctx, team)
}

// demand is what a call adds to its team's use.
type demand struct {
	sandbox, create, snapshot bool
	vcpus                     int32
	memoryMiB, diskMiB        int64
}

// admit checks, holding the team's quota lock (taken here, held until q's
// transaction ends), that d fits within the team's limits; the caller
// records what it admitted in the same transaction.
func (s *Service) admit(ctx context.Context, q *db.Queries, team uuid.UUID, d demand) error {
	if err := q.LockTeamQuota(ctx, team); err != nil {
		return err
	}
	l, _, err := s.limits(ctx, q, team)
	if err != nil {
		return err
	}
	u, err := s.usage(ctx, q, team)
	if err != nil {
		return err
	}
	over := func(what string, limit, used, more int64, unit string) error {
		return errf(ErrQuota, "quota exceeded: the team may have %d %s%s and has %d; this needs %d more (ask an admin to raise the team's quota)", limit, unit, what, used, more)
	}
	switch {
	case d.create && int64(u.CreatedLastMinute)+1 > int64(l.CreatesPerMinute):
		return errf(ErrQuota, "quota exceeded: the team may create %d sandboxes a minute and has created %d in the last minute; try again shortly", l.CreatesPerMinute, u.CreatedLastMinute)
	case d.sandbox && int64(u.Sandboxes)+1 > int64(l.Sandboxes):
		return over(" (running or paused)", int64(l.Sandboxes), int64(u.Sandboxes), 1, "sandboxes")
	case int64(u.Vcpus)+int64(d.vcpus) > int64(l.VCPUs):
		return over(" in running sandboxes", int64(l.VCPUs), int64(u.Vcpus), int64(d.vcpus), "vCPUs")
	case u.MemoryMib+d.memoryMiB > l.MemoryMiB:
		return over(" in running sandboxes", l.MemoryMiB, u.MemoryMib, d.memoryMiB, "MiB of memory")
	case u.DiskMib+d.diskMiB > l.DiskMiB:
		return over("", l.DiskMiB, u.DiskMib, d.diskMiB, "MiB of sandbox disk")
	case d.snapshot && int64(u.Snapshots)+1 > int64(l.Snapshots):
		return over("", int64(l.Snapshots), int64(u.Snapshots), 1, "snapshots")
	}
	return nil
}

// diskDemand is what a requested disk counts against the quota.
func diskDemand(diskMiB int32) int64 {
	if diskMiB > 0 {
		return int64(diskMiB)
	}
	return DefaultDiskEstimateMiB
}
