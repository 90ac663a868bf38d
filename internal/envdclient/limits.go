package envdclient

import (
	"errors"
	"fmt"
	"io"
)

// Everything envd answers is under the control of the code in its
// sandbox, which can replace envd: the agent reads no answer beyond these
// bounds, far above what a real envd sends.
const (
	// MaxMessageBytes bounds one Connect message (a process's output
	// chunk, a directory listing, the process list).
	MaxMessageBytes = 16 << 20
	// MaxMetricsBytes bounds /metrics, a few hundred bytes of JSON.
	MaxMetricsBytes = 64 << 10
)

// ErrMisbehaving is an answer no well-behaved envd gives.
var ErrMisbehaving = errors.New("the sandbox's envd misbehaved")

// readLimited reads a body of at most max bytes; a longer one is refused
// as misbehaviour, after reading only max+1.
func readLimited(r io.Reader, max int64, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: its %s answer is over %d bytes", ErrMisbehaving, what, max)
	}
	return b, nil
}
