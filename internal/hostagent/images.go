package hostagent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/internal/guestimage"
	"git.omukk.dev/wrenn/sandbox/internal/ociimage"
	"git.omukk.dev/wrenn/sandbox/pkg/fault"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

// LibDir is where packages install envd and wrenn-init (internal/dist
// puts them there); the agent builds images from OCI images with them.
const LibDir = "/usr/lib/wrenn"

// GuestBinaries finds envd and wrenn-init for images the agent builds:
// beside the agent's own executable (a development tree's bin/), else in
// LibDir.
func GuestBinaries() (envd, init string) {
	dirs := []string{LibDir}
	if exe, err := os.Executable(); err == nil {
		dirs = append([]string{filepath.Dir(exe)}, dirs...)
	}
	for _, d := range dirs {
		e, i := filepath.Join(d, "envd"), filepath.Join(d, "wrenn-init")
		if _, err := os.Stat(e); err == nil {
			if _, err := os.Stat(i); err == nil {
				return e, i
			}
		}
	}
	return filepath.Join(LibDir, "envd"), filepath.Join(LibDir, "wrenn-init")
}

// imageBuilds serialises image builds: two builds of one digest must not
// replace each other's directory, and one at a time keeps the host's
// CPU and disk for its sandboxes.
var imageBuilds sync.Mutex

// PrepareImage builds (or finds) the guest image for an OCI image. The
// credentials live in this call only: nothing here logs the request.
func (s *Service) PrepareImage(ctx context.Context, req *connect.Request[pb.PrepareImageRequest]) (*connect.Response[pb.PrepareImageResponse], error) {
	m := req.Msg
	if err := ociimage.ParseReference(m.Ref); err != nil {
		return nil, fault.Wrap(fault.Invalid, err)
	}
	imageBuilds.Lock()
	defer imageBuilds.Unlock()
	src := &guestimage.ImageSource{Ref: m.Ref, Auth: ociimage.Auth{Username: m.Username, Password: m.Password}}
	res, err := guestimage.BuildOCI(ctx, guestimage.Options{Dir: s.ImagesDir, Envd: s.Envd, Init: s.Init}, src)
	switch {
	case errors.Is(err, ociimage.ErrDenied):
		return nil, fault.Wrap(fault.Forbidden, err)
	case errors.Is(err, ociimage.ErrNotFound):
		return nil, fault.Wrap(fault.NotFound, err)
	case errors.Is(err, ociimage.ErrUnreachable):
		return nil, fault.Wrap(fault.Upstream, err)
	case err != nil:
		return nil, err
	}
	// The manifest records ref@digest of the pull that made the image.
	digest := res.Manifest.Components["image"]
	digest = digest[strings.LastIndex(digest, "@")+1:]
	s.Log.Info("guest image from OCI image", "ref", m.Ref, "image", res.Manifest.Name, "cached", res.Skipped, "took", res.Duration)
	return connect.NewResponse(&pb.PrepareImageResponse{Image: res.Manifest.Name, Digest: digest, Cached: res.Skipped}), nil
}
