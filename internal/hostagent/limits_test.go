package hostagent

import (
	"bytes"
	"testing"

	"git.omukk.dev/wrenn/sandbox/pkg/fault"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
)

func TestAppendCapped(t *testing.T) {
	var buf []byte
	trunc := false
	for _, chunk := range []string{"abc", "def", "ghi"} {
		buf, trunc = appendCapped(buf, []byte(chunk), 5, trunc)
	}
	if !bytes.Equal(buf, []byte("abcde")) || !trunc {
		t.Fatalf("capped at 5: %q %v", buf, trunc)
	}
	buf, trunc = appendCapped(nil, []byte("abc"), 5, false)
	if string(buf) != "abc" || trunc {
		t.Fatalf("under the cap: %q %v", buf, trunc)
	}
	if n, err := execOutputLimit(0); err != nil || n != hostapi.DefaultExecOutput {
		t.Fatalf("default limit: %d %v", n, err)
	}
	if _, err := execOutputLimit(hostapi.MaxExecOutput + 1); fault.KindOf(err) != fault.Invalid {
		t.Fatalf("over the agent's bound: %v", err)
	}
}
