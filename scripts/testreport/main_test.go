package main

import (
	"strings"
	"testing"
)

const run = `{"Action":"start","Package":"example/a"}
{"Action":"run","Package":"example/a","Test":"TestOK"}
{"Action":"output","Package":"example/a","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"output","Package":"example/a","Test":"TestOK","Output":"    a_test.go:9: chatter\n"}
{"Action":"pass","Package":"example/a","Test":"TestOK"}
{"Action":"run","Package":"example/a","Test":"TestNoVMM"}
{"Action":"output","Package":"example/a","Test":"TestNoVMM","Output":"=== RUN   TestNoVMM\n"}
{"Action":"output","Package":"example/a","Test":"TestNoVMM","Output":"    a_test.go:12: no firecracker binary\n"}
{"Action":"output","Package":"example/a","Test":"TestNoVMM","Output":"--- SKIP: TestNoVMM (0.00s)\n"}
{"Action":"skip","Package":"example/a","Test":"TestNoVMM"}
{"Action":"run","Package":"example/a","Test":"TestRoot/sub"}
{"Action":"output","Package":"example/a","Test":"TestRoot/sub","Output":"    a_test.go:20: needs root\n"}
{"Action":"skip","Package":"example/a","Test":"TestRoot/sub"}
{"Action":"output","Package":"example/a","Test":"TestBroken","Output":"    a_test.go:30: got 1, want 2\n"}
{"Action":"fail","Package":"example/a","Test":"TestBroken"}
{"Action":"output","Package":"example/a","Output":"PASS\n"}
{"Action":"output","Package":"example/a","Output":"ok  \texample/a\t0.01s\n"}
{"Action":"pass","Package":"example/a"}
`

func TestReport(t *testing.T) {
	var w strings.Builder
	failed, skips, err := report(strings.NewReader(run), &w, map[string]bool{"example/a TestNoVMM": true})
	if err != nil {
		t.Fatal(err)
	}
	if !failed {
		t.Error("a failed test was not reported as a failure")
	}
	if got := w.String(); got != "    a_test.go:30: got 1, want 2\nok  \texample/a\t0.01s\n" {
		t.Errorf("printed %q", got)
	}
	if len(skips) != 2 || skips[0] != (skip{"example/a", "TestNoVMM", "a_test.go:12: no firecracker binary", true}) ||
		skips[1] != (skip{"example/a", "TestRoot/sub", "a_test.go:20: needs root", false}) {
		t.Errorf("skips %+v", skips)
	}
}
