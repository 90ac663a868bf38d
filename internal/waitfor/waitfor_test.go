package waitfor

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// recorder is a testing.TB that records a Fatalf instead of ending the test.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	panic(r)
}

func fails(t *testing.T, f func(tb testing.TB)) string {
	t.Helper()
	r := &recorder{TB: t}
	func() {
		defer func() {
			if p := recover(); p != nil && p != r {
				panic(p)
			}
		}()
		f(r)
	}()
	return r.msg
}

func TestTrueWaitsForTheCondition(t *testing.T) {
	start := time.Now()
	n := 0
	True(t, 5*time.Second, "the third poll", func() bool { n++; return n == 3 })
	if n != 3 || time.Since(start) > time.Second {
		t.Fatalf("%d polls in %s", n, time.Since(start))
	}
}

func TestTimeoutNamesWhatAndTheLastError(t *testing.T) {
	if msg := fails(t, func(tb testing.TB) { True(tb, 50*time.Millisecond, "never", func() bool { return false }) }); msg != "timed out after 50ms waiting for never" {
		t.Errorf("True: %q", msg)
	}
	if msg := fails(t, func(tb testing.TB) {
		NoError(tb, 50*time.Millisecond, "a service", func() error { return errors.New("connection refused") })
	}); msg != "timed out after 50ms waiting for a service: connection refused" {
		t.Errorf("NoError: %q", msg)
	}
}
