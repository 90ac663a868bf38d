package filesystemsvc

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"

	"git.omukk.dev/wrenn/sandbox/internal/envd/files"
	"git.omukk.dev/wrenn/sandbox/internal/envd/keepalive"
	"git.omukk.dev/wrenn/sandbox/internal/envd/osuser"
	pb "git.omukk.dev/wrenn/sandbox/proto/envd/filesystem"
)

// Network filesystems and FUSE, where inotify misses remote changes.
var networkFS = map[int64]string{
	0x6969:     "nfs",
	0xFF534D42: "cifs",
	0x517B:     "smb",
	0xFE534D42: "smb2",
	0x65735546: "fuse",
}

// watch turns fsnotify events under one directory into envd's events. It
// watches as its user: only directories that user may read, and entries
// described as that user sees them.
type watch struct {
	fs           *fsnotify.Watcher
	u            *osuser.User
	root         string
	recursive    bool
	includeEntry bool
}

func newWatch(u *osuser.User, root string, recursive, includeEntry, allowNetwork bool) (*watch, error) {
	var w *watch
	err := u.Do(func() (err error) {
		w, err = openWatch(u, root, recursive, includeEntry, allowNetwork)
		return err
	})
	return w, err
}

func openWatch(u *osuser.User, root string, recursive, includeEntry, allowNetwork bool) (*watch, error) {
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fsError("watch", root, err)
	}
	if !fi.IsDir() {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("path '%s' is not a directory", root))
	}
	if !allowNetwork {
		var st unix.Statfs_t
		if err := unix.Statfs(root, &st); err == nil {
			if name, ok := networkFS[int64(st.Type)]; ok {
				return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("path '%s' is on a %s mount; set allowNetworkMounts to watch it", root, name))
			}
		}
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("create watcher: %w", err))
	}
	w := &watch{fs: fw, u: u, root: root, recursive: recursive, includeEntry: includeEntry}
	if err := w.add(root); err != nil {
		fw.Close()
		return nil, fsError("watch", root, err)
	}
	return w, nil
}

// add watches dir, and with recursion every directory below it.
func (w *watch) add(dir string) error {
	if !w.recursive {
		if err := w.fs.Add(dir); err != nil {
			return fmt.Errorf("watch %s: %w", dir, err)
		}
		return nil
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			// A directory that vanished or that the user may not read
			// below the root is not watched; the root itself must be.
			if err := w.fs.Add(p); err != nil && !errors.Is(err, fs.ErrNotExist) && (p == dir || !errors.Is(err, fs.ErrPermission)) {
				return fmt.Errorf("watch %s: %w", p, err)
			}
		}
		return nil
	})
}

func (w *watch) Close() { w.fs.Close() }

// The order E2B's envd reports several operations of one event in.
var opOrder = []struct {
	op fsnotify.Op
	t  pb.EventType
}{
	{fsnotify.Create, pb.EventType_EVENT_TYPE_CREATE},
	{fsnotify.Rename, pb.EventType_EVENT_TYPE_RENAME},
	{fsnotify.Chmod, pb.EventType_EVENT_TYPE_CHMOD},
	{fsnotify.Write, pb.EventType_EVENT_TYPE_WRITE},
	{fsnotify.Remove, pb.EventType_EVENT_TYPE_REMOVE},
}

func (w *watch) convert(ev fsnotify.Event) []*pb.FilesystemEvent {
	if files.IsTempName(filepath.Base(ev.Name)) {
		// An upload's temporary file; the upload shows as events on its
		// target (see files.TempPrefix).
		return nil
	}
	name, err := filepath.Rel(w.root, ev.Name)
	if err != nil {
		name = ev.Name
	}
	if w.recursive && ev.Has(fsnotify.Create) {
		_ = w.u.Do(func() error {
			if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
				_ = w.add(ev.Name) // a directory that vanished at once needs no watch
			}
			return nil
		})
	}
	var out []*pb.FilesystemEvent
	for _, o := range opOrder {
		if !ev.Has(o.op) {
			continue
		}
		fe := &pb.FilesystemEvent{Name: name, Type: o.t}
		if w.includeEntry && (o.t == pb.EventType_EVENT_TYPE_CREATE || o.t == pb.EventType_EVENT_TYPE_WRITE || o.t == pb.EventType_EVENT_TYPE_CHMOD) {
			_ = w.u.Do(func() error {
				if e, err := Entry(ev.Name); err == nil {
					fe.Entry = e
				}
				return nil
			})
		}
		out = append(out, fe)
	}
	return out
}

func (s *Service) WatchDir(ctx context.Context, req *connect.Request[pb.WatchDirRequest], stream *connect.ServerStream[pb.WatchDirResponse]) error {
	u, path, err := s.userAndPath(req, req.Msg.GetPath())
	if err != nil {
		return err
	}
	w, err := newWatch(u, path, req.Msg.GetRecursive(), req.Msg.GetIncludeEntry(), req.Msg.GetAllowNetworkMounts())
	if err != nil {
		return err
	}
	defer w.Close()
	if err := stream.Send(&pb.WatchDirResponse{Event: &pb.WatchDirResponse_Start{Start: &pb.WatchDirResponse_StartEvent{}}}); err != nil {
		return err
	}
	interval := keepalive.Interval(req.Header())
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case ev, ok := <-w.fs.Events:
			if !ok {
				return nil
			}
			for _, fe := range w.convert(ev) {
				if err := stream.Send(&pb.WatchDirResponse{Event: &pb.WatchDirResponse_Filesystem{Filesystem: fe}}); err != nil {
					return err
				}
			}
			ticker.Reset(interval)
		case err := <-w.fs.Errors:
			return connect.NewError(connect.CodeInternal, fmt.Errorf("watch %s: %w", path, err))
		case <-ticker.C:
			if err := stream.Send(&pb.WatchDirResponse{Event: &pb.WatchDirResponse_Keepalive{Keepalive: &pb.WatchDirResponse_KeepAlive{}}}); err != nil {
				return err
			}
		case <-ctx.Done():
			return connect.NewError(connect.CodeCanceled, ctx.Err())
		}
	}
}

// maxBufferedEvents bounds a polling watcher nobody polls; past it the
// watcher fails with an error instead of dropping events unseen.
const maxBufferedEvents = 10000

type pollWatcher struct {
	w      *watch
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	events []*pb.FilesystemEvent
	err    error
}

func (p *pollWatcher) run(ctx context.Context) {
	defer close(p.done)
	for {
		select {
		case ev, ok := <-p.w.fs.Events:
			if !ok {
				return
			}
			p.mu.Lock()
			p.events = append(p.events, p.w.convert(ev)...)
			if len(p.events) > maxBufferedEvents && p.err == nil {
				p.err = fmt.Errorf("more than %d events were not collected; the watcher stopped", maxBufferedEvents)
			}
			failed := p.err != nil
			p.mu.Unlock()
			if failed {
				return
			}
		case err := <-p.w.fs.Errors:
			p.mu.Lock()
			p.err = fmt.Errorf("watch %s: %w", p.w.root, err)
			p.mu.Unlock()
			return
		case <-ctx.Done():
			return
		}
	}
}

func (p *pollWatcher) stop() {
	p.cancel()
	<-p.done
	p.w.Close()
}

func (s *Service) CreateWatcher(_ context.Context, req *connect.Request[pb.CreateWatcherRequest]) (*connect.Response[pb.CreateWatcherResponse], error) {
	u, path, err := s.userAndPath(req, req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	w, err := newWatch(u, path, req.Msg.GetRecursive(), req.Msg.GetIncludeEntry(), req.Msg.GetAllowNetworkMounts())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	pw := &pollWatcher{w: w, cancel: cancel, done: make(chan struct{})}
	id := "w" + strings.ToLower(rand.Text()[:16])
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel()
		w.Close()
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("envd is shutting down"))
	}
	s.watchers[id] = pw
	s.mu.Unlock()
	go pw.run(ctx)
	return connect.NewResponse(&pb.CreateWatcherResponse{WatcherId: id}), nil
}

func (s *Service) watcher(id string) (*pollWatcher, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pw, ok := s.watchers[id]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("watcher '%s' not found", id))
	}
	return pw, nil
}

func (s *Service) GetWatcherEvents(_ context.Context, req *connect.Request[pb.GetWatcherEventsRequest]) (*connect.Response[pb.GetWatcherEventsResponse], error) {
	pw, err := s.watcher(req.Msg.GetWatcherId())
	if err != nil {
		return nil, err
	}
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if pw.err != nil {
		return nil, connect.NewError(connect.CodeInternal, pw.err)
	}
	events := pw.events
	pw.events = nil
	return connect.NewResponse(&pb.GetWatcherEventsResponse{Events: events}), nil
}

func (s *Service) RemoveWatcher(_ context.Context, req *connect.Request[pb.RemoveWatcherRequest]) (*connect.Response[pb.RemoveWatcherResponse], error) {
	s.mu.Lock()
	pw, ok := s.watchers[req.Msg.GetWatcherId()]
	delete(s.watchers, req.Msg.GetWatcherId())
	s.mu.Unlock()
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("watcher '%s' not found", req.Msg.GetWatcherId()))
	}
	pw.stop()
	return connect.NewResponse(&pb.RemoveWatcherResponse{}), nil
}
