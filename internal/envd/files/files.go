// Package files serves envd's GET and POST /files: downloads of regular
// files and uploads (octet-stream or multipart) that never leave a
// half-written file in place, authorised by access token or signed URL,
// every filesystem call made with the requesting user's permissions.
package files

import (
	"bufio"
	"compress/gzip"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/envd/envstate"
	"git.omukk.dev/wrenn/sandbox/internal/envd/fsmeta"
	"git.omukk.dev/wrenn/sandbox/internal/envd/osuser"
	"git.omukk.dev/wrenn/sandbox/pkg/filesig"
)

// Handler serves /files.
type Handler struct {
	State *envstate.State
	Log   *slog.Logger
}

// EntryInfo is the REST (not protobuf) description of an uploaded file.
type EntryInfo struct {
	Path     string            `json:"path"`
	Name     string            `json:"name"`
	Type     string            `json:"type"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// httpError is an error with the status envd answers it with.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) *httpError {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// WriteError writes envd's JSON error shape.
func WriteError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": status, "message": msg})
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	if !errors.As(err, &he) {
		he = &httpError{status: http.StatusInternalServerError, msg: err.Error()}
	}
	if he.status >= 500 {
		h.Log.Warn("files request failed", "method", r.Method, "status", he.status, "err", he.msg)
	}
	WriteError(w, he.status, he.msg)
}

// Signature computes the v1 signature of a /files URL, as the E2B SDKs do.
func Signature(path, operation, username, token string, expiration int64) string {
	return filesig.Sign(path, operation, username, token, expiration)
}

func (h *Handler) authorize(r *http.Request, operation string) error {
	token := h.State.Token()
	if token == "" {
		return nil
	}
	if got := r.Header.Get("X-Access-Token"); got != "" {
		if subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			return errorf(http.StatusUnauthorized, "access token present in header but does not match")
		}
		return nil
	}
	q := r.URL.Query()
	sig := q.Get("signature")
	if sig == "" {
		return errorf(http.StatusUnauthorized, "missing signature query parameter")
	}
	var exp int64
	if v := q.Get("signature_expiration"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return errorf(http.StatusBadRequest, "signature_expiration %q is not a Unix time", v)
		}
		exp = n
	}
	want := Signature(q.Get("path"), operation, q.Get("username"), token, exp)
	if subtle.ConstantTimeCompare([]byte(sig), []byte(want)) != 1 {
		return errorf(http.StatusUnauthorized, "invalid signature")
	}
	if exp != 0 && time.Now().Unix() > exp {
		return errorf(http.StatusUnauthorized, "signature is already expired")
	}
	return nil
}

func (h *Handler) user(r *http.Request) (*osuser.User, error) {
	u, err := h.State.User(r.URL.Query().Get("username"))
	if err != nil {
		return nil, errorf(http.StatusUnauthorized, "%v", err)
	}
	return u, nil
}

// ServeHTTP dispatches on the method.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var err error
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		err = h.download(w, r)
	case http.MethodPost:
		err = h.upload(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		err = errorf(http.StatusMethodNotAllowed, "method %s is not allowed on /files", r.Method)
	}
	if err != nil {
		h.fail(w, r, err)
	}
}

func (h *Handler) download(w http.ResponseWriter, r *http.Request) error {
	if err := h.authorize(r, "read"); err != nil {
		return err
	}
	u, err := h.user(r)
	if err != nil {
		return err
	}
	path, err := osuser.ResolvePath(r.URL.Query().Get("path"), u, h.State.Workdir())
	if err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	// Opened as the user: the kernel decides what they may read.
	// O_NONBLOCK so that opening a FIFO with no writer cannot hang; it is
	// refused below like every other non-regular file.
	var f *os.File
	err = u.Do(func() (err error) {
		f, err = os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		return err
	})
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errorf(http.StatusNotFound, "path '%s' does not exist", path)
		}
		return ioError(u, "open "+path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return errorf(http.StatusInternalServerError, "stat '%s': %v", path, err)
	}
	if fi.IsDir() {
		return errorf(http.StatusBadRequest, "path '%s' is a directory", path)
	}
	if !fi.Mode().IsRegular() {
		return errorf(http.StatusBadRequest, "path '%s' is not a regular file (%s); only regular files can be downloaded", path, fi.Mode().Type())
	}
	// Back to blocking reads: regular files never block, and the sendfile
	// path wants a plain descriptor.
	if err := syscall.SetNonblock(int(f.Fd()), false); err != nil {
		return errorf(http.StatusInternalServerError, "open '%s': %v", path, err)
	}
	w.Header().Set("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": filepath.Base(path)}))
	w.Header().Set("Vary", "Accept-Encoding")
	// Content is sent as is, whatever Accept-Encoding says: compressing on
	// the fly costs more than it saves for the files sandboxes move.
	http.ServeContent(w, r, filepath.Base(path), fi.ModTime(), f)
	return nil
}

func metadataFromHeaders(hdr http.Header) (map[string]string, error) {
	var meta map[string]string
	for k, vs := range hdr {
		const prefix = "X-Metadata-"
		if !strings.HasPrefix(http.CanonicalHeaderKey(k), prefix) || len(vs) == 0 {
			continue
		}
		if meta == nil {
			meta = map[string]string{}
		}
		meta[strings.ToLower(k[len(prefix):])] = vs[0]
	}
	if err := fsmeta.ValidateMetadata(meta); err != nil {
		return nil, errorf(http.StatusBadRequest, "%v", err)
	}
	return meta, nil
}

func (h *Handler) upload(w http.ResponseWriter, r *http.Request) error {
	if err := h.authorize(r, "write"); err != nil {
		return err
	}
	u, err := h.user(r)
	if err != nil {
		return err
	}
	meta, err := metadataFromHeaders(r.Header)
	if err != nil {
		return err
	}
	body := io.Reader(r.Body)
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return errorf(http.StatusBadRequest, "gzip body: %v", err)
		}
		defer zr.Close()
		body = zr
	default:
		return errorf(http.StatusBadRequest, "unsupported Content-Encoding %q; use gzip or none", enc)
	}
	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return errorf(http.StatusBadRequest, "Content-Type %q: %v", r.Header.Get("Content-Type"), err)
	}
	queryPath := r.URL.Query().Get("path")
	var written []EntryInfo
	switch {
	case mediaType == "application/octet-stream":
		if queryPath == "" {
			return errorf(http.StatusBadRequest, "the path query parameter is required for an octet-stream upload")
		}
		e, err := h.writeFile(queryPath, u, body, meta)
		if err != nil {
			return err
		}
		written = append(written, e)
	case strings.HasPrefix(mediaType, "multipart/"):
		if params["boundary"] == "" {
			return errorf(http.StatusBadRequest, "multipart body without a boundary")
		}
		// multipart.Reader reads through a 4 KB buffer of its own; a large
		// one beneath it keeps the reads from the connection large.
		mr := multipart.NewReader(bufio.NewReaderSize(body, 256<<10), params["boundary"])
		seen := map[string]bool{}
		for {
			part, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return errorf(http.StatusBadRequest, "read multipart body: %v", err)
			}
			if part.FormName() != "file" {
				part.Close()
				continue
			}
			target := queryPath
			if target == "" {
				// The whole filename is the target path; Part.FileName
				// would reduce it to its base name.
				_, dp, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
				target = dp["filename"]
			}
			if target == "" {
				part.Close()
				return errorf(http.StatusBadRequest, "a file part has no filename and no path query parameter was given")
			}
			resolved, err := osuser.ResolvePath(target, u, h.State.Workdir())
			if err != nil {
				part.Close()
				return errorf(http.StatusBadRequest, "%v", err)
			}
			if seen[resolved] {
				part.Close()
				return errorf(http.StatusBadRequest, "two parts write the same path '%s'", resolved)
			}
			seen[resolved] = true
			e, err := h.writeFile(target, u, part, meta)
			part.Close()
			if err != nil {
				return err
			}
			written = append(written, e)
		}
		if len(written) == 0 {
			return errorf(http.StatusBadRequest, "the multipart body has no part named \"file\"")
		}
	default:
		return errorf(http.StatusBadRequest, "Content-Type %q is not supported; use application/octet-stream or multipart/form-data", mediaType)
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(written)
}

// ioError maps a failed filesystem call to the status envd answers with.
func ioError(u *osuser.User, what string, err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission):
		return errorf(http.StatusForbidden, "%s: permission denied for user '%s'", what, u.Name)
	case errors.Is(err, syscall.ENOSPC):
		return errorf(http.StatusInsufficientStorage, "%s: not enough disk space available", what)
	case errors.Is(err, syscall.EDQUOT):
		return errorf(http.StatusInsufficientStorage, "%s: disk quota exceeded", what)
	default:
		return errorf(http.StatusInternalServerError, "%s: %v", what, err)
	}
}
