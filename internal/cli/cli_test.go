package cli

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigIsPrivate(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("WRENN_PROFILE", "")
	c, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	c.Profiles["work"] = &profile{APIURL: "http://cp", APIKey: "e2b_secret"}
	c.Current = "work"
	if err := c.save(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(configPath())
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config mode: %v %v", st, err)
	}
	if st, _ := os.Stat(filepath.Dir(configPath())); st.Mode().Perm() != 0o700 {
		t.Errorf("config dir mode %v", st.Mode())
	}
	c2, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	p, name, _ := c2.profile("")
	if name != "work" || p == nil || p.credential() != "e2b_secret" {
		t.Errorf("read back: %q %+v", name, p)
	}
}

func TestEndpoints(t *testing.T) {
	for in, want := range map[string]endpoint{
		"sb-1:/tmp/x": {sandbox: "sb-1", path: "/tmp/x"},
		"./a:b":       {path: "./a:b"},
		"/abs/path":   {path: "/abs/path"},
		"sb-1:":       {sandbox: "sb-1"},
		"-":           {path: "-"},
	} {
		if got := parseEndpoint(in); got != want {
			t.Errorf("%q: %+v", in, got)
		}
	}
	if got := dropDash([]string{"sb", "--", "ls", "-l"}); strings.Join(got, " ") != "sb ls -l" {
		t.Errorf("dropDash: %q", got)
	}
}

func TestTarRoundTrip(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(src, "a/b"), 0o755)
	os.WriteFile(filepath.Join(src, "a/b/f"), []byte("data"), 0o600)
	os.Symlink("a/b/f", filepath.Join(src, "l"))
	var buf bytes.Buffer
	if err := writeTar(&buf, src, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := readTar(bytes.NewReader(buf.Bytes()), dst); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "l")); string(b) != "data" {
		t.Errorf("through the link: %q", b)
	}
	if st, _ := os.Stat(filepath.Join(dst, "a/b/f")); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
}

func TestTarRefusesEscapes(t *testing.T) {
	// An archive entry "../escape" must not land outside.
	dst := t.TempDir()
	var tb bytes.Buffer
	writeEntry(t, &tb, "../escape", "nope")
	if err := readTar(&tb, dst); err == nil {
		t.Error("an entry outside the destination was accepted")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dst), "escape")); err == nil {
		t.Error("../escape was written")
	}
}

func writeEntry(t *testing.T, w io.Writer, name, body string) {
	t.Helper()
	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(body))
	tw.Close()
}
