package files

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"git.omukk.dev/wrenn/sandbox/internal/envd/fsmeta"
	"git.omukk.dev/wrenn/sandbox/internal/envd/osuser"
)

// How an upload lands.
//
// Nobody may read a half-written upload: a program in the sandbox that
// opens the file while the body is still arriving, or after a client gave
// up half-way, sees the old content or the new, never a mix. So the body is
// written to a temporary file beside the target (same directory, so same
// filesystem) and renamed over the target once complete: rename(2)
// replaces the name atomically, and a reader holding the old file keeps
// reading the old content. A failed upload removes its temporary file and
// leaves the target as it was.
//
// File watchers must still see what E2B's in-place writes show them: a
// write event on the target, and nothing of the temporary file. The
// temporary name starts with TempPrefix, which envd's own watchers drop
// (filesystemsvc); the rename reaches a directory watcher as the target's
// creation (IN_MOVED_TO); and after the rename a truncate of the file to its
// own length, which changes nothing in its content, gives every inotify
// watcher, envd's or the sandbox's own, the write event (IN_MODIFY) on the
// target's name.
//
// Every filesystem call runs with the user's permissions (osuser.Do), so a
// user who may write a file but not create files in its directory cannot
// have the atomic path: then the file is written in place, truncated first,
// as E2B's envd always does — exactly what that user could do themselves.

// TempPrefix starts the name of every upload's temporary file.
const TempPrefix = ".wrenn-upload-"

// IsTempName reports whether a file name is an upload's temporary file.
func IsTempName(name string) bool { return strings.HasPrefix(name, TempPrefix) }

// copyChunk is the size of each write to the file: large writes keep the
// system calls few (they are expensive under gVisor), small enough that
// every concurrent upload holding one is cheap.
const copyChunk = 1 << 20

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyChunk); return &b }}

// upload is one file being written.
type upload struct {
	u       *osuser.User
	path    string   // the target, symlinks resolved
	tmp     string   // the temporary file; "" when writing in place
	f       *os.File // open for writing
	mode    os.FileMode
	written int64
	done    bool
}

// startUpload resolves the target and opens the file the body goes to, as u.
func startUpload(path string, u *osuser.User) (*upload, error) {
	up := &upload{u: u, path: path, mode: 0o644}
	err := u.Do(func() error {
		// Writing through a symlink replaces the file it points to (as
		// the user: a link leads only where the user may write anyway).
		if resolved, err := filepath.EvalSymlinks(up.path); err == nil {
			up.path = resolved
		}
		exists := false
		if fi, err := os.Stat(up.path); err == nil {
			if fi.IsDir() {
				return errorf(http.StatusBadRequest, "path '%s' is a directory", up.path)
			}
			if !fi.Mode().IsRegular() {
				return errorf(http.StatusBadRequest, "path '%s' is not a regular file", up.path)
			}
			up.mode = fi.Mode().Perm()
			exists = true
		} else if !errors.Is(err, fs.ErrNotExist) {
			return ioError(u, "stat "+up.path, err)
		}
		dir := filepath.Dir(up.path)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return ioError(u, "create parent directories of "+up.path, err)
		}
		f, tmp, err := createTemp(dir)
		if err == nil {
			up.f, up.tmp = f, tmp
			return nil
		}
		if !exists || !errors.Is(err, fs.ErrPermission) {
			return ioError(u, "create "+up.path, err)
		}
		f, err = os.OpenFile(up.path, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return ioError(u, "open "+up.path, err)
		}
		up.f = f
		return nil
	})
	if err != nil {
		return nil, err
	}
	return up, nil
}

func createTemp(dir string) (*os.File, string, error) {
	for range 10 {
		name := filepath.Join(dir, TempPrefix+strings.ToLower(rand.Text()[:12]))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, name, err
	}
	return nil, "", fmt.Errorf("no free temporary name in %s", dir)
}

// copyFrom writes src to the file in large chunks. Reads from a multipart
// part return a few KB each; gathering them into one buffer first keeps the
// writes large.
func (up *upload) copyFrom(src io.Reader) error {
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	buf := *bufp
	for {
		n, rerr := fill(src, buf)
		if n > 0 {
			if _, err := up.f.Write(buf[:n]); err != nil {
				return ioError(up.u, fmt.Sprintf("write %s after %d bytes", up.path, up.written), err)
			}
			up.written += int64(n)
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return errorf(http.StatusBadRequest, "read upload body for '%s': %v", up.path, rerr)
		}
	}
}

// fill reads until buf is full or src fails; io.EOF is the body's clean
// end, any other error a body cut short.
func fill(src io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := src.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// commit puts the complete file in place with its mode and metadata.
func (up *upload) commit(meta map[string]string) error {
	err := up.u.Do(func() error {
		if up.tmp == "" {
			if err := up.f.Close(); err != nil {
				return ioError(up.u, "write "+up.path, err)
			}
			up.f = nil
			if err := fsmeta.ReplaceMetadata(up.path, meta); err != nil {
				return ioError(up.u, "metadata of "+up.path, err)
			}
			return nil
		}
		if err := up.f.Chmod(up.mode); err != nil {
			return ioError(up.u, "chmod "+up.path, err)
		}
		if err := fsmeta.ReplaceMetadata(up.tmp, meta); err != nil {
			return ioError(up.u, "metadata of "+up.path, err)
		}
		if err := os.Rename(up.tmp, up.path); err != nil {
			return ioError(up.u, "replace "+up.path, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	up.done = true
	if up.f != nil {
		// The write event for watchers (see above). The content is in
		// place already; a failure here loses only that event.
		_ = up.f.Truncate(up.written)
		if err := up.f.Close(); err != nil {
			return ioError(up.u, "write "+up.path, err)
		}
	}
	return nil
}

// abort removes the temporary file of an upload that did not complete.
func (up *upload) abort() {
	if up.done {
		return
	}
	if up.f != nil {
		up.f.Close()
	}
	if up.tmp != "" {
		_ = up.u.Do(func() error { return os.Remove(up.tmp) })
	}
}

// writeFile streams src into target for u (see "How an upload lands").
func (h *Handler) writeFile(target string, u *osuser.User, src io.Reader, meta map[string]string) (EntryInfo, error) {
	path, err := osuser.ResolvePath(target, u, h.State.Workdir())
	if err != nil {
		return EntryInfo{}, errorf(http.StatusBadRequest, "%v", err)
	}
	up, err := startUpload(path, u)
	if err != nil {
		return EntryInfo{}, err
	}
	defer up.abort()
	if err := up.copyFrom(src); err != nil {
		return EntryInfo{}, err
	}
	if err := up.commit(meta); err != nil {
		return EntryInfo{}, err
	}
	return EntryInfo{Path: up.path, Name: filepath.Base(up.path), Type: "file", Metadata: meta}, nil
}
