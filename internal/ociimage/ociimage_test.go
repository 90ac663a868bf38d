package ociimage

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"git.omukk.dev/wrenn/sandbox/internal/ociimage/ocitest"
)

// testImage has two layers; the second removes a file and a directory's
// old contents with whiteouts.
func testImage(t *testing.T) v1.Image {
	t.Helper()
	l1 := ocitest.Layer(t,
		ocitest.Entry{Name: "etc/", Type: tar.TypeDir, Mode: 0o755},
		ocitest.Entry{Name: "etc/gone.conf", Type: tar.TypeReg, Mode: 0o644, Body: "old"},
		ocitest.Entry{Name: "etc/kept.conf", Type: tar.TypeReg, Mode: 0o644, Body: "kept"},
		ocitest.Entry{Name: "opt/", Type: tar.TypeDir, Mode: 0o755},
		ocitest.Entry{Name: "opt/app/", Type: tar.TypeDir, Mode: 0o755},
		ocitest.Entry{Name: "opt/app/old.txt", Type: tar.TypeReg, Mode: 0o644, Body: "old"},
		ocitest.Entry{Name: "bin/", Type: tar.TypeDir, Mode: 0o755},
		ocitest.Entry{Name: "bin/tool", Type: tar.TypeReg, Mode: 0o4755, Body: "#!/bin/sh\n"},
		ocitest.Entry{Name: "bin/tool-link", Type: tar.TypeSymlink, Link: "tool"},
		ocitest.Entry{Name: "escape", Type: tar.TypeSymlink, Link: "/"},
	)
	l2 := ocitest.Layer(t,
		ocitest.Entry{Name: "etc/.wh.gone.conf", Type: tar.TypeReg},
		ocitest.Entry{Name: "opt/app/.wh..wh..opq", Type: tar.TypeReg},
		ocitest.Entry{Name: "opt/app/new.txt", Type: tar.TypeReg, Mode: 0o600, Body: "new"},
		ocitest.Entry{Name: "bin/hard", Type: tar.TypeLink, Link: "bin/tool"},
	)
	return ocitest.Image(t, []string{"PATH=/bin", "GREETING=hi"}, l1, l2)
}

func TestPullAndFlatten(t *testing.T) {
	srv := httptest.NewServer(ocitest.Handler())
	defer srv.Close()
	ref := ocitest.Push(t, srv, "test/app:v1", testImage(t), authn.Anonymous)
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
	srv := httptest.NewServer(ocitest.BasicAuth(ocitest.Handler(), "robot", "s3cret"))
	defer srv.Close()
	ref := ocitest.Push(t, srv, "private/app:v1", testImage(t), &authn.Basic{Username: "robot", Password: "s3cret"})
	ctx := context.Background()
	if _, err := Pull(ctx, ref, Options{Insecure: true}); err == nil || !strings.Contains(err.Error(), "401") && !strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
		t.Fatalf("anonymous pull from a private registry: %v", err)
	}
	_, err := Pull(ctx, ref, Options{Insecure: true, Auth: Auth{Username: "robot", Password: "wrong"}})
	if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "user name and password") || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("a wrong password: want ErrDenied naming the credentials (and not the password), got %v", err)
	}
	missing := strings.Replace(ref, "private/app:v1", "private/nothing:v1", 1)
	if _, err := Pull(ctx, missing, Options{Auth: Auth{Username: "robot", Password: "s3cret"}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an unknown image: want ErrNotFound, got %v", err)
	}
	closed := httptest.NewServer(ocitest.Handler())
	gone := strings.TrimPrefix(closed.URL, "http://") + "/app:v1"
	closed.Close()
	if _, err := Pull(ctx, gone, Options{}); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("a registry that is not there: want ErrUnreachable, got %v", err)
	}
	// A loopback registry is plain HTTP without Insecure, as with docker.
	img, err := Pull(ctx, ref, Options{Auth: Auth{Username: "robot", Password: "s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := img.Flatten(ctx, filepath.Join(t.TempDir(), "root")); err != nil {
		t.Fatal(err)
	}
}
