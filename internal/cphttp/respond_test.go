package cphttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"git.omukk.dev/wrenn/sandbox/pkg/fault"
)

// Every kind has its own status; only an internal error is a 500, and
// only its message is withheld.
func TestStatus(t *testing.T) {
	for k := fault.Kind(0); !strings.HasPrefix(k.String(), "kind("); k++ {
		err := fmt.Errorf("op: %w", fault.New(k, "details"))
		status, code := Status(err)
		if (status == http.StatusInternalServerError) != (k == fault.Internal) || code == "" {
			t.Errorf("%s: %d %q", k, status, code)
		}
		if (PublicMessage(err) == err.Error()) == (k == fault.Internal) {
			t.Errorf("%s: public message %q", k, PublicMessage(err))
		}
	}
	for err, want := range map[error]int{
		errors.New("a bug"):                           500,
		fault.New(fault.NoCapacity, "full"):           503,
		fault.New(fault.Exists, "dup"):                409,
		fault.New(fault.Upstream, "host failed"):      502,
		fault.New(fault.Quota, "over quota"):          429,
		fault.New(fault.NoSpace, "disk full"):         507,
		fmt.Errorf("q: %w", context.DeadlineExceeded): 504,
	} {
		if got, _ := Status(err); got != want {
			t.Errorf("%v: %d, want %d", err, got, want)
		}
	}
}
