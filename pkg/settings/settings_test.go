package settings

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type target struct {
	listen  string
	ttl     time.Duration
	signup  bool
	rate    int
	off     string
	secret  string
	tlsCert string
}

func keysFor(t *target) []Key {
	return []Key{
		String("listen", "T_LISTEN", &t.listen, ""),
		Duration("session_ttl", "T_TTL", &t.ttl, ""),
		Bool("allow_signup", "T_SIGNUP", &t.signup, ""),
		Int("rate", "T_RATE", &t.rate, ""),
		{Name: "proxy_listen", Env: "T_OFF", Empty: true, Set: func(v string) error { t.off = v; return nil }},
		{Env: "T_SECRET", Set: func(v string) error { t.secret = v; return nil }},
		{Name: "secret_file", Shadows: []string{"T_SECRET"}, Set: func(v string) error { t.secret = "from " + v; return nil }},
		{Name: "tls.cert_file", Flag: "tls-cert", Set: func(v string) error { t.tlsCert = v; return nil }},
	}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// Defaults, then the file, then the environment, then flags.
func TestPrecedence(t *testing.T) {
	file := writeFile(t, `
listen = ":9000"
session_ttl = "2h"
allow_signup = false
rate = 7
proxy_listen = ":9001"
secret_file = "/etc/s"
[tls]
cert_file = "/file.pem"
`)
	tg := target{listen: ":8080", ttl: time.Hour, signup: true, rate: 20, off: ":8081"}
	applied, err := Load(keysFor(&tg), Sources{File: file,
		LookupEnv: envOf(map[string]string{"T_RATE": "9", "T_OFF": "", "T_SIGNUP": ""}),
		FlagsSet:  map[string]bool{"tls-cert": true}})
	if err != nil {
		t.Fatal(err)
	}
	want := target{listen: ":9000", ttl: 2 * time.Hour, signup: false, rate: 9, off: "", secret: "from /etc/s", tlsCert: ""}
	if tg != want {
		t.Fatalf("got %+v\nwant %+v", tg, want)
	}
	if applied["rate"] != "T_RATE" || applied["listen"] != file || applied["tls.cert_file"] != "--tls-cert" || applied["proxy_listen"] != "T_OFF" {
		t.Errorf("applied = %v", applied)
	}
	// An empty variable is unset unless the key says otherwise: T_SIGNUP=""
	// left the file's false.
	if _, ok := applied["allow_signup"]; !ok || applied["allow_signup"] != file {
		t.Errorf("allow_signup from %q", applied["allow_signup"])
	}

	// A variable that sets the same thing another way keeps the file's
	// value out.
	tg = target{}
	if _, err := Load(keysFor(&tg), Sources{File: file, LookupEnv: envOf(map[string]string{"T_SECRET": "s3cr3t"})}); err != nil {
		t.Fatal(err)
	}
	if tg.secret != "s3cr3t" {
		t.Errorf("secret %q: the file's secret_file was used over T_SECRET", tg.secret)
	}
}

// Every bad value names its source, its key and the reason.
func TestErrorsNameKeyAndReason(t *testing.T) {
	for _, tc := range []struct {
		body string
		env  map[string]string
		want []string
	}{
		{`session_ttl = "forever"`, nil, []string{`key "session_ttl"`, `invalid duration "forever"`}},
		{`session_ttl = 30`, nil, []string{`key "session_ttl"`, "want a duration", "got the integer 30"}},
		{`rate = "ten"`, nil, []string{`key "rate"`, "want an integer", `got the string "ten"`}},
		{`allow_signup = "yes"`, nil, []string{`key "allow_signup"`, "want true or false"}},
		{`lisen = ":1"`, nil, []string{`key "lisen"`, "unknown key", "listen"}},
		{"[tls]\ncert = 1", nil, []string{`key "tls.cert"`, "unknown key"}},
		{`listen = `, nil, []string{"line 1"}},
		{``, map[string]string{"T_TTL": "soon"}, []string{"T_TTL", `invalid duration "soon"`}},
		{``, map[string]string{"T_SIGNUP": "maybe"}, []string{"T_SIGNUP", "invalid syntax"}},
	} {
		file := writeFile(t, tc.body)
		var tg target
		_, err := Load(keysFor(&tg), Sources{File: file, LookupEnv: envOf(tc.env)})
		var se *Error
		if !errors.As(err, &se) {
			t.Errorf("%q %v: error %v is not a settings.Error", tc.body, tc.env, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q %v: error %q lacks %q", tc.body, tc.env, err, w)
			}
		}
		if tc.env == nil && !strings.Contains(err.Error(), file) {
			t.Errorf("%q: error %q does not name the file", tc.body, err)
		}
	}
	if _, err := Load(nil, Sources{File: filepath.Join(t.TempDir(), "missing.toml")}); err == nil || !strings.Contains(err.Error(), "missing.toml") {
		t.Errorf("missing file: %v", err)
	}
}

func TestTableMistakesAreCaught(t *testing.T) {
	var a, b string
	_, err := Load([]Key{String("x", "X", &a, ""), String("y", "X", &b, "")}, Sources{LookupEnv: envOf(nil)})
	if err == nil || !strings.Contains(err.Error(), "env X appears twice") {
		t.Fatalf("duplicate variable: %v", err)
	}
}
