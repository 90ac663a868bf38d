package guestimage

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
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

	"git.omukk.dev/wrenn/sandbox/internal/ociimage"
)

// ociLayer is a layer of regular files (path → content; "" content with
// a ".wh." name is a whiteout).
func ociLayer(t *testing.T, files map[string][]byte) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for p, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: p, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(body)
	}
	_ = tw.Close()
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestBuildFromOCIImage: an image pushed by the test to a local registry
// that wants credentials becomes a guest image: flattened (the whiteout
// removes a file), with envd, wrenn-init and the default user added.
func TestBuildFromOCIImage(t *testing.T) {
	needTools(t)
	bash, err := os.ReadFile(bashStaticPath)
	if err != nil {
		t.Fatal(err)
	}
	l1 := ociLayer(t, map[string][]byte{"bin/bash": bash, "etc/passwd": []byte("root:x:0:0:root:/root:/bin/bash\n"), "etc/gone.txt": []byte("old")})
	l2 := ociLayer(t, map[string][]byte{"etc/.wh.gone.txt": nil, "etc/kept.txt": []byte("kept")})
	img, err := mutate.AppendLayers(empty.Image, l1, l2)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "robot" || p != "pw" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/test/tool:1"
	r, _ := name.ParseReference(ref, name.Insecure)
	if err := remote.Write(r, img, remote.WithAuth(&authn.Basic{Username: "robot", Password: "pw"})); err != nil {
		t.Fatal(err)
	}

	envd, init := binaries(t)
	dir := t.TempDir()
	src := &ImageSource{Ref: ref, Insecure: true, Auth: ociimage.Auth{Username: "robot", Password: "pw"}}
	if _, err := Build(context.Background(), Options{Name: "base", Dir: dir, Envd: envd, Init: init, FromImage: src}); err == nil || !strings.Contains(err.Error(), "name of its own") {
		t.Fatalf("an OCI image named like a built-in kind: %v", err)
	}
	res, err := Build(context.Background(), Options{Name: "tool", Dir: dir, Envd: envd, Init: init, FromImage: src})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.Manifest.Components["image"], ref+"@sha256:") || res.Manifest.DefaultUser != "user" {
		t.Fatalf("manifest: %+v", res.Manifest)
	}
	rootfs := filepath.Join(res.Dir, FileRootfs)
	debugfs := func(cmd string) string {
		out, err := exec.Command("debugfs", "-R", cmd, rootfs).CombinedOutput()
		if err != nil {
			t.Fatalf("debugfs %s: %v\n%s", cmd, err, out)
		}
		return string(out)
	}
	for _, p := range []string{"/bin/bash", "/etc/kept.txt", "/usr/bin/envd", "/sbin/init", "/home/user"} {
		if out := debugfs("stat " + p); strings.Contains(out, "not found") {
			t.Errorf("%s missing from the image", p)
		}
	}
	if out := debugfs("stat /etc/gone.txt"); !strings.Contains(out, "not found") {
		t.Errorf("the whited-out file is in the image:\n%s", out)
	}
	if out := debugfs("cat /etc/passwd"); !strings.Contains(out, "root:x:0:0") || !strings.Contains(out, "user:x:1000:1000::/home/user:/bin/bash") {
		t.Errorf("passwd:\n%s", out)
	}
	// Unchanged image, unchanged inputs: nothing to do.
	again, err := Build(context.Background(), Options{Name: "tool", Dir: dir, Envd: envd, Init: init, FromImage: &ImageSource{Ref: ref, Insecure: true, Auth: src.Auth}})
	if err != nil || !again.Skipped {
		t.Fatalf("rebuild of an unchanged image: %v %+v", err, again)
	}
	// An image without bash is refused with what to do.
	noBash, _ := mutate.AppendLayers(empty.Image, ociLayer(t, map[string][]byte{"etc/x": []byte("x")}))
	r2, _ := name.ParseReference(strings.TrimPrefix(srv.URL, "http://")+"/test/nobash:1", name.Insecure)
	if err := remote.Write(r2, noBash, remote.WithAuth(&authn.Basic{Username: "robot", Password: "pw"})); err != nil {
		t.Fatal(err)
	}
	_, err = Build(context.Background(), Options{Name: "nobash", Dir: dir, Envd: envd, Init: init, FromImage: &ImageSource{Ref: r2.String(), Insecure: true, Auth: src.Auth}})
	if err == nil || !strings.Contains(err.Error(), "no /bin/bash") {
		t.Fatalf("an image without bash: %v", err)
	}
}
