package id

import (
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	u := New()
	s := Format(Sandbox, u)
	if !strings.HasPrefix(s, "sb-") || len(s) != 35 {
		t.Fatalf("format: %q", s)
	}
	got, err := Parse(Sandbox, s)
	if err != nil || got != u {
		t.Fatalf("parse %q: %v %v", s, got, err)
	}
}

func TestParseRejects(t *testing.T) {
	u := New()
	for _, s := range []string{
		"", "sb-", Format(Team, u), u.String(), strings.ToUpper(Format(Sandbox, u)),
		Format(Sandbox, u) + "0", "sb-" + strings.Repeat("g", 32), "sb-../../etc/passwd",
	} {
		if _, err := Parse(Sandbox, s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("sb-00000000000000000000000000000000")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := Parse(Sandbox, s)
		if err == nil && Format(Sandbox, u) != s {
			t.Fatalf("accepted non-canonical %q", s)
		}
	})
}
