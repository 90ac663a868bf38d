// Command testreport reads `go test -json` on its input and prints what a
// plain `go test` prints (each package's result, the output of the tests
// that fail), then every skipped test with its reason and how many there
// were. It exits non-zero when a test or a build failed, or when a test
// skipped that the allow-list does not name: in CI a skip is a failure
// unless someone wrote down why it is expected.
//
// The allow-list (-allow) has one "import/path TestName" per line
// (TestName may be a subtest's full name); '#' starts a comment.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output and build-fail
	Test       string
	Output     string
}

type skip struct {
	pkg, test, reason string
	allowed           bool
}

func main() {
	allowFile := flag.String("allow", "", "file listing the skips that are expected")
	flag.Parse()
	allowed, err := readAllowList(*allowFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(2)
	}
	failed, skips, err := report(os.Stdin, os.Stdout, allowed)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(2)
	}
	unexpected := 0
	fmt.Printf("==> %d tests skipped\n", len(skips))
	for _, s := range skips {
		mark := "UNEXPECTED"
		if s.allowed {
			mark = "allowed"
		} else {
			unexpected++
		}
		fmt.Printf("    %-10s %s %s: %s\n", mark, s.pkg, s.test, s.reason)
	}
	if unexpected > 0 {
		list := *allowFile
		if list == "" {
			list = "an allow-list (-allow)"
		}
		fmt.Printf("==> FAIL: %d unexpected skips (fix the environment, or add them to %s and say why)\n", unexpected, list)
	}
	if failed || unexpected > 0 {
		os.Exit(1)
	}
}

func readAllowList(path string) (map[string]bool, error) {
	allowed := map[string]bool{}
	if path == "" {
		return allowed, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for n, line := range strings.Split(string(b), "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		switch len(f) {
		case 0:
		case 2:
			allowed[f[0]+" "+f[1]] = true
		default:
			return nil, fmt.Errorf("%s:%d: want \"import/path TestName\", got %q", path, n+1, line)
		}
	}
	return allowed, nil
}

// report copies the run's output to w as go test would show it and
// returns whether anything failed and the skipped tests, in order.
func report(r io.Reader, w io.Writer, allowed map[string]bool) (failed bool, skips []skip, err error) {
	out := map[string][]string{} // a running test's output, by package and name
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var ev event
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			fmt.Fprintln(w, sc.Text()) // not an event: go test's own words
			continue
		}
		key := ev.Package + " " + ev.Test
		switch {
		case ev.Action == "build-output":
			fmt.Fprint(w, ev.Output)
		case ev.Action == "build-fail":
			failed = true
		case ev.Test == "":
			switch ev.Action {
			case "output":
				if ev.Output != "PASS\n" {
					fmt.Fprint(w, ev.Output)
				}
			case "fail":
				failed = true
			}
		case ev.Action == "output":
			out[key] = append(out[key], ev.Output)
		case ev.Action == "fail":
			failed = true
			fmt.Fprint(w, strings.Join(out[key], ""))
			delete(out, key)
		case ev.Action == "skip":
			skips = append(skips, skip{pkg: ev.Package, test: ev.Test, reason: skipReason(out[key]), allowed: allowed[key]})
			delete(out, key)
		case ev.Action == "pass":
			delete(out, key)
		}
	}
	sort.SliceStable(skips, func(i, j int) bool { return skips[i].pkg < skips[j].pkg })
	return failed, skips, sc.Err()
}

// skipReason is what a skipped test logged, without go test's own lines.
func skipReason(lines []string) string {
	var why []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		why = append(why, t)
	}
	if len(why) == 0 {
		return "(no reason given)"
	}
	return strings.Join(why, " ")
}
