// Package bench measures Wrenn's components against baselines taken in the
// same run on the same machine, and prints the results as a table. Figures
// are medians over repeated runs; ratios, not absolute numbers, are what
// carry across noisy shared machines.
package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Row is one line of a results table.
type Row struct {
	Metric   string
	Wrenn    string
	Baseline string
	Ratio    string
	Target   string
}

// Print writes rows as an aligned table.
func Print(w io.Writer, title string, rows []Row) {
	fmt.Fprintf(w, "\n%s\n%s\n", title, strings.Repeat("=", len(title)))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\twrenn\tbaseline (same run)\tratio\ttarget")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Metric, r.Wrenn, r.Baseline, r.Ratio, r.Target)
	}
	tw.Flush()
}

// Median of durations (the input is not modified).
func Median(ds []time.Duration) time.Duration {
	return Percentile(ds, 50)
}

// Percentile p (0–100) by nearest rank.
func Percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	if i < 1 {
		i = 1
	}
	return s[i-1]
}

// MedianFloat of values.
func MedianFloat(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// Ms formats a duration in milliseconds.
func Ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// MBps formats a throughput.
func MBps(v float64) string { return fmt.Sprintf("%.0f MB/s", v) }
