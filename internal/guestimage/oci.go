package guestimage

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"git.omukk.dev/wrenn/sandbox/internal/ociimage"
)

// ImageSource is an OCI image an image is built from instead of one of
// Kinds: its flattened file system plus envd, wrenn-init and the default
// user.
type ImageSource struct {
	Ref      string
	Auth     ociimage.Auth
	Insecure bool // a plain-HTTP registry (local tests)

	pulled *ociimage.Image
}

var imageNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// OCIImagePrefix starts the name of an image BuildOCI makes (the control
// plane keeps such images out of teams' reach by it).
const OCIImagePrefix = hostapi.OCIImagePrefix

// BuildOCI resolves src and builds it into the image named for its
// digest (OCIImagePrefix + 48 hex digits), so that one image is built
// once per host: a later call finds it up to date after fetching only
// the manifest. opts.Name and opts.FromImage are set here.
func BuildOCI(ctx context.Context, opts Options, src *ImageSource) (*Result, error) {
	img, err := ociimage.Pull(ctx, src.Ref, ociimage.Options{Auth: src.Auth, Insecure: src.Insecure})
	if err != nil {
		return nil, err
	}
	src.pulled = img
	opts.Name = OCIImageName(img.Digest)
	opts.FromImage = src
	return Build(ctx, opts)
}

// OCIImageName is the image BuildOCI makes from the OCI image with digest.
func OCIImageName(digest string) string {
	hex := strings.TrimPrefix(digest, "sha256:")
	if len(hex) > 48 {
		hex = hex[:48]
	}
	return OCIImagePrefix + hex
}

// pullSource resolves the image, so that its digest is in the fingerprint.
func (b *builder) pullSource(ctx context.Context) error {
	src := b.opts.FromImage
	if src.pulled != nil {
		return nil // BuildOCI resolved it to name the image
	}
	if !imageNamePattern.MatchString(b.opts.Name) || validKind(b.opts.Name) {
		return fmt.Errorf("image name %q: an image built from an OCI image needs a name of its own (lowercase letters, digits, '.', '_', '-'), not one of %s", b.opts.Name, strings.Join(Kinds, ", "))
	}
	b.step("pull %s", src.Ref)
	img, err := ociimage.Pull(ctx, src.Ref, ociimage.Options{Auth: src.Auth, Insecure: src.Insecure})
	if err != nil {
		return err
	}
	src.pulled = img
	return nil
}

// ociTree flattens the pulled image into root and adds what every guest
// needs: bash (checked: E2B's SDKs run every command through it), the
// unprivileged default user and the hostname.
func (b *builder) ociTree(ctx context.Context, root string) error {
	img := b.opts.FromImage.pulled
	b.step("flatten %s (%s)", img.Ref, img.Digest)
	if err := img.Flatten(ctx, root); err != nil {
		return err
	}
	if !exists(root, "bin/bash") && !exists(root, "usr/bin/bash") {
		return fmt.Errorf("image %s has no /bin/bash: sandboxes run commands and terminals through bash; install it in the image (e.g. apt-get install bash, apk add bash)", img.Ref)
	}
	if err := mkdirs(root, 0o755, "sbin", "usr/bin", "etc", "dev", "proc", "sys", "run", "tmp", "var/tmp", "root"); err != nil {
		return err
	}
	_ = os.Chmod(filepath.Join(root, "tmp"), 0o1777)
	if err := addDefaultUser(root); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("sandbox\n"), 0o644)
}

func exists(root, p string) bool {
	r, err := os.OpenRoot(root)
	if err != nil {
		return false
	}
	defer r.Close()
	_, err = r.Stat(p)
	return err == nil
}

// addDefaultUser adds the default user (uid 1000, home /home/user) to
// the image's account files unless it has one of that name.
func addDefaultUser(root string) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	appendLine := func(file, line string, mode os.FileMode) error {
		old, err := r.ReadFile(file)
		if err != nil && !os.IsNotExist(err) {
			return err
		}
		if len(old) > 0 && !bytes.HasSuffix(old, []byte("\n")) {
			old = append(old, '\n')
		}
		return r.WriteFile(file, append(old, line...), mode)
	}
	if passwd, err := r.ReadFile("etc/passwd"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(passwd))
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), userName+":") {
				return nil // the image has its own
			}
		}
	}
	if err := appendLine("etc/passwd", fmt.Sprintf("%s:x:%d:%d::/home/%s:/bin/bash\n", userName, userID, userID, userName), 0o644); err != nil {
		return err
	}
	if err := appendLine("etc/group", fmt.Sprintf("%s:x:%d:\n", userName, userID), 0o644); err != nil {
		return err
	}
	if err := appendLine("etc/shadow", userName+":*:19000:0:99999:7:::\n", 0o640); err != nil {
		return err
	}
	home := "home/" + userName
	if err := r.MkdirAll(home, 0o755); err != nil {
		return err
	}
	if err := r.Chmod(home, 0o750); err != nil {
		return err
	}
	return r.Lchown(home, userID, userID)
}
