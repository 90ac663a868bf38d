package service

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
)

// Usage ranges: dates are UTC days, both ends included.
const (
	// UsageDefaultDays is the range GET /v1/usage covers without from.
	UsageDefaultDays = 30
	// UsageMaxDays bounds one request's range.
	UsageMaxDays = 366
	usageDate    = time.DateOnly
)

// UsageDay is a team's metered use on one UTC day: only time its
// sandboxes spent running counts (not creating, paused or stopped).
type UsageDay struct {
	Date             string
	Sandboxes        int64
	RunningSeconds   float64
	VCPUSeconds      float64
	MemoryMiBSeconds float64
}

// Usage is a team's use over a range of days, and its total.
type Usage struct {
	From, To string
	Days     []UsageDay
	Total    UsageDay
}

// TeamUsage is the caller's team's use per day from from to to (UTC
// dates, YYYY-MM-DD, both included; empty to is today, empty from is
// UsageDefaultDays days up to to). A sandbox still running counts until
// now.
func (s *Service) TeamUsage(ctx context.Context, c auth.Caller, from, to string) (Usage, error) {
	last := time.Now().UTC().Truncate(24 * time.Hour)
	if to != "" {
		t, err := time.Parse(usageDate, to)
		if err != nil {
			return Usage{}, errf(ErrInvalid, "to: %q is not a date (YYYY-MM-DD)", to)
		}
		last = t
	}
	first := last.AddDate(0, 0, -(UsageDefaultDays - 1))
	if from != "" {
		f, err := time.Parse(usageDate, from)
		if err != nil {
			return Usage{}, errf(ErrInvalid, "from: %q is not a date (YYYY-MM-DD)", from)
		}
		first = f
	}
	if first.After(last) {
		return Usage{}, errf(ErrInvalid, "from (%s) is after to (%s)", first.Format(usageDate), last.Format(usageDate))
	}
	if days := int(last.Sub(first).Hours()/24) + 1; days > UsageMaxDays {
		return Usage{}, errf(ErrInvalid, "the range covers %d days; ask for at most %d at once", days, UsageMaxDays)
	}
	rows, err := s.Q.TeamUsageByDay(ctx, db.TeamUsageByDayParams{TeamID: c.TeamID,
		FirstDay: pgtype.Date{Time: first, Valid: true}, LastDay: pgtype.Date{Time: last, Valid: true}})
	if err != nil {
		return Usage{}, fmt.Errorf("usage: %w", err)
	}
	u := Usage{From: first.Format(usageDate), To: last.Format(usageDate), Days: make([]UsageDay, 0, len(rows))}
	for _, r := range rows {
		d := UsageDay{Date: r.Day.Time.Format(usageDate), Sandboxes: r.Sandboxes, RunningSeconds: ms(r.RunningSeconds),
			VCPUSeconds: ms(r.VcpuSeconds), MemoryMiBSeconds: ms(r.MemoryMibSeconds)}
		u.Days = append(u.Days, d)
		u.Total.RunningSeconds += d.RunningSeconds
		u.Total.VCPUSeconds += d.VCPUSeconds
		u.Total.MemoryMiBSeconds += d.MemoryMiBSeconds
	}
	u.Total.RunningSeconds, u.Total.VCPUSeconds, u.Total.MemoryMiBSeconds = ms(u.Total.RunningSeconds), ms(u.Total.VCPUSeconds), ms(u.Total.MemoryMiBSeconds)
	u.Total.Sandboxes, err = s.Q.TeamUsageSandboxes(ctx, db.TeamUsageSandboxesParams{TeamID: c.TeamID,
		FirstDay: pgtype.Date{Time: first, Valid: true}, LastDay: pgtype.Date{Time: last, Valid: true}})
	if err != nil {
		return Usage{}, fmt.Errorf("usage: %w", err)
	}
	return u, nil
}

// ms rounds to the millisecond: the clocks behind the periods are no
// finer, and sums stay readable.
func ms(x float64) float64 { return math.Round(x*1000) / 1000 }
