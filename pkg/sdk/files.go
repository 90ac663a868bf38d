package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/pkg/filesig"
	"git.omukk.dev/wrenn/sandbox/proto/envd/filesystem"
)

// Files is a sandbox's filesystem. Relative paths are relative to the
// user's home directory.
type Files struct{ sb *Sandbox }

// EntryType is the kind of a filesystem entry.
type EntryType string

const (
	TypeFile    EntryType = "file"
	TypeDir     EntryType = "dir"
	TypeSymlink EntryType = "symlink"
	TypeOther   EntryType = "other"
)

// EntryInfo describes a file or directory.
type EntryInfo struct {
	Name          string      `json:"name"`
	Path          string      `json:"path"`
	Type          EntryType   `json:"type"`
	Size          int64       `json:"size"`
	Mode          fs.FileMode `json:"mode"`
	Permissions   string      `json:"permissions,omitempty"`
	Owner         string      `json:"owner,omitempty"`
	Group         string      `json:"group,omitempty"`
	ModTime       time.Time   `json:"mod_time,omitzero"`
	SymlinkTarget string      `json:"symlink_target,omitempty"`
}

func entryOf(e *filesystem.EntryInfo) EntryInfo {
	t := TypeOther
	switch e.GetType() {
	case filesystem.FileType_FILE_TYPE_FILE:
		t = TypeFile
	case filesystem.FileType_FILE_TYPE_DIRECTORY:
		t = TypeDir
	case filesystem.FileType_FILE_TYPE_SYMLINK:
		t = TypeSymlink
	}
	out := EntryInfo{Name: e.GetName(), Path: e.GetPath(), Type: t, Size: e.GetSize(), Mode: fs.FileMode(e.GetMode()), Permissions: e.GetPermissions(),
		Owner: e.GetOwner(), Group: e.GetGroup(), SymlinkTarget: e.GetSymlinkTarget()}
	if e.GetModifiedTime() != nil {
		out.ModTime = e.GetModifiedTime().AsTime()
	}
	return out
}

// filesURL is envd's /files URL for path.
func (f *Files) filesURL(path string, extra url.Values) string {
	q := url.Values{"path": {path}}
	if u := f.sb.envd.user; u != "" {
		q.Set("username", u)
	}
	for k, v := range extra {
		q[k] = v
	}
	return f.sb.envd.base + "/files?" + q.Encode()
}

// Read opens a file for reading as a stream; close it when done. A
// missing file matches ErrNotFound.
func (f *Files) Read(ctx context.Context, path string) (io.ReadCloser, error) {
	op := "read " + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.filesURL(path, nil), nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	// Sandbox files are mostly incompressible; compressing them on the
	// fly is slower than sending them.
	req.Header.Set("Accept-Encoding", "identity")
	res, err := f.sb.envd.httpc.Do(req)
	if err != nil {
		return nil, requestError(op, err)
	}
	if res.StatusCode != http.StatusOK {
		defer res.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		return nil, httpError(op, res.StatusCode, data)
	}
	return &readBody{ReadCloser: res.Body, op: op}, nil
}

// readBody names the file in a failed read.
type readBody struct {
	io.ReadCloser
	op string
}

func (r *readBody) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = requestError(r.op, err)
	}
	return n, err
}

// ReadFile reads a whole file.
func (f *Files) ReadFile(ctx context.Context, path string) ([]byte, error) {
	rc, err := f.Read(ctx, path)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// Write streams r into the file at path, creating parent directories.
// The file is replaced only once the whole stream arrived: a failed or
// cancelled write leaves the old file as it was.
func (f *Files) Write(ctx context.Context, path string, r io.Reader) (EntryInfo, error) {
	op := "write " + path
	switch r.(type) {
	case *bytes.Reader, *strings.Reader, *bytes.Buffer:
		// Never block: the request ends with ctx as it is.
	default:
		// net/http waits for a body's Read to return before it gives up
		// a cancelled request; a source that blocks (a pipe, a terminal,
		// a slow producer) must not hold the call past ctx.
		r = &ctxReader{ctx: ctx, r: r}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.filesURL(path, nil), r)
	if err != nil {
		return EntryInfo{}, fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	res, err := f.sb.envd.httpc.Do(req)
	if err != nil {
		return EntryInfo{}, requestError(op, err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != http.StatusOK {
		return EntryInfo{}, httpError(op, res.StatusCode, data)
	}
	var entries []struct {
		Name, Path string
	}
	if err := json.Unmarshal(data, &entries); err != nil || len(entries) == 0 {
		return EntryInfo{}, fmt.Errorf("%s: envd's answer is not a list of entries: %q", op, bytes.TrimSpace(data))
	}
	return EntryInfo{Name: entries[0].Name, Path: entries[0].Path, Type: TypeFile}, nil
}

// ctxReader is a Reader whose Read returns when ctx ends even if the
// source's Read is still blocked; that Read finishes into a buffer of
// its own and its bytes are dropped.
type ctxReader struct {
	ctx     context.Context
	r       io.Reader
	pending chan readResult
	left    []byte
	err     error // the source's, after left
}

type readResult struct {
	b   []byte
	err error
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if len(c.left) > 0 {
		n := copy(p, c.left)
		c.left = c.left[n:]
		if len(c.left) == 0 {
			return n, c.err
		}
		return n, nil
	}
	if c.err != nil {
		return 0, c.err
	}
	if c.pending == nil {
		ch := make(chan readResult, 1)
		buf := make([]byte, len(p))
		go func() {
			n, err := c.r.Read(buf)
			ch <- readResult{buf[:n], err}
		}()
		c.pending = ch
	}
	select {
	case res := <-c.pending:
		c.pending = nil
		n := copy(p, res.b)
		c.left, c.err = res.b[n:], res.err
		if len(c.left) > 0 {
			return n, nil
		}
		return n, res.err
	case <-c.ctx.Done():
		return 0, c.ctx.Err()
	}
}

// WriteFile writes data to the file at path.
func (f *Files) WriteFile(ctx context.Context, path string, data []byte) (EntryInfo, error) {
	return f.Write(ctx, path, bytes.NewReader(data))
}

// Create returns a writer whose bytes stream into the file at path;
// Close finishes the upload and returns its error. If ctx ends first the
// upload is abandoned and the old file stays.
func (f *Files) Create(ctx context.Context, path string) io.WriteCloser {
	pr, pw := io.Pipe()
	w := &fileWriter{pw: pw, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		_, w.err = f.Write(ctx, path, pr)
		pr.CloseWithError(errors.Join(w.err, io.ErrClosedPipe))
	}()
	return w
}

type fileWriter struct {
	pw   *io.PipeWriter
	done chan struct{}
	err  error
}

func (w *fileWriter) Write(p []byte) (int, error) { return w.pw.Write(p) }

func (w *fileWriter) Close() error {
	w.pw.Close()
	<-w.done
	return w.err
}

// List lists a directory, depth levels deep (0 means 1).
func (f *Files) List(ctx context.Context, path string, depth int) ([]EntryInfo, error) {
	if depth < 1 {
		depth = 1
	}
	res, err := f.sb.envd.fs.ListDir(ctx, connect.NewRequest(&filesystem.ListDirRequest{Path: path, Depth: uint32(depth)}))
	if err != nil {
		return nil, connectError("list "+path, err)
	}
	out := make([]EntryInfo, 0, len(res.Msg.GetEntries()))
	for _, e := range res.Msg.GetEntries() {
		out = append(out, entryOf(e))
	}
	return out, nil
}

// Stat describes path (a symlink is described, not followed).
func (f *Files) Stat(ctx context.Context, path string) (EntryInfo, error) {
	res, err := f.sb.envd.fs.Stat(ctx, connect.NewRequest(&filesystem.StatRequest{Path: path}))
	if err != nil {
		return EntryInfo{}, connectError("stat "+path, err)
	}
	return entryOf(res.Msg.GetEntry()), nil
}

// Exists reports whether path exists.
func (f *Files) Exists(ctx context.Context, path string) (bool, error) {
	_, err := f.Stat(ctx, path)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// MakeDir creates a directory and its parents; it reports false when the
// directory already existed.
func (f *Files) MakeDir(ctx context.Context, path string) (bool, error) {
	_, err := f.sb.envd.fs.MakeDir(ctx, connect.NewRequest(&filesystem.MakeDirRequest{Path: path}))
	if connect.CodeOf(err) == connect.CodeAlreadyExists {
		return false, nil
	}
	if err != nil {
		return false, connectError("mkdir "+path, err)
	}
	return true, nil
}

// Rename moves oldPath to newPath, creating newPath's parents.
func (f *Files) Rename(ctx context.Context, oldPath, newPath string) (EntryInfo, error) {
	res, err := f.sb.envd.fs.Move(ctx, connect.NewRequest(&filesystem.MoveRequest{Source: oldPath, Destination: newPath}))
	if err != nil {
		return EntryInfo{}, connectError("rename "+oldPath, err)
	}
	return entryOf(res.Msg.GetEntry()), nil
}

// Remove deletes a file or a directory with its contents; a missing path
// is not an error.
func (f *Files) Remove(ctx context.Context, path string) error {
	_, err := f.sb.envd.fs.Remove(ctx, connect.NewRequest(&filesystem.RemoveRequest{Path: path}))
	return connectError("remove "+path, err)
}

// EventType is what happened to a watched entry.
type EventType string

const (
	EventCreate EventType = "create"
	EventWrite  EventType = "write"
	EventRemove EventType = "remove"
	EventRename EventType = "rename"
	EventChmod  EventType = "chmod"
)

// FileEvent is a change in a watched directory.
type FileEvent struct {
	// Name is relative to the watched directory.
	Name string
	Type EventType
}

// Watcher delivers a directory's changes until it is closed, its context
// ends, or the sandbox goes away.
type Watcher struct {
	events chan FileEvent
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// Events is closed when the watch ends; Err then says why.
func (w *Watcher) Events() <-chan FileEvent { return w.events }

// Err is why the watch ended (nil after Close or the context's end).
// Call it after Events is closed.
func (w *Watcher) Err() error {
	<-w.done
	return w.err
}

// Close stops the watch.
func (w *Watcher) Close() {
	w.cancel()
	<-w.done
}

// Watch watches a directory (and, recursive, its subdirectories). It
// returns once the watch is in place. Read Events promptly: a watcher
// nobody reads stops the stream.
func (f *Files) Watch(ctx context.Context, path string, recursive bool) (*Watcher, error) {
	op := "watch " + path
	wctx, cancel := context.WithCancel(ctx)
	stream, err := f.sb.envd.fs.WatchDir(wctx, connect.NewRequest(&filesystem.WatchDirRequest{Path: path, Recursive: recursive}))
	if err != nil {
		cancel()
		return nil, connectError(op, err)
	}
	if !stream.Receive() || stream.Msg().GetStart() == nil {
		err := stream.Err()
		stream.Close()
		cancel()
		if err == nil {
			return nil, &APIError{Op: op, Message: "envd did not start the watch", kind: ErrUnavailable}
		}
		return nil, connectError(op, err)
	}
	w := &Watcher{events: make(chan FileEvent, 64), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer close(w.events)
		defer stream.Close()
		for stream.Receive() {
			fe := stream.Msg().GetFilesystem()
			if fe == nil {
				continue
			}
			ev := FileEvent{Name: fe.GetName()}
			switch fe.GetType() {
			case filesystem.EventType_EVENT_TYPE_CREATE:
				ev.Type = EventCreate
			case filesystem.EventType_EVENT_TYPE_WRITE:
				ev.Type = EventWrite
			case filesystem.EventType_EVENT_TYPE_REMOVE:
				ev.Type = EventRemove
			case filesystem.EventType_EVENT_TYPE_RENAME:
				ev.Type = EventRename
			case filesystem.EventType_EVENT_TYPE_CHMOD:
				ev.Type = EventChmod
			default:
				continue
			}
			select {
			case w.events <- ev:
			case <-wctx.Done():
				return
			}
		}
		if wctx.Err() == nil {
			if err := stream.Err(); err != nil {
				w.err = streamError(op, err, true, "")
			} else {
				w.err = &APIError{Op: op, Message: "the watch ended (was the sandbox killed or paused?)", kind: ErrUnavailable}
			}
		}
	}()
	return w, nil
}

// URLOptions tune a signed URL.
type URLOptions struct {
	// Expires, when set, makes the URL stop working after this long.
	Expires time.Duration
}

// DownloadURL returns a URL that reads the file at path with a plain GET,
// signed with the sandbox's access token so that it can be handed to
// another program. Against the sandbox proxy's header routing the
// E2b-Sandbox-Id and E2b-Sandbox-Port headers must still be sent; with a
// sandbox domain the URL is complete.
func (f *Files) DownloadURL(path string, o URLOptions) string {
	return f.signedURL(path, filesig.Read, o)
}

// UploadURL is DownloadURL for a POST that writes the file.
func (f *Files) UploadURL(path string, o URLOptions) string {
	return f.signedURL(path, filesig.Write, o)
}

func (f *Files) signedURL(path, op string, o URLOptions) string {
	if f.sb.envd.token == "" {
		return f.filesURL(path, nil)
	}
	var exp int64
	extra := url.Values{}
	if o.Expires > 0 {
		exp = time.Now().Add(o.Expires).Unix()
		extra.Set("signature_expiration", strconv.FormatInt(exp, 10))
	}
	extra.Set("signature", filesig.Sign(path, op, f.sb.envd.user, f.sb.envd.token, exp))
	return f.filesURL(path, extra)
}
