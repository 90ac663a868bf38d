// Package metricstest scrapes a /metrics endpoint the way Prometheus
// does, lints what it serves with the client library's promlint, and
// looks samples up, for tests.
package metricstest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families are scraped metric families by name.
type Families map[string]*dto.MetricFamily

// Scrape fetches url (a /metrics endpoint) in the text format, fails t if
// promlint finds any problem in it, and returns the families.
func Scrape(t testing.TB, url string) Families {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %d %v\n%s", url, res.StatusCode, err, body)
	}
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("lint %s: %v", url, err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// Value is the value of the sample of family name whose labels include
// all of want ("k=v" pairs); ok is false if there is none. Counters,
// gauges and untyped samples have a value; histograms give their count.
func (f Families) Value(name string, want ...string) (v float64, ok bool) {
	fam := f[name]
	if fam == nil {
		return 0, false
	}
	for _, m := range fam.GetMetric() {
		if !hasLabels(m, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// Must is Value, failing t when there is no such sample.
func (f Families) Must(t testing.TB, name string, want ...string) float64 {
	t.Helper()
	v, ok := f.Value(name, want...)
	if !ok {
		t.Fatalf("no sample %s%v; %s has %s", name, want, name, f.describe(name))
	}
	return v
}

// LabelValues is every value label takes in family name.
func (f Families) LabelValues(name, label string) []string {
	var out []string
	for _, m := range f[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				out = append(out, l.GetValue())
			}
		}
	}
	return out
}

func (f Families) describe(name string) string {
	fam := f[name]
	if fam == nil {
		return "no samples at all"
	}
	var b strings.Builder
	for _, m := range fam.GetMetric() {
		fmt.Fprintf(&b, "%v; ", m.GetLabel())
	}
	return b.String()
}

func hasLabels(m *dto.Metric, want []string) bool {
	for _, w := range want {
		k, v, _ := strings.Cut(w, "=")
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == k && l.GetValue() == v {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// DashboardMetrics is every metric family the Grafana dashboard at path
// queries, histogram series (_bucket, _sum, _count) by their family's
// name, with the title of a panel that queries it.
func DashboardMetrics(t testing.TB, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	name := regexp.MustCompile(`\b(?:wrenn|go|process)_[a-z0-9_]+`)
	out := map[string]string{}
	for _, p := range d.Panels {
		for _, target := range p.Targets {
			for _, n := range name.FindAllString(target.Expr, -1) {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if s, ok := strings.CutSuffix(n, suffix); ok && strings.HasSuffix(s, "_seconds") {
						n = s
					}
				}
				out[n] = p.Title
			}
		}
	}
	return out
}

// CheckDashboard fails t for each metric the dashboard at path queries
// whose name starts with prefix (and none of skip) that f lacks.
func (f Families) CheckDashboard(t testing.TB, path, prefix string, skip ...string) {
	t.Helper()
	n := 0
	for name, panel := range DashboardMetrics(t, path) {
		if !strings.HasPrefix(name, prefix) || slices.ContainsFunc(skip, func(s string) bool { return strings.HasPrefix(name, s) }) {
			continue
		}
		n++
		if f[name] == nil {
			t.Errorf("dashboard panel %q queries %s, which is not served", panel, name)
		}
	}
	if n == 0 {
		t.Errorf("the dashboard queries no metric starting %s", prefix)
	}
}
