package cpapi

import (
	"net/http"

	"git.omukk.dev/wrenn/sandbox/pkg/id"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

// usageAmounts is metered use: running time only (paused is free).
type usageAmounts struct {
	Sandboxes        int64   `json:"sandboxes"`
	RunningSeconds   float64 `json:"running_seconds"`
	VCPUSeconds      float64 `json:"vcpu_seconds"`
	MemoryMiBSeconds float64 `json:"memory_mib_seconds"`
}

type usageDayView struct {
	Date string `json:"date"`
	usageAmounts
}

type usageView struct {
	TeamID string         `json:"team_id"`
	From   string         `json:"from"`
	To     string         `json:"to"`
	Days   []usageDayView `json:"days"`
	Total  usageAmounts   `json:"total"`
}

func amounts(d service.UsageDay) usageAmounts {
	return usageAmounts{Sandboxes: d.Sandboxes, RunningSeconds: d.RunningSeconds, VCPUSeconds: d.VCPUSeconds, MemoryMiBSeconds: d.MemoryMiBSeconds}
}

// usage is the caller's team's metered use per UTC day.
func (a *API) usage(w http.ResponseWriter, r *http.Request) {
	c := caller(r)
	u, err := a.svc.TeamUsage(r.Context(), c, r.URL.Query().Get("from"), r.URL.Query().Get("to"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	v := usageView{TeamID: id.Format(id.Team, c.TeamID), From: u.From, To: u.To, Days: make([]usageDayView, 0, len(u.Days)), Total: amounts(u.Total)}
	for _, d := range u.Days {
		v.Days = append(v.Days, usageDayView{Date: d.Date, usageAmounts: amounts(d)})
	}
	writeJSON(w, http.StatusOK, v)
}
