package cpapi

import (
	"net/http"

	"git.omukk.dev/wrenn/sandbox/pkg/id"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

type quotaUseView struct {
	Limit int64 `json:"limit"`
	Used  int64 `json:"used"`
}

// quotaView is a team's limits and what it uses of each.
type quotaView struct {
	Sandboxes        quotaUseView `json:"sandboxes"`
	VCPUs            quotaUseView `json:"vcpus"`
	MemoryMiB        quotaUseView `json:"memory_mib"`
	DiskMiB          quotaUseView `json:"disk_mib"`
	Snapshots        quotaUseView `json:"snapshots"`
	CreatesPerMinute quotaUseView `json:"creates_per_minute"`
	// Custom is true where an admin set the team's limits.
	Custom bool `json:"custom"`
}

func viewQuota(q service.TeamQuota) quotaView {
	u := func(x service.QuotaUse) quotaUseView { return quotaUseView{Limit: x.Limit, Used: x.Used} }
	return quotaView{Sandboxes: u(q.Sandboxes), VCPUs: u(q.VCPUs), MemoryMiB: u(q.MemoryMiB), DiskMiB: u(q.DiskMiB),
		Snapshots: u(q.Snapshots), CreatesPerMinute: u(q.CreatesPerMinute), Custom: q.Custom}
}

// teamDetailView is one team with its quota.
type teamDetailView struct {
	teamView
	Quota quotaView `json:"quota"`
}

// adminSetQuota gives a team its own limits; a field left out or null is
// the installation's default.
func (a *API) adminSetQuota(w http.ResponseWriter, r *http.Request) {
	t, ok := pathID(w, r, "teamID", id.Team)
	if !ok {
		return
	}
	platformAudit(r.Context())
	setAudit(r.Context(), "admin.set_quota", "team", id.Format(id.Team, t))
	var b struct {
		Sandboxes        *int32 `json:"sandboxes"`
		VCPUs            *int32 `json:"vcpus"`
		MemoryMiB        *int64 `json:"memory_mib"`
		DiskMiB          *int64 `json:"disk_mib"`
		Snapshots        *int32 `json:"snapshots"`
		CreatesPerMinute *int32 `json:"creates_per_minute"`
	}
	if !a.decode(w, r, &b) {
		return
	}
	q, err := a.svc.AdminSetQuota(r.Context(), caller(r), t, service.QuotaOverride{Sandboxes: b.Sandboxes, VCPUs: b.VCPUs, MemoryMiB: b.MemoryMiB,
		DiskMiB: b.DiskMiB, Snapshots: b.Snapshots, CreatesPerMinute: b.CreatesPerMinute})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewQuota(q))
}
