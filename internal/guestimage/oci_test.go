package guestimage

import (
	"archive/tar"
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"

	"git.omukk.dev/wrenn/sandbox/internal/ociimage"
	"git.omukk.dev/wrenn/sandbox/internal/ociimage/ocitest"
)

// TestBuildFromOCIImage: an image pushed by the test to a local registry
// that wants credentials becomes a guest image: flattened (the whiteout
// removes a file), with envd, wrenn-init and the default user added.
func TestBuildFromOCIImage(t *testing.T) {
	needTools(t)
	bash, err := os.ReadFile(bashStaticPath)
	if err != nil {
		t.Fatal(err)
	}
	reg := func(name, body string) ocitest.Entry {
		return ocitest.Entry{Name: name, Body: body, Type: tar.TypeReg, Mode: 0o755}
	}
	img := ocitest.Image(t, nil,
		ocitest.Layer(t, reg("bin/bash", string(bash)), reg("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n"), reg("etc/gone.txt", "old")),
		ocitest.Layer(t, reg("etc/.wh.gone.txt", ""), reg("etc/kept.txt", "kept")))
	srv := httptest.NewServer(ocitest.BasicAuth(ocitest.Handler(), "robot", "pw"))
	defer srv.Close()
	robot := &authn.Basic{Username: "robot", Password: "pw"}
	ref := ocitest.Push(t, srv, "test/tool:1", img, robot)

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
	noBash := ocitest.Push(t, srv, "test/nobash:1", ocitest.Image(t, nil, ocitest.Layer(t, reg("etc/x", "x"))), robot)
	_, err = Build(context.Background(), Options{Name: "nobash", Dir: dir, Envd: envd, Init: init, FromImage: &ImageSource{Ref: noBash, Insecure: true, Auth: src.Auth}})
	if err == nil || !strings.Contains(err.Error(), "no /bin/bash") {
		t.Fatalf("an image without bash: %v", err)
	}
}
