// Package waitfor is how tests wait for something they can observe: a
// condition polled until it holds or a deadline passes, then a failure
// that names what was awaited. Only tests import it.
package waitfor

import (
	"errors"
	"testing"
	"time"
)

// maxInterval bounds the pause between polls, which starts at a few
// milliseconds and doubles, so quick events are seen quickly and slow
// ones are not polled in a tight loop.
const maxInterval = 200 * time.Millisecond

// True waits until cond holds, failing t after timeout. cond runs on the
// caller's goroutine, so it may itself call t.Fatal.
func True(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	NoError(t, timeout, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

var errNotYet = errors.New("not yet")

// NoError waits until f returns nil, failing t after timeout with f's
// last error.
func NoError(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for pause := 5 * time.Millisecond; ; pause = min(2*pause, maxInterval) {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			if err == errNotYet {
				t.Fatalf("timed out after %s waiting for %s", timeout, what)
			}
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(pause)
	}
}
