package cpserver_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"git.omukk.dev/wrenn/sandbox/internal/cptest"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
)

type usageDay struct {
	Date             string
	Sandboxes        int64
	RunningSeconds   float64 `json:"running_seconds"`
	VCPUSeconds      float64 `json:"vcpu_seconds"`
	MemoryMiBSeconds float64 `json:"memory_mib_seconds"`
}

type usageResponse struct {
	TeamID   string `json:"team_id"`
	From, To string
	Days     []usageDay
	Total    usageDay
}

// TestUsage: the trigger opens a metered period when a sandbox starts
// running and closes it when it stops running, whatever changes the
// state; GET /v1/usage cuts periods at UTC midnights, leaves paused time
// out, sums per day and team, and refuses bad ranges.
func TestUsage(t *testing.T) {
	ctx := context.Background()
	cp, err := pg.Start(ctx, cptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	a, b := cp.Signup(t, "a@example.com"), cp.Signup(t, "b@example.com")
	conn, err := pgx.Connect(ctx, cp.Config.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	runs := func(sb string) (total, open int) {
		t.Helper()
		if err := conn.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE ended_at IS NULL) FROM sandbox_runs WHERE sandbox_id = $1", sb).Scan(&total, &open); err != nil {
			t.Fatal(err)
		}
		return total, open
	}
	tid, _ := id.Parse(id.Team, a.TeamID)
	var sb string
	if err := conn.QueryRow(ctx, `INSERT INTO sandboxes (id, team_id, template, state, vcpus, memory_mib, disk_mib, timeout_seconds, on_timeout, allow_internet)
		VALUES (gen_random_uuid(), $1, 'base', 'creating', 2, 512, 1024, 300, 'destroy', true) RETURNING id::text`, tid).Scan(&sb); err != nil {
		t.Fatal(err)
	}
	// The life of a sandbox, one state at a time, and what is metered.
	for _, step := range []struct {
		state       string
		total, open int
	}{
		{"creating", 0, 0}, {"running", 1, 1}, {"running", 1, 1}, {"pausing", 1, 0}, {"paused", 1, 0}, {"resuming", 1, 0},
		{"running", 2, 1}, {"stopping", 2, 0}, {"stopped", 2, 0},
	} {
		exec("UPDATE sandboxes SET state = $2 WHERE id = $1", sb, step.state)
		if total, open := runs(sb); total != step.total || open != step.open {
			t.Fatalf("after %s: %d periods, %d open; want %d, %d", step.state, total, open, step.total, step.open)
		}
	}
	// Place the two periods: one across midnight, then four hours paused
	// (not metered), then half an hour.
	exec(`UPDATE sandbox_runs SET started_at = '2026-01-01T23:00:00Z', ended_at = '2026-01-02T01:00:00Z'
		WHERE id = (SELECT min(id) FROM sandbox_runs WHERE sandbox_id = $1)`, sb)
	exec(`UPDATE sandbox_runs SET started_at = '2026-01-02T05:00:00Z', ended_at = '2026-01-02T05:30:00Z'
		WHERE id = (SELECT max(id) FROM sandbox_runs WHERE sandbox_id = $1)`, sb)

	var u usageResponse
	if err := cp.Must(t, 200, "GET", "/v1/usage?from=2026-01-01&to=2026-01-03", a.Token, nil).JSON(&u); err != nil {
		t.Fatal(err)
	}
	want := []usageDay{
		{Date: "2026-01-01", Sandboxes: 1, RunningSeconds: 3600, VCPUSeconds: 7200, MemoryMiBSeconds: 3600 * 512},
		{Date: "2026-01-02", Sandboxes: 1, RunningSeconds: 5400, VCPUSeconds: 10800, MemoryMiBSeconds: 5400 * 512},
		{Date: "2026-01-03"},
	}
	if u.TeamID != a.TeamID || u.From != "2026-01-01" || u.To != "2026-01-03" || len(u.Days) != len(want) {
		t.Fatalf("usage: %+v", u)
	}
	for i, d := range want {
		if u.Days[i] != d {
			t.Errorf("day %d: %+v, want %+v", i, u.Days[i], d)
		}
	}
	if tot := (usageDay{Sandboxes: 1, RunningSeconds: 9000, VCPUSeconds: 18000, MemoryMiBSeconds: 9000 * 512}); u.Total != tot {
		t.Errorf("total: %+v, want %+v", u.Total, tot)
	}
	// Another team's usage is its own.
	if err := cp.Must(t, 200, "GET", "/v1/usage?from=2026-01-01&to=2026-01-03", b.Token, nil).JSON(&u); err != nil {
		t.Fatal(err)
	}
	if u.Total != (usageDay{}) || u.TeamID != b.TeamID {
		t.Errorf("team b sees %+v", u)
	}

	// A sandbox running now counts until now, today.
	var live string
	if err := conn.QueryRow(ctx, `INSERT INTO sandboxes (id, team_id, template, state, vcpus, memory_mib, disk_mib, timeout_seconds, on_timeout, allow_internet)
		VALUES (gen_random_uuid(), $1, 'base', 'running', 1, 256, 1024, 300, 'destroy', true) RETURNING id::text`, tid).Scan(&live); err != nil {
		t.Fatal(err)
	}
	exec("UPDATE sandbox_runs SET started_at = now() - interval '10 seconds' WHERE sandbox_id = $1", live)
	if err := cp.Must(t, 200, "GET", "/v1/usage", a.Token, nil).JSON(&u); err != nil {
		t.Fatal(err)
	}
	today := time.Now().UTC().Format(time.DateOnly)
	last := u.Days[len(u.Days)-1]
	if len(u.Days) != 30 || u.To != today || last.Date != today || last.Sandboxes != 1 || last.RunningSeconds < 10 || last.RunningSeconds > 3600 ||
		math.Abs(last.MemoryMiBSeconds-256*last.RunningSeconds) > 1 {
		t.Errorf("default range with a running sandbox: %d days to %s, last %+v", len(u.Days), u.To, last)
	}

	for _, q := range []string{"?from=yesterday", "?to=2026-13-01", "?from=2026-02-01&to=2026-01-01", "?from=2024-01-01&to=2026-01-01"} {
		if r, _ := cp.Do("GET", "/v1/usage"+q, a.Token, nil); r.Status != 400 {
			t.Errorf("GET /v1/usage%s: %s", q, r)
		}
	}
	if r, _ := cp.Do("GET", "/v1/usage", "", nil); r.Status != 401 {
		t.Errorf("GET /v1/usage without credentials: %s", r)
	}
}
