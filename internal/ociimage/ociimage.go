// Package ociimage turns an OCI (or Docker) image from a registry into a
// root filesystem tree: it pulls the image for linux/amd64 (anonymously or
// with a user name and password), flattens its layers with whiteouts
// applied, and writes the result into a directory. The registry protocol
// and layer handling are go-containerregistry's.
package ociimage

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Auth is a registry credential; the zero value pulls anonymously.
type Auth struct {
	Username, Password string
}

// Options tune a pull.
type Options struct {
	Auth Auth
	// Insecure allows plain HTTP registries (a local test registry).
	Insecure bool
}

// Image is a pulled image.
type Image struct {
	Ref    string
	Digest string
	Config v1.Config
	img    v1.Image
}

// Pull resolves ref and fetches its manifest and config; layers are read
// by Flatten.
func Pull(ctx context.Context, ref string, o Options) (*Image, error) {
	var nopts []name.Option
	if o.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	var auth authn.Authenticator = authn.Anonymous
	if o.Auth.Username != "" || o.Auth.Password != "" {
		auth = &authn.Basic{Username: o.Auth.Username, Password: o.Auth.Password}
	}
	img, err := remote.Image(r, remote.WithContext(ctx), remote.WithAuth(auth), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"}))
	if err != nil {
		return nil, pullError(ref, r.Context().RegistryStr(), err)
	}
	d, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("pull %s: config: %w", ref, err)
	}
	return &Image{Ref: ref, Digest: d.String(), Config: cf.Config, img: img}, nil
}

// Why a pull failed, for the caller to map to its own errors.
var (
	// ErrDenied: the registry refused the credentials (or wants some).
	ErrDenied = errors.New("registry denied access")
	// ErrNotFound: no such repository or tag.
	ErrNotFound = errors.New("image not found")
	// ErrUnreachable: the registry could not be reached.
	ErrUnreachable = errors.New("registry unreachable")
)

// pullError says in words what went wrong; the registry's own error
// stays wrapped for details.
func pullError(ref, registry string, err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		switch {
		case te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden:
			return fmt.Errorf("pull %s: %w: registry %s answered HTTP %d; check the registry user name and password (%v)", ref, ErrDenied, registry, te.StatusCode, err)
		case te.StatusCode == http.StatusNotFound:
			return fmt.Errorf("pull %s: %w: registry %s has no such repository or tag (%v)", ref, ErrNotFound, registry, err)
		}
		for _, d := range te.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode:
				return fmt.Errorf("pull %s: %w: registry %s has no such repository or tag (%v)", ref, ErrNotFound, registry, err)
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return fmt.Errorf("pull %s: %w: check the registry user name and password (%v)", ref, ErrDenied, err)
			}
		}
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	var ne net.Error
	var oe *net.OpError
	if errors.As(err, &oe) || errors.As(err, &ne) {
		return fmt.Errorf("pull %s: %w: cannot connect to %s (%v)", ref, ErrUnreachable, registry, err)
	}
	return fmt.Errorf("pull %s: %w", ref, err)
}

// ParseReference checks that ref is an image reference.
func ParseReference(ref string) error {
	if _, err := name.ParseReference(ref); err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	return nil
}

// Flatten writes the image's file system, its layers applied in order
// with their whiteouts, into root (which must not exist yet or be empty).
func (i *Image) Flatten(ctx context.Context, root string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	rc := mutate.Extract(i.img)
	defer rc.Close()
	return untar(ctx, tar.NewReader(rc), root)
}

// untar extracts a flattened image. Every path is resolved inside root
// (os.Root): a layer's symlink cannot point a later write outside it.
func untar(ctx context.Context, tr *tar.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	type dirTime struct {
		path string
		t    time.Time
	}
	var dirs []dirTime
	var links [][2]string
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read layers: %w", err)
		}
		p := relative(h.Name)
		if p == "." {
			continue
		}
		if parent := filepath.Dir(p); parent != "." {
			if err := root.MkdirAll(parent, 0o755); err != nil {
				return fmt.Errorf("layer path %s: %w", h.Name, err)
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if fi, err := root.Lstat(p); err == nil && !fi.IsDir() {
				_ = root.RemoveAll(p)
			}
			if err := root.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("layer path %s: %w", h.Name, err)
			}
			dirs = append(dirs, dirTime{p, h.ModTime})
		case tar.TypeReg:
			_ = root.RemoveAll(p)
			f, err := root.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("layer path %s: %w", h.Name, err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("write %s: %w", h.Name, err)
			}
		case tar.TypeSymlink:
			_ = root.RemoveAll(p)
			if err := root.Symlink(h.Linkname, p); err != nil {
				return fmt.Errorf("layer path %s: %w", h.Name, err)
			}
			_ = root.Lchown(p, h.Uid, h.Gid)
			continue
		case tar.TypeLink:
			// The flattened stream lists newer layers first, so a link's
			// target may come later: links are made at the end.
			links = append(links, [2]string{relative(h.Linkname), p})
			continue
		default:
			// Device nodes come from devtmpfs in the guest; FIFOs and
			// sockets are made by the programs that use them.
			continue
		}
		if err := root.Lchown(p, h.Uid, h.Gid); err != nil {
			return fmt.Errorf("layer path %s: %w", h.Name, err)
		}
		if err := root.Chmod(p, os.FileMode(h.Mode).Perm()|modeBits(h.Mode)); err != nil {
			return fmt.Errorf("layer path %s: %w", h.Name, err)
		}
		if h.Typeflag != tar.TypeDir {
			_ = root.Chtimes(p, h.ModTime, h.ModTime)
		}
	}
	for _, l := range links {
		_ = root.RemoveAll(l[1])
		if err := root.Link(l[0], l[1]); err != nil {
			return fmt.Errorf("hard link %s: %w", l[1], err)
		}
	}
	// Directories last: writing into them changed their times.
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = root.Chtimes(dirs[i].path, dirs[i].t, dirs[i].t)
	}
	return nil
}

// relative is a layer path as a path relative to the root.
func relative(name string) string {
	return strings.TrimPrefix(filepath.Clean("/"+name), "/")
}

// modeBits carries setuid, setgid and sticky from a tar mode.
func modeBits(m int64) os.FileMode {
	var out os.FileMode
	if m&0o4000 != 0 {
		out |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= os.ModeSticky
	}
	return out
}
