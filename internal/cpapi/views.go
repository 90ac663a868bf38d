package cpapi

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

type userView struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Admin     bool      `json:"admin"`
	Active    bool      `json:"active"`
	CreatedAt time.Time `json:"created_at"`
}

func viewUser(u db.User) userView {
	return userView{ID: id.Format(id.User, u.ID), Email: u.Email, Name: u.Name, Admin: u.IsAdmin, Active: u.Active, CreatedAt: u.CreatedAt}
}

type teamView struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func viewTeam(t db.Team, role string) teamView {
	return teamView{ID: id.Format(id.Team, t.ID), Name: t.Name, Role: role, CreatedAt: t.CreatedAt}
}

type memberView struct {
	UserID   string    `json:"user_id"`
	Email    string    `json:"email"`
	Name     string    `json:"name"`
	Role     string    `json:"role"`
	JoinedAt time.Time `json:"joined_at"`
}

func viewMember(m db.ListMembersRow) memberView {
	return memberView{UserID: id.Format(id.User, m.ID), Email: m.Email, Name: m.Name, Role: m.Role, JoinedAt: m.CreatedAt}
}

type keyView struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	TeamID     string     `json:"team_id"`
	CreatedBy  *string    `json:"created_by"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	// Key is present once, in the response that created it.
	Key string `json:"key,omitempty"`
}

func optID(k id.Kind, u *uuid.UUID) *string {
	if u == nil {
		return nil
	}
	s := id.Format(k, *u)
	return &s
}

func viewKey(k db.ApiKey) keyView {
	return keyView{ID: id.Format(id.APIKey, k.ID), Name: k.Name, Prefix: k.Prefix, TeamID: id.Format(id.Team, k.TeamID),
		CreatedBy: optID(id.User, k.CreatedBy), CreatedAt: k.CreatedAt, LastUsedAt: k.LastUsedAt, RevokedAt: k.RevokedAt}
}

type sandboxView struct {
	ID              string            `json:"id"`
	TeamID          string            `json:"team_id"`
	Template        string            `json:"template"`
	SnapshotID      *string           `json:"snapshot_id"`
	State           string            `json:"state"`
	VCPUs           int32             `json:"vcpus"`
	MemoryMiB       int32             `json:"memory_mib"`
	DiskMiB         int32             `json:"disk_mib"`
	TimeoutSeconds  int32             `json:"timeout_seconds"`
	OnTimeout       string            `json:"on_timeout"`
	AllowInternet   bool              `json:"allow_internet"`
	AllowPublic     bool              `json:"allow_public_traffic"`
	AutoResume      bool              `json:"auto_resume"`
	Metadata        map[string]string `json:"metadata"`
	EnvVarNames     []string          `json:"env_var_names"`
	EnvdVersion     string            `json:"envd_version"`
	HostID          *string           `json:"host_id"`
	HostStatus      string            `json:"host_status"`
	Error           string            `json:"error,omitempty"`
	CreatedAt       time.Time         `json:"created_at"`
	ExpiresAt       *time.Time        `json:"expires_at"`
	StoppedAt       *time.Time        `json:"stopped_at"`
	EnvdAccessToken string            `json:"envd_access_token,omitempty"`
	TrafficToken    string            `json:"traffic_access_token,omitempty"`
	Network         networkPolicy     `json:"network"`
}

func viewSandbox(s service.Sandbox) sandboxView {
	meta := map[string]string{}
	_ = json.Unmarshal(s.Metadata, &meta)
	return sandboxView{
		ID: id.Format(id.Sandbox, s.ID), TeamID: id.Format(id.Team, s.TeamID), Template: s.Template,
		SnapshotID: optID(id.Snapshot, s.SnapshotID), State: s.State, VCPUs: s.Vcpus, MemoryMiB: s.MemoryMib, DiskMiB: s.DiskMib,
		TimeoutSeconds: s.TimeoutSeconds, OnTimeout: s.OnTimeout, AllowInternet: s.AllowInternet, Metadata: meta, EnvVarNames: nonNilSlice(s.EnvVarNames),
		EnvdVersion: s.EnvdVersion, HostID: optID(id.Host, s.HostID), HostStatus: s.HostStatus, Error: s.Error,
		CreatedAt: s.CreatedAt, ExpiresAt: s.ExpiresAt, StoppedAt: s.StoppedAt, EnvdAccessToken: s.EnvdAccessToken,
		AllowPublic: s.AllowPublicTraffic, AutoResume: s.AutoResume, TrafficToken: s.TrafficAccessToken,
		Network: viewNetwork(s),
	}
}

type snapshotView struct {
	ID              string    `json:"id"`
	Name            string    `json:"name"`
	TeamID          string    `json:"team_id"`
	HostID          *string   `json:"host_id"`
	SourceSandboxID *string   `json:"source_sandbox_id"`
	Template        string    `json:"template"`
	VCPUs           int32     `json:"vcpus"`
	MemoryMiB       int32     `json:"memory_mib"`
	DiskMiB         int32     `json:"disk_mib"`
	SizeBytes       int64     `json:"size_bytes"`
	Status          string    `json:"status"`
	CreatedAt       time.Time `json:"created_at"`
}

func viewSnapshot(s db.Snapshot) snapshotView {
	return snapshotView{ID: id.Format(id.Snapshot, s.ID), Name: s.Name, TeamID: id.Format(id.Team, s.TeamID), HostID: optID(id.Host, s.HostID),
		SourceSandboxID: optID(id.Sandbox, s.SourceSandboxID), Template: s.Template, VCPUs: s.Vcpus, MemoryMiB: s.MemoryMib,
		DiskMiB: s.DiskMib, SizeBytes: s.SizeBytes, Status: s.Status, CreatedAt: s.CreatedAt}
}

type hostView struct {
	ID                 string     `json:"id"`
	Name               string     `json:"name"`
	Address            string     `json:"address"`
	Status             string     `json:"status"`
	Runtime            string     `json:"runtime"`
	Accelerator        string     `json:"accelerator"`
	CPUs               int32      `json:"cpus"`
	MemoryMiB          int64      `json:"memory_mib"`
	DiskFreeMiB        int64      `json:"disk_free_mib"`
	MaxSandboxes       int32      `json:"max_sandboxes"`
	Sandboxes          int32      `json:"sandboxes"`
	CommittedVCPUs     int32      `json:"committed_vcpus"`
	CommittedMemoryMiB int64      `json:"committed_memory_mib"`
	Templates          []string   `json:"templates"`
	UnknownSandboxes   []string   `json:"unknown_sandboxes"`
	LastHeartbeatAt    *time.Time `json:"last_heartbeat_at"`
	CreatedAt          time.Time  `json:"created_at"`
}

func viewHost(h db.Host) hostView {
	return hostView{ID: id.Format(id.Host, h.ID), Name: h.Name, Address: h.Address, Status: h.Status, Runtime: h.Runtime,
		Accelerator: h.Accelerator, CPUs: h.Cpus, MemoryMiB: h.MemoryMib, DiskFreeMiB: h.DiskFreeMib, MaxSandboxes: h.MaxSandboxes,
		Sandboxes: h.SandboxCount, CommittedVCPUs: h.CommittedVcpus, CommittedMemoryMiB: h.CommittedMemoryMib,
		Templates: h.Templates, UnknownSandboxes: h.UnknownSandboxes, LastHeartbeatAt: h.LastHeartbeatAt, CreatedAt: h.CreatedAt}
}

type auditView struct {
	ID           string    `json:"id"`
	TeamID       *string   `json:"team_id"`
	ActorType    string    `json:"actor_type"`
	ActorID      string    `json:"actor_id"`
	Action       string    `json:"action"`
	ResourceType string    `json:"resource_type"`
	ResourceID   string    `json:"resource_id"`
	Result       string    `json:"result"`
	Status       int32     `json:"status"`
	IP           string    `json:"ip"`
	CreatedAt    time.Time `json:"created_at"`
}

func viewAudit(e db.AuditLog) auditView {
	return auditView{ID: e.ID.String(), TeamID: optID(id.Team, e.TeamID), ActorType: e.ActorType, ActorID: e.ActorID, Action: e.Action,
		ResourceType: e.ResourceType, ResourceID: e.ResourceID, Result: e.Result, Status: e.Status, IP: e.Ip, CreatedAt: e.CreatedAt}
}

func nonNilSlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// mapSlice converts a slice with f.
func mapSlice[T, U any](in []T, f func(T) U) []U {
	out := make([]U, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}
