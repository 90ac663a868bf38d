package wiretext

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheck(t *testing.T) {
	type exec struct {
		Cmd   string            `json:"cmd"`
		Args  []string          `json:"args"`
		Envs  map[string]string `json:"envs,omitempty"`
		Stdin string            `json:"stdin" wiretext:"binary"`
		Meta  *map[string]string
	}
	meta := map[string]string{"k": "v\x00"}
	for _, c := range []struct {
		v    any
		want string
	}{
		{exec{Cmd: "ls", Stdin: "\x00\x01"}, ""},
		{exec{Cmd: "l\x00s"}, "body.cmd contains a NUL byte"},
		{exec{Args: []string{"a", "b\x00"}}, "body.args[1] contains a NUL byte"},
		{exec{Envs: map[string]string{"A\x00": "b"}}, "body.envs key contains a NUL byte"},
		{exec{Envs: map[string]string{"A": "\xff"}}, "body.envs.A is not valid UTF-8"},
		{&exec{Meta: &meta}, "body.Meta.k contains a NUL byte"},
		{map[string]any{"x": []any{"ok", "no\x00"}}, "body.x[1] contains a NUL byte"},
	} {
		err := Check(c.v)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("Check(%+v) = %q, want %q", c.v, got, c.want)
		}
	}
}

func TestCheckQuery(t *testing.T) {
	if err := CheckQuery("/v1/sandboxes", url.Values{"metadata": {"a=b"}}); err != nil {
		t.Fatal(err)
	}
	if err := CheckQuery("/v1/sandboxes", url.Values{"metadata": {"a=\x00"}}); err == nil {
		t.Fatal("NUL in a query value passed")
	}
	if err := CheckQuery("/v1/a\x00b", nil); err == nil {
		t.Fatal("NUL in the path passed")
	}
}

func TestClean(t *testing.T) {
	big := strings.Repeat("é", 1000) + "\x00\xff"
	c := Clean(big, 255)
	if len(c) > 255+len("…") || !utf8.ValidString(c) || strings.Contains(c, "\x00") || !strings.HasSuffix(c, "…") {
		t.Fatalf("Clean: %d bytes, %q", len(c), c[len(c)-8:])
	}
	if Clean("a\x00b", 10) != "a\uFFFDb" {
		t.Fatal("NUL not replaced")
	}
}
