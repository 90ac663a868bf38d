package cpapi

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

// fileGuest resolves {sandboxID} to a running sandbox and reads ?path=
// (required) and ?user=. Paths are the guest's own; envd inside the
// sandbox resolves them with the user's permissions, so nothing here can
// reach the host.
func (a *API) fileGuest(w http.ResponseWriter, r *http.Request, action string) (*service.Guest, string, string, bool) {
	path := r.URL.Query().Get("path")
	if path == "" {
		writeError(w, http.StatusBadRequest, "invalid_argument", "the path query parameter is required")
		return nil, "", "", false
	}
	g, ok := a.guest(w, r, action)
	return g, path, r.URL.Query().Get("user"), ok
}

// downloadFile streams a file out of the sandbox without holding it whole.
func (a *API) downloadFile(w http.ResponseWriter, r *http.Request) {
	g, path, user, ok := a.fileGuest(w, r, "")
	if !ok {
		return
	}
	body, err := g.ReadFile(r.Context(), path, user)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	defer body.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	buf := make([]byte, 1<<20)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // the client went away; closing the body cancels the read
			}
			_ = rc.Flush()
		}
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			// Headers are out: cut the response so the client sees a
			// truncated body rather than a complete-looking one.
			a.log.Warn("download interrupted", "sandbox", chi.URLParam(r, "sandboxID"), "path", path, "err", err)
			panic(http.ErrAbortHandler)
		}
	}
}

// uploadBody remembers why reading an upload failed.
type uploadBody struct {
	r   io.Reader
	err error
}

func (b *uploadBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		b.err = err
	}
	return n, err
}

// uploadFile streams the request body into a file in the sandbox.
func (a *API) uploadFile(w http.ResponseWriter, r *http.Request) {
	g, path, user, ok := a.fileGuest(w, r, "sandbox.write_file")
	if !ok {
		return
	}
	body := &uploadBody{r: r.Body}
	size, err := g.WriteFile(r.Context(), path, user, body)
	if body.err != nil {
		// The client went away mid-upload; the sandbox keeps the old file.
		writeError(w, http.StatusBadRequest, "upload_interrupted", "reading the upload failed: "+body.err.Error())
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"path": path, "size": size})
}

func (a *API) removeFile(w http.ResponseWriter, r *http.Request) {
	g, path, user, ok := a.fileGuest(w, r, "sandbox.remove_file")
	if !ok {
		return
	}
	if err := g.Remove(r.Context(), path, user); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type entryView struct {
	Name        string    `json:"name"`
	Path        string    `json:"path"`
	IsDir       bool      `json:"is_dir"`
	Size        int64     `json:"size"`
	Permissions string    `json:"permissions"`
	ModifiedAt  time.Time `json:"modified_at"`
}

func viewEntry(e service.FileEntry) entryView {
	return entryView{Name: e.Name, Path: e.Path, IsDir: e.IsDir, Size: e.Size, Permissions: e.Permissions, ModifiedAt: e.ModifiedAt}
}

func (a *API) listDir(w http.ResponseWriter, r *http.Request) {
	g, path, user, ok := a.fileGuest(w, r, "")
	if !ok {
		return
	}
	depth := uint64(1)
	if d := r.URL.Query().Get("depth"); d != "" {
		var err error
		if depth, err = strconv.ParseUint(d, 10, 8); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_argument", "depth must be 1 to 10")
			return
		}
	}
	entries, err := g.ListDir(r.Context(), path, user, uint32(depth))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mapSlice(entries, viewEntry))
}

func (a *API) makeDir(w http.ResponseWriter, r *http.Request) {
	g, path, user, ok := a.fileGuest(w, r, "sandbox.make_dir")
	if !ok {
		return
	}
	e, err := g.MakeDir(r.Context(), path, user)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, viewEntry(e))
}
