package cpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"git.omukk.dev/wrenn/sandbox/internal/cphttp"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

// wsEvent is a control or status message on a stream's text frames.
type wsEvent struct {
	Type     string `json:"type"`
	PID      uint32 `json:"pid,omitempty"`
	Cols     uint32 `json:"cols,omitempty"`
	Rows     uint32 `json:"rows,omitempty"`
	Data     string `json:"data,omitempty"`
	ExitCode *int32 `json:"exit_code,omitempty"`
	Error    string `json:"error,omitempty"`
}

func queryUint(r *http.Request, name string, def uint32) (uint32, bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.ParseUint(v, 10, 32)
	return uint32(n), err == nil
}

// wsPty serves a terminal: binary frames carry input and output; text
// frames carry {"type":"resize","cols","rows"} and {"type":"kill"} from the
// client, and {"type":"started","pid"} and {"type":"exit"} from the server.
// ?pid= reattaches to a terminal that outlived an earlier connection;
// &replay=true then sends its latest output first (up to 64 KiB).
func (a *API) wsPty(w http.ResponseWriter, r *http.Request) {
	g, ok := a.guest(w, r, "")
	if !ok {
		return
	}
	cols, ok1 := queryUint(r, "cols", 80)
	rows, ok2 := queryUint(r, "rows", 24)
	pid, ok3 := queryUint(r, "pid", 0)
	if !ok1 || !ok2 || !ok3 || cols == 0 || rows == 0 || cols > 1000 || rows > 1000 {
		writeError(w, http.StatusBadRequest, "invalid_argument", "cols and rows must be 1 to 1000, pid a process id")
		return
	}
	replay := false
	switch v := r.URL.Query().Get("replay"); {
	case v == "" || v == "false":
	case v == "true" && pid != 0:
		replay = true
	default:
		writeError(w, http.StatusBadRequest, "invalid_argument", "replay is true or false, and only with pid (a new terminal has no output yet)")
		return
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has answered
	}
	defer conn.CloseNow()
	cphttp.AuditStream(a.svc, r, caller(r), "sandbox.pty", g.ID(), fmt.Sprintf("cmd=%q user=%q pid=%d", r.URL.Query().Get("cmd"), r.URL.Query().Get("user"), pid))
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go a.endOnRevocation(ctx, cancel, r, conn)
	term, err := g.OpenTerminal(ctx, service.TerminalOptions{PID: pid, Cols: cols, Rows: rows, Cmd: r.URL.Query().Get("cmd"), User: r.URL.Query().Get("user"), Replay: replay})
	if err != nil {
		conn.Close(websocket.StatusInternalError, truncate(err.Error()))
		return
	}
	defer term.Close()
	if err := wsjson.Write(ctx, conn, wsEvent{Type: "started", PID: term.PID()}); err != nil {
		return
	}
	inputDone := make(chan struct{})
	go func() {
		defer close(inputDone)
		defer cancel()
		ptyInput(ctx, conn, term)
	}()
	_ = term.Follow(func(ev service.ProcessEvent) error {
		switch ev.Kind {
		case service.ProcessOutput:
			if err := conn.Write(ctx, websocket.MessageBinary, ev.Data); err != nil {
				cancel()
			}
		case service.ProcessEnded:
			_ = wsjson.Write(ctx, conn, wsEvent{Type: "exit", ExitCode: &ev.ExitCode, Error: ev.Error})
			conn.Close(websocket.StatusNormalClosure, "")
			cancel()
		}
		return nil
	})
	cancel()
	<-inputDone
}

func ptyInput(ctx context.Context, conn *websocket.Conn, term *service.Terminal) {
	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			return // closed: the terminal keeps running and can be reattached
		}
		var cerr error
		if typ == websocket.MessageBinary {
			cerr = term.Input(ctx, data)
		} else {
			var ev wsEvent
			if json.Unmarshal(data, &ev) != nil {
				conn.Close(websocket.StatusUnsupportedData, "text frames must be JSON control messages")
				return
			}
			switch ev.Type {
			case "resize":
				cerr = term.Resize(ctx, ev.Cols, ev.Rows)
			case "input":
				cerr = term.Input(ctx, []byte(ev.Data))
			case "kill":
				cerr = term.Kill(ctx)
			default:
				conn.Close(websocket.StatusUnsupportedData, "unknown control message "+truncate(ev.Type))
				return
			}
		}
		if cerr != nil && ctx.Err() == nil {
			_ = wsjson.Write(ctx, conn, wsEvent{Type: "error", Error: cerr.Error()})
		}
	}
}

var execEventTypes = map[service.ProcessEventKind]string{
	service.ProcessStarted: "start", service.ProcessStdout: "stdout", service.ProcessStderr: "stderr", service.ProcessEnded: "exit",
}

// wsExec runs a command (?cmd=, repeated ?arg=, ?cwd=, ?user=, repeated
// ?env=K=V) and streams its events as JSON text frames: start, stdout,
// stderr, exit. Closing the socket stops following it; the process runs on.
func (a *API) wsExec(w http.ResponseWriter, r *http.Request) {
	g, ok := a.guest(w, r, "")
	if !ok {
		return
	}
	q := r.URL.Query()
	if q.Get("cmd") == "" {
		writeError(w, http.StatusBadRequest, "invalid_argument", "the cmd query parameter is required")
		return
	}
	envs := map[string]string{}
	for _, kv := range q["env"] {
		k, v, found := strings.Cut(kv, "=")
		if !found || k == "" {
			writeError(w, http.StatusBadRequest, "invalid_argument", "env parameters are KEY=value")
			return
		}
		envs[k] = v
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer conn.CloseNow()
	cphttp.AuditStream(a.svc, r, caller(r), "sandbox.exec_stream", g.ID(), fmt.Sprintf("cmd=%q args=%q cwd=%q user=%q", q.Get("cmd"), q["arg"], q.Get("cwd"), q.Get("user")))
	ctx, cancel := context.WithCancel(conn.CloseRead(r.Context()))
	defer cancel()
	go a.endOnRevocation(ctx, cancel, r, conn)
	var sendErr error
	err = g.ExecStream(ctx, service.ExecInput{Cmd: q.Get("cmd"), Args: q["arg"], Cwd: q.Get("cwd"), User: q.Get("user"), Envs: envs}, func(e service.ProcessEvent) error {
		ev := wsEvent{Type: execEventTypes[e.Kind], PID: e.PID, Data: string(e.Data), Error: e.Error}
		if e.Kind == service.ProcessEnded {
			ev.ExitCode = &e.ExitCode
		}
		sendErr = wsjson.Write(ctx, conn, ev)
		return sendErr
	})
	switch {
	case sendErr != nil:
		return
	case err != nil && ctx.Err() == nil:
		conn.Close(websocket.StatusInternalError, truncate(err.Error()))
		return
	}
	conn.Close(websocket.StatusNormalClosure, "")
}

// truncate fits a close reason into a control frame (123 bytes).
func truncate(s string) string {
	if len(s) > 120 {
		return s[:120]
	}
	return s
}

// endOnRevocation checks the stream's credential again every
// StreamAuthInterval and ends the stream once it no longer authenticates
// (key revoked, logged out, user deactivated): a stream must not outlive
// the right to open it. It returns when ctx ends.
func (a *API) endOnRevocation(ctx context.Context, cancel context.CancelFunc, r *http.Request, conn *websocket.Conn) {
	cred, _ := credential(r, true)
	tick := time.NewTicker(a.cfg.StreamAuthInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		_, err := a.svc.Authenticate(ctx, cred)
		if err == nil || !errors.Is(err, service.ErrUnauthorized) {
			continue // valid, or the database is briefly unreachable
		}
		a.log.Info("ending a stream whose credential ended", "ip", clientIP(r), "path", r.URL.Path, "credential", describeCredential(cred), "reason", err.Error())
		conn.Close(websocket.StatusPolicyViolation, truncate("credential ended: "+err.Error()))
		cancel()
		return
	}
}
