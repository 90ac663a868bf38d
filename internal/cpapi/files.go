package cpapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/pkg/service"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

// fileTarget resolves {sandboxID} to its agent and reads ?path= (required)
// and ?user=. Paths are the guest's own; envd inside the sandbox resolves
// them with the user's permissions, so nothing here can reach the host.
func (a *API) fileTarget(w http.ResponseWriter, r *http.Request, action string) (service.Target, string, string, bool) {
	path := r.URL.Query().Get("path")
	if path == "" {
		writeError(w, http.StatusBadRequest, "invalid_argument", "the path query parameter is required")
		return service.Target{}, "", "", false
	}
	t, ok := a.running(w, r, action)
	return t, path, r.URL.Query().Get("user"), ok
}

// downloadFile streams a file out of the sandbox without holding it whole.
func (a *API) downloadFile(w http.ResponseWriter, r *http.Request) {
	t, path, user, ok := a.fileTarget(w, r, "")
	if !ok {
		return
	}
	stream, err := t.Agent.ReadFileStream(r.Context(), connect.NewRequest(&pb.ReadFileRequest{SandboxId: t.AgentID, Path: path, User: user}))
	if err != nil {
		a.failAgent(w, r, t, "read file", err)
		return
	}
	defer stream.Close()
	// The first message decides the status: errors (no such file) come
	// before any content.
	if !stream.Receive() {
		if err := stream.Err(); err != nil {
			a.failAgent(w, r, t, "read file", err)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for {
		if _, err := w.Write(stream.Msg().GetChunk()); err != nil {
			return // the client went away; closing the stream cancels the read
		}
		_ = rc.Flush()
		if !stream.Receive() {
			break
		}
	}
	if err := stream.Err(); err != nil {
		// Headers are out: cut the response so the client sees a
		// truncated body rather than a complete-looking one.
		a.log.Warn("download interrupted", "sandbox", t.AgentID, "path", path, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// uploadFile streams the request body into a file in the sandbox.
func (a *API) uploadFile(w http.ResponseWriter, r *http.Request) {
	t, path, user, ok := a.fileTarget(w, r, "sandbox.write_file")
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stream := t.Agent.WriteFileStream(ctx)
	err := stream.Send(&pb.WriteFileStreamRequest{Part: &pb.WriteFileStreamRequest_Header{Header: &pb.WriteFileRequest{SandboxId: t.AgentID, Path: path, User: user}}})
	buf := make([]byte, 1<<20)
	for err == nil {
		n, rerr := io.ReadFull(r.Body, buf)
		if n > 0 {
			err = stream.Send(&pb.WriteFileStreamRequest{Part: &pb.WriteFileStreamRequest_Chunk{Chunk: buf[:n]}})
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			// The client went away mid-upload: cancelling fails the
			// stream, and envd keeps the old file instead of a partial one.
			cancel()
			_, _ = stream.CloseAndReceive()
			writeError(w, http.StatusBadRequest, "upload_interrupted", "reading the upload failed: "+rerr.Error())
			return
		}
	}
	if errors.Is(err, io.EOF) {
		err = nil // the agent ended the stream; its error comes below
	}
	res, cerr := stream.CloseAndReceive()
	if err == nil {
		err = cerr
	}
	if err != nil {
		if connect.CodeOf(err) == connect.CodeResourceExhausted {
			// The sandbox's own disk is full, as envd says (507): not a
			// lack of capacity on the platform's side.
			writeError(w, http.StatusInsufficientStorage, "insufficient_storage", "write file: the sandbox's disk is full: "+agentMessage(err))
			return
		}
		a.failAgent(w, r, t, "write file", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"path": res.Msg.GetPath(), "size": res.Msg.GetSize()})
}

func (a *API) removeFile(w http.ResponseWriter, r *http.Request) {
	t, path, user, ok := a.fileTarget(w, r, "sandbox.remove_file")
	if !ok {
		return
	}
	if _, err := t.Agent.RemovePath(r.Context(), connect.NewRequest(&pb.RemovePathRequest{SandboxId: t.AgentID, Path: path, User: user})); err != nil {
		a.failAgent(w, r, t, "remove", err)
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

func viewEntry(e *pb.FileEntry) entryView {
	return entryView{Name: e.GetName(), Path: e.GetPath(), IsDir: e.GetIsDir(), Size: e.GetSize(), Permissions: e.GetPermissions(), ModifiedAt: time.UnixMilli(e.GetModifiedUnixMs()).UTC()}
}

func (a *API) listDir(w http.ResponseWriter, r *http.Request) {
	t, path, user, ok := a.fileTarget(w, r, "")
	if !ok {
		return
	}
	depth := uint64(1)
	if d := r.URL.Query().Get("depth"); d != "" {
		var err error
		if depth, err = strconv.ParseUint(d, 10, 8); err != nil || depth < 1 || depth > 10 {
			writeError(w, http.StatusBadRequest, "invalid_argument", "depth must be 1 to 10")
			return
		}
	}
	res, err := t.Agent.ListDir(r.Context(), connect.NewRequest(&pb.ListDirRequest{SandboxId: t.AgentID, Path: path, Depth: uint32(depth), User: user}))
	if err != nil {
		a.failAgent(w, r, t, "list", err)
		return
	}
	writeJSON(w, http.StatusOK, mapSlice(res.Msg.GetEntries(), viewEntry))
}

func (a *API) makeDir(w http.ResponseWriter, r *http.Request) {
	t, path, user, ok := a.fileTarget(w, r, "sandbox.make_dir")
	if !ok {
		return
	}
	res, err := t.Agent.MakeDir(r.Context(), connect.NewRequest(&pb.MakeDirRequest{SandboxId: t.AgentID, Path: path, User: user}))
	if err != nil {
		a.failAgent(w, r, t, "make directory", err)
		return
	}
	writeJSON(w, http.StatusCreated, viewEntry(res.Msg.GetEntry()))
}

// agentMessage is an agent error's message without the Connect code.
func agentMessage(err error) string {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Message()
	}
	return err.Error()
}
