package sdk

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func tarNames(t *testing.T, archive []byte) map[string]string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	out := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		out[h.Name] = string(body) + h.Linkname
	}
}

// TestPackTemplateFiles: the archive keeps paths relative to the context
// and links as links; the hash follows contents, not times; sources
// outside the context are refused.
func TestPackTemplateFiles(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "app", "sub"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "app", "index.html"), []byte("hello\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "app", "sub", "data.txt"), []byte("nested\n"), 0o600))
	must(os.Symlink("index.html", filepath.Join(dir, "app", "link")))
	must(os.WriteFile(filepath.Join(dir, "other.py"), []byte("print(1)\n"), 0o644))
	must(os.Symlink("/etc", filepath.Join(dir, "escape")))

	h1, a1, err := PackTemplateFiles(dir, "app/")
	must(err)
	want := map[string]string{"app/": "", "app/index.html": "hello\n", "app/link": "index.html", "app/sub/": "", "app/sub/data.txt": "nested\n"}
	got := tarNames(t, a1)
	if len(got) != len(want) {
		t.Fatalf("archive: %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("archive %s = %q; all: %v", k, got[k], got)
		}
	}

	// Times do not change the hash; contents do.
	must(os.Chtimes(filepath.Join(dir, "app", "index.html"), time.Now(), time.Now().Add(-time.Hour)))
	h2, a2, err := PackTemplateFiles(dir, "app")
	must(err)
	if h2 != h1 || !bytes.Equal(a1, a2) {
		t.Fatal("a new mtime changed the hash or the archive")
	}
	must(os.WriteFile(filepath.Join(dir, "app", "sub", "data.txt"), []byte("nested!\n"), 0o600))
	if h3, _, _ := PackTemplateFiles(dir, "app"); h3 == h1 {
		t.Fatal("changed contents kept the hash")
	}

	if _, a, err := PackTemplateFiles(dir, "*.py"); err != nil || len(tarNames(t, a)) != 1 {
		t.Fatalf("glob: %v", err)
	}
	for _, bad := range []string{"../x", "/etc/passwd", "", "missing", "escape/passwd"} {
		if _, _, err := PackTemplateFiles(dir, bad); err == nil {
			t.Errorf("%q was packed", bad)
		} else if bad != "escape/passwd" && !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: %v is not ErrInvalid", bad, err)
		}
	}
}
