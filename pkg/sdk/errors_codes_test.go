package sdk

import (
	"strings"
	"testing"

	"git.omukk.dev/wrenn/sandbox/internal/cphttp"
	"git.omukk.dev/wrenn/sandbox/pkg/fault"
)

// TestEveryV1CodeHasAKind: each code the /v1 API can answer with (one per
// fault kind, mapped in cphttp) reaches SDK users as one of the SDK's
// kinds, and the code's status agrees with it.
func TestEveryV1CodeHasAKind(t *testing.T) {
	for k := fault.Kind(0); !isUnnamed(k); k++ {
		status, code := cphttp.Status(fault.New(k, "x"))
		if k == fault.Internal {
			continue
		}
		byCode, byStatus := kindOfCode(code), kindOfStatus(status)
		if byCode == nil {
			t.Errorf("fault %s answers code %q, which the SDK does not know", k, code)
		}
		if byStatus != nil && byCode != nil && byStatus != byCode {
			t.Errorf("fault %s: code %q means %v, status %d means %v", k, code, byCode, status, byStatus)
		}
	}
}

func isUnnamed(k fault.Kind) bool { return strings.HasPrefix(k.String(), "kind(") }
