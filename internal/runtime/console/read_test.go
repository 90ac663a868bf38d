package console

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// keeperWriting runs a keeper of dir's console with cap max, writes each
// of parts through it and waits for it to end.
func keeperWriting(t *testing.T, dir string, max int64, parts ...string) {
	t.Helper()
	k, err := Start(filepath.Join(dir, FileName), max)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		if _, err := k.W.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	k.Wait()
}

func read(t *testing.T, dir string, q Query) []Entry {
	t.Helper()
	es, _, err := Read(dir, q)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func messages(es []Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Message
	}
	return out
}

// TestStampedEntries: every line gets a host stamp, strictly increasing;
// slog text lines (wrenn-init's, envd's) become levelled entries with
// fields; other lines are info; an endless line is cut and marked.
func TestStampedEntries(t *testing.T) {
	dir := t.TempDir()
	before := time.Now()
	long := strings.Repeat("y", 3*MaxLine)
	keeperWriting(t, dir, 1<<20,
		"[    0.1] kernel says hi\r\n",
		`time=2020-01-01T00:00:00.000Z level=INFO msg="envd listening" addr=0.0.0.0:49983 component=envd`+"\n",
		"time=2020-01-01T00:00:00.000Z level=WARN+2 msg=odd component=wrenn-init\n",
		"time=2020-01-01T00:00:00.000Z level=DEBUG msg=\"quoted \\\"inner\\\"\"\n",
		"time=2020-01-01 looks like slog but is not\n",
		long+"\n", "bad utf8 \xff\n", "no newline at the end")
	es := read(t, dir, Query{})
	want := []string{"[    0.1] kernel says hi", "envd listening", "odd", `quoted "inner"`, "time=2020-01-01 looks like slog but is not", long[:MaxLine], "bad utf8 \uFFFD", "no newline at the end"}
	if got := messages(es); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("messages:\n%q\nwant\n%q", got, want)
	}
	levels := []Level{Info, Info, Warn, Debug, Info, Info, Info, Info}
	for i, e := range es {
		if e.Level != levels[i] {
			t.Errorf("entry %d level %s, want %s", i, e.Level, levels[i])
		}
		if e.Time.Before(before) || e.Time.After(time.Now()) {
			t.Errorf("entry %d stamped %s: not the host's time of writing", i, e.Time)
		}
		if i > 0 && !e.Time.After(es[i-1].Time) {
			t.Errorf("entry %d stamp %s not after %s", i, e.Time, es[i-1].Time)
		}
	}
	if f := es[1].Fields; f["addr"] != "0.0.0.0:49983" || f["component"] != "envd" || len(f) != 2 {
		t.Errorf("fields %v", f)
	}
	if es[5].Fields["truncated"] != "true" || es[0].Fields == nil {
		t.Errorf("fields %v / %v", es[5].Fields, es[0].Fields)
	}
}

// TestQuerySelects: time window, level, search and limit (oldest or newest).
func TestQuerySelects(t *testing.T) {
	dir := t.TempDir()
	var parts []string
	for i := range 10 {
		lvl := "INFO"
		if i%3 == 0 {
			lvl = "ERROR"
		}
		parts = append(parts, fmt.Sprintf("time=x level=%s msg=m%d\n", lvl, i))
	}
	keeperWriting(t, dir, 1<<20, parts...)
	all := read(t, dir, Query{})
	if len(all) != 10 {
		t.Fatalf("%d entries", len(all))
	}
	cases := []struct {
		q    Query
		want string
	}{
		{Query{Start: all[2].Time, End: all[4].Time}, "[m2 m3 m4]"},
		{Query{Limit: 3}, "[m0 m1 m2]"},
		{Query{Limit: 3, Newest: true}, "[m7 m8 m9]"},
		{Query{MinLevel: Error}, "[m0 m3 m6 m9]"},
		{Query{MinLevel: Warn, Limit: 2, Newest: true}, "[m6 m9]"},
		{Query{Search: "m1"}, "[m1]"},
		{Query{Start: all[9].Time.Add(time.Nanosecond)}, "[]"},
	}
	for _, c := range cases {
		if got := fmt.Sprint(messages(read(t, dir, c.q))); got != c.want {
			t.Errorf("%+v: %s, want %s", c.q, got, c.want)
		}
	}
}

// TestKeeperAfterKeeper: a resumed guest's keeper appends, its stamps
// after the last one in the file, and a line the first guest left
// unfinished is not glued to the next guest's.
func TestKeeperAfterKeeper(t *testing.T) {
	dir := t.TempDir()
	keeperWriting(t, dir, 1<<20, "one\n", "half")
	keeperWriting(t, dir, 1<<20, "two\n")
	if got := fmt.Sprint(messages(read(t, dir, Query{}))); got != "[one half two]" {
		t.Fatalf("messages %s", got)
	}
	// A stamp in the future (a host clock that went back) must still
	// be followed by later stamps.
	future := time.Now().Add(time.Hour).UTC()
	f, _ := os.OpenFile(filepath.Join(dir, FileName), os.O_APPEND|os.O_WRONLY, 0)
	fmt.Fprintf(f, "%s future\n", future.Format(StampLayout))
	f.Close()
	keeperWriting(t, dir, 1<<20, "three\n")
	es := read(t, dir, Query{})
	if got := fmt.Sprint(messages(es)); got != "[one half two future three]" {
		t.Fatalf("messages %s", got)
	}
	if !es[4].Time.After(future) {
		t.Fatalf("after restart %s, not after %s", es[4].Time, future)
	}
}

// TestRotatedConsoleReads: a console past its cap is read from both
// files in order, with the rotation's note, nothing beyond the cap.
func TestRotatedConsoleReads(t *testing.T) {
	dir := t.TempDir()
	var parts []string
	for i := range 100 {
		parts = append(parts, fmt.Sprintf("line %03d %s\n", i, strings.Repeat("z", 40)))
	}
	keeperWriting(t, dir, 2000, parts...)
	es := read(t, dir, Query{})
	var lines []string
	for i, e := range es {
		if i > 0 && !e.Time.After(es[i-1].Time) {
			t.Fatalf("entry %d out of order", i)
		}
		if !strings.HasPrefix(e.Message, "[wrenn:") {
			lines = append(lines, e.Message[:8])
		}
	}
	if len(lines) == 0 || lines[len(lines)-1] != "line 099" {
		t.Fatalf("lines %v", lines)
	}
	for i := 1; i < len(lines); i++ {
		if lines[i] <= lines[i-1] {
			t.Fatalf("lines out of order: %v", lines)
		}
	}
	for _, f := range []string{FileName, FileName + ".1"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() > 2000 {
			t.Fatalf("%s: %v %v", f, fi, err)
		}
	}
}

// TestFollowSeesNewLines: Follow passes on lines written after the read,
// across a rotation, and returns when the sandbox is gone.
func TestFollowSeesNewLines(t *testing.T) {
	old := PollInterval
	PollInterval = 20 * time.Millisecond
	t.Cleanup(func() { PollInterval = old })
	dir := t.TempDir()
	k, err := Start(filepath.Join(dir, FileName), 600)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Wait()
	k.W.Write([]byte("before\n"))
	var es []Entry
	for deadline := time.Now().Add(5 * time.Second); len(es) == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		es = read(t, dir, Query{})
	}
	_, pos, _ := Read(dir, Query{})
	got := make(chan Entry, 100)
	var gone atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- Follow(context.Background(), dir, pos, Query{Search: "line-after"}, gone.Load, func(b []Entry) error {
			for _, e := range b {
				got <- e
			}
			return nil
		})
	}()
	for i := range 20 { // 20 × ~60 bytes: rotates at 600
		fmt.Fprintf(k.W, "line-after %02d %s\n", i, strings.Repeat("q", 20))
		time.Sleep(5 * time.Millisecond)
	}
	seen := map[string]bool{}
	for len(seen) < 20 {
		select {
		case e := <-got:
			if seen[e.Message[:13]] {
				t.Fatalf("%q twice", e.Message)
			}
			seen[e.Message[:13]] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("followed %d of 20 lines: %v", len(seen), seen)
		}
	}
	gone.Store(true)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Follow went on after the sandbox was gone")
	}
}
