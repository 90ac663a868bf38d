// Package filesystemsvc implements envd's filesystem.Filesystem Connect
// service: stat, list, make, move and remove paths as the selected user, and
// watch directories by stream or by polling.
package filesystemsvc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/internal/envd/envstate"
	"git.omukk.dev/wrenn/sandbox/internal/envd/osuser"
	pb "git.omukk.dev/wrenn/sandbox/proto/envd/filesystem"
	"git.omukk.dev/wrenn/sandbox/proto/envd/filesystem/filesystemconnect"
)

// Service is safe for concurrent use. Close stops every polling watcher.
type Service struct {
	filesystemconnect.UnimplementedFilesystemHandler

	state *envstate.State

	mu       sync.Mutex
	watchers map[string]*pollWatcher
	closed   bool
}

// New returns a service resolving users and paths with state's defaults.
func New(state *envstate.State) *Service {
	return &Service{state: state, watchers: map[string]*pollWatcher{}}
}

// Close stops the polling watchers and waits for their goroutines.
func (s *Service) Close() {
	s.mu.Lock()
	s.closed = true
	ws := s.watchers
	s.watchers = map[string]*pollWatcher{}
	s.mu.Unlock()
	for _, w := range ws {
		w.stop()
	}
}

// userAndPath picks the user from the request and makes path absolute.
func (s *Service) userAndPath(req connect.AnyRequest, path string) (*osuser.User, string, error) {
	u, err := s.state.UserFromHeader(req.Header())
	if err != nil {
		return nil, "", connect.NewError(connect.CodeUnauthenticated, err)
	}
	p, err := osuser.ResolvePath(path, u, s.state.Workdir())
	if err != nil {
		return nil, "", connect.NewError(connect.CodeInvalidArgument, err)
	}
	return u, p, nil
}

// fsError maps an OS error to the Connect code E2B's envd uses for it.
func fsError(op, path string, err error) error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return connect.NewError(connect.CodeNotFound, fmt.Errorf("%s: path '%s' does not exist", op, path))
	case errors.Is(err, fs.ErrPermission):
		return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%s %s: permission denied", op, path))
	case errors.Is(err, syscall.ELOOP):
		return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("%s: path '%s' is a symlink loop", op, path))
	case errors.Is(err, syscall.ENOSPC):
		return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("%s %s: not enough disk space available", op, path))
	default:
		return connect.NewError(connect.CodeInternal, fmt.Errorf("%s %s: %w", op, path, err))
	}
}

// Every operation below runs its filesystem calls as the requesting user
// (osuser.Do): the kernel checks each path, symlinks included, against
// what that user may do.

func (s *Service) Stat(_ context.Context, req *connect.Request[pb.StatRequest]) (*connect.Response[pb.StatResponse], error) {
	u, path, err := s.userAndPath(req, req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	var e *pb.EntryInfo
	if err := u.Do(func() (err error) { e, err = Entry(path); return err }); err != nil {
		return nil, fsError("stat", path, err)
	}
	return connect.NewResponse(&pb.StatResponse{Entry: e}), nil
}

func (s *Service) MakeDir(_ context.Context, req *connect.Request[pb.MakeDirRequest]) (*connect.Response[pb.MakeDirResponse], error) {
	u, path, err := s.userAndPath(req, req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	var e *pb.EntryInfo
	err = u.Do(func() error {
		if fi, err := os.Stat(path); err == nil {
			if fi.IsDir() {
				return connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("directory '%s' already exists", path))
			}
			return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("path '%s' exists and is not a directory", path))
		}
		if err := os.MkdirAll(path, 0o755); err != nil {
			return fsError("make directory", path, err)
		}
		e, err = Entry(path)
		return err
	})
	if err != nil {
		return nil, fsError("stat", path, err)
	}
	return connect.NewResponse(&pb.MakeDirResponse{Entry: e}), nil
}

func (s *Service) Move(_ context.Context, req *connect.Request[pb.MoveRequest]) (*connect.Response[pb.MoveResponse], error) {
	u, src, err := s.userAndPath(req, req.Msg.GetSource())
	if err != nil {
		return nil, err
	}
	_, dst, err := s.userAndPath(req, req.Msg.GetDestination())
	if err != nil {
		return nil, err
	}
	var e *pb.EntryInfo
	err = u.Do(func() error {
		if _, err := os.Lstat(src); err != nil {
			return fsError("move", src, err)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fsError("move", dst, err)
		}
		if err := os.Rename(src, dst); err != nil {
			return fsError("move", src, err)
		}
		e, err = Entry(dst)
		return err
	})
	if err != nil {
		return nil, fsError("stat", dst, err)
	}
	return connect.NewResponse(&pb.MoveResponse{Entry: e}), nil
}

func (s *Service) Remove(_ context.Context, req *connect.Request[pb.RemoveRequest]) (*connect.Response[pb.RemoveResponse], error) {
	u, path, err := s.userAndPath(req, req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	if path == "/" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("refusing to remove /"))
	}
	if err := u.Do(func() error { return os.RemoveAll(path) }); err != nil {
		return nil, fsError("remove", path, err)
	}
	return connect.NewResponse(&pb.RemoveResponse{}), nil
}

func (s *Service) ListDir(_ context.Context, req *connect.Request[pb.ListDirRequest]) (*connect.Response[pb.ListDirResponse], error) {
	u, path, err := s.userAndPath(req, req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	depth := int(req.Msg.GetDepth())
	if depth == 0 {
		depth = 1
	}
	out := &pb.ListDirResponse{}
	err = u.Do(func() error {
		// Stat first: it reports a symlink loop as ELOOP, EvalSymlinks does not.
		fi, err := os.Stat(path)
		if err != nil {
			return fsError("list", path, err)
		}
		resolved, err := filepath.EvalSymlinks(path)
		if err != nil {
			return fsError("list", path, err)
		}
		if !fi.IsDir() {
			return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("path '%s' is not a directory", path))
		}
		return walk(resolved, path, depth, &out.Entries)
	})
	if err != nil {
		return nil, fsError("list", path, err)
	}
	return connect.NewResponse(out), nil
}

// walk lists dir lexically down to depth levels, naming entries under shown
// (the path as the client asked for it) rather than the resolved one.
// Entries that vanish during the walk are skipped.
func walk(dir, shown string, depth int, out *[]*pb.EntryInfo) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, de := range entries {
		real := filepath.Join(dir, de.Name())
		fi, err := os.Lstat(real)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return err
		}
		e, err := entryFromInfo(real, fi)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return err
		}
		e.Path = filepath.Join(shown, de.Name())
		*out = append(*out, e)
		if depth > 1 && fi.IsDir() {
			// A directory that vanished, or that the user may not read,
			// is listed but not descended into.
			if err := walk(real, e.Path, depth-1, out); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) {
				return err
			}
		}
	}
	return nil
}
