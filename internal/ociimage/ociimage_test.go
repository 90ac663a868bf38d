package ociimage

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type entry struct {
	name, body, link string
	typ              byte
	mode             int64
}

func layer(t *testing.T, entries ...entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body)), Linkname: e.link}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			_, _ = tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testImage has two layers; the second removes a file and a directory's
// old contents with whiteouts.
func testImage(t *testing.T) v1.Image {
	t.Helper()
	l1 := layer(t,
		entry{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "etc/gone.conf", typ: tar.TypeReg, mode: 0o644, body: "old"},
		entry{name: "etc/kept.conf", typ: tar.TypeReg, mode: 0o644, body: "kept"},
		entry{name: "opt/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "opt/app/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "opt/app/old.txt", typ: tar.TypeReg, mode: 0o644, body: "old"},
		entry{name: "bin/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "bin/tool", typ: tar.TypeReg, mode: 0o4755, body: "#!/bin/sh\n"},
		entry{name: "bin/tool-link", typ: tar.TypeSymlink, link: "tool"},
		entry{name: "escape", typ: tar.TypeSymlink, link: "/"},
	)
	l2 := layer(t,
		entry{name: "etc/.wh.gone.conf", typ: tar.TypeReg},
		entry{name: "opt/app/.wh..wh..opq", typ: tar.TypeReg},
		entry{name: "opt/app/new.txt", typ: tar.TypeReg, mode: 0o600, body: "new"},
		entry{name: "bin/hard", typ: tar.TypeLink, link: "bin/tool"},
	)
	img, err := mutate.AppendLayers(empty.Image, l1, l2)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Env = []string{"PATH=/bin", "GREETING=hi"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// basicAuth guards a handler with one user name and password, as a
// private registry does.
func basicAuth(h http.Handler, user, pass string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func push(t *testing.T, srv *httptest.Server, repo string, img v1.Image, auth authn.Authenticator) string {
	t.Helper()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/" + repo
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithAuth(auth)); err != nil {
		t.Fatal(err)
	}
	return ref
}

func TestPullAndFlatten(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref := push(t, srv, "test/app:v1", testImage(t), authn.Anonymous)
	ctx := context.Background()
	img, err := Pull(ctx, ref, Options{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(img.Digest, "sha256:") || len(img.Config.Env) != 2 {
		t.Fatalf("pulled %+v", img)
	}
	root := filepath.Join(t.TempDir(), "root")
	if err := img.Flatten(ctx, root); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"etc/gone.conf", "etc/.wh.gone.conf", "opt/app/old.txt", "opt/app/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("%s should be gone: %v", gone, err)
		}
	}
	for path, want := range map[string]string{"etc/kept.conf": "kept", "opt/app/new.txt": "new", "bin/hard": "#!/bin/sh\n"} {
		b, err := os.ReadFile(filepath.Join(root, path))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q, %v", path, b, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(root, "bin/tool")); err != nil || fi.Mode()&os.ModeSetuid == 0 || fi.Mode().Perm() != 0o755 {
		t.Errorf("bin/tool mode: %v %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(root, "opt/app/new.txt")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("new.txt mode: %v", err)
	}
	if l, err := os.Readlink(filepath.Join(root, "bin/tool-link")); err != nil || l != "tool" {
		t.Errorf("symlink: %q %v", l, err)
	}
}

// TestFlattenStaysInsideRoot: an archive's symlink cannot carry a later
// entry's file out of the tree.
func TestFlattenStaysInsideRoot(t *testing.T) {
	outside := t.TempDir()
	for _, link := range []string{outside, "../../../../../../../../" + outside} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		_ = tw.WriteHeader(&tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: link})
		_ = tw.WriteHeader(&tar.Header{Name: "evil/planted", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1})
		_, _ = tw.Write([]byte("x"))
		_ = tw.WriteHeader(&tar.Header{Name: "../../climb", Typeflag: tar.TypeReg, Mode: 0o644})
		_ = tw.Close()
		root := filepath.Join(t.TempDir(), "root")
		_ = os.MkdirAll(root, 0o755)
		if err := untar(context.Background(), tar.NewReader(&buf), root); err == nil {
			t.Errorf("link %s: a write through an escaping symlink was accepted", link)
		}
		if _, err := os.Stat(filepath.Join(outside, "planted")); !os.IsNotExist(err) {
			t.Fatalf("a file was planted outside the root: %v", err)
		}
	}
}

func TestPullWithCredentials(t *testing.T) {
	srv := httptest.NewServer(basicAuth(registry.New(registry.Logger(log.New(io.Discard, "", 0))), "robot", "s3cret"))
	defer srv.Close()
	ref := push(t, srv, "private/app:v1", testImage(t), &authn.Basic{Username: "robot", Password: "s3cret"})
	ctx := context.Background()
	if _, err := Pull(ctx, ref, Options{Insecure: true}); err == nil || !strings.Contains(err.Error(), "401") && !strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
		t.Fatalf("anonymous pull from a private registry: %v", err)
	}
	if _, err := Pull(ctx, ref, Options{Insecure: true, Auth: Auth{Username: "robot", Password: "wrong"}}); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	img, err := Pull(ctx, ref, Options{Insecure: true, Auth: Auth{Username: "robot", Password: "s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := img.Flatten(ctx, filepath.Join(t.TempDir(), "root")); err != nil {
		t.Fatal(err)
	}
}
