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

	"connectrpc.com/connect"
	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"git.omukk.dev/wrenn/sandbox/pkg/service"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
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
// ?pid= reattaches to a terminal that outlived an earlier connection.
func (a *API) wsPty(w http.ResponseWriter, r *http.Request) {
	t, ok := a.running(w, r, "")
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
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has answered
	}
	defer conn.CloseNow()
	a.auditStream(r, "sandbox.pty", t.AgentID, fmt.Sprintf("cmd=%q user=%q pid=%d", r.URL.Query().Get("cmd"), r.URL.Query().Get("user"), pid))
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go a.endOnRevocation(ctx, cancel, r, conn)
	stream, err := t.Agent.PtyAttach(ctx, connect.NewRequest(&pb.PtyAttachRequest{
		SandboxId: t.AgentID, Pid: pid, Cols: cols, Rows: rows, Cmd: r.URL.Query().Get("cmd"), User: r.URL.Query().Get("user"),
	}))
	if err != nil {
		conn.Close(websocket.StatusInternalError, truncate(err.Error()))
		return
	}
	defer stream.Close()
	if !stream.Receive() {
		conn.Close(websocket.StatusInternalError, truncate(errText(stream.Err(), "terminal did not start")))
		return
	}
	pid = stream.Msg().GetStartedPid()
	if err := wsjson.Write(ctx, conn, wsEvent{Type: "started", PID: pid}); err != nil {
		return
	}
	inputDone := make(chan struct{})
	go func() {
		defer close(inputDone)
		defer cancel()
		a.ptyInput(ctx, conn, t, pid)
	}()
	for stream.Receive() {
		switch ev := stream.Msg().GetEvent().(type) {
		case *pb.PtyAttachResponse_Output:
			if err := conn.Write(ctx, websocket.MessageBinary, ev.Output); err != nil {
				cancel()
			}
		case *pb.PtyAttachResponse_End:
			code := ev.End.GetExitCode()
			_ = wsjson.Write(ctx, conn, wsEvent{Type: "exit", ExitCode: &code, Error: ev.End.GetError()})
			conn.Close(websocket.StatusNormalClosure, "")
			cancel()
		}
	}
	cancel()
	<-inputDone
}

func (a *API) ptyInput(ctx context.Context, conn *websocket.Conn, t service.Target, pid uint32) {
	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			return // closed: the terminal keeps running and can be reattached
		}
		var cerr error
		if typ == websocket.MessageBinary {
			_, cerr = t.Agent.PtySendInput(ctx, connect.NewRequest(&pb.PtySendInputRequest{SandboxId: t.AgentID, Pid: pid, Data: data}))
		} else {
			var ev wsEvent
			if json.Unmarshal(data, &ev) != nil {
				conn.Close(websocket.StatusUnsupportedData, "text frames must be JSON control messages")
				return
			}
			switch ev.Type {
			case "resize":
				_, cerr = t.Agent.PtyResize(ctx, connect.NewRequest(&pb.PtyResizeRequest{SandboxId: t.AgentID, Pid: pid, Cols: ev.Cols, Rows: ev.Rows}))
			case "input":
				_, cerr = t.Agent.PtySendInput(ctx, connect.NewRequest(&pb.PtySendInputRequest{SandboxId: t.AgentID, Pid: pid, Data: []byte(ev.Data)}))
			case "kill":
				_, cerr = t.Agent.PtyKill(ctx, connect.NewRequest(&pb.PtyKillRequest{SandboxId: t.AgentID, Pid: pid}))
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

// wsExec runs a command (?cmd=, repeated ?arg=, ?cwd=, ?user=, repeated
// ?env=K=V) and streams its events as JSON text frames: start, stdout,
// stderr, exit. Closing the socket stops following it; the process runs on.
func (a *API) wsExec(w http.ResponseWriter, r *http.Request) {
	t, ok := a.running(w, r, "")
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
	a.auditStream(r, "sandbox.exec_stream", t.AgentID, fmt.Sprintf("cmd=%q args=%q cwd=%q user=%q", q.Get("cmd"), q["arg"], q.Get("cwd"), q.Get("user")))
	ctx, cancel := context.WithCancel(conn.CloseRead(r.Context()))
	defer cancel()
	go a.endOnRevocation(ctx, cancel, r, conn)
	stream, err := t.Agent.ExecStream(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: t.AgentID, Cmd: q.Get("cmd"), Args: q["arg"], Cwd: q.Get("cwd"), User: q.Get("user"), Envs: envs}))
	if err != nil {
		conn.Close(websocket.StatusInternalError, truncate(err.Error()))
		return
	}
	defer stream.Close()
	for stream.Receive() {
		var ev wsEvent
		switch e := stream.Msg().GetEvent().(type) {
		case *pb.ExecStreamResponse_StartedPid:
			ev = wsEvent{Type: "start", PID: e.StartedPid}
		case *pb.ExecStreamResponse_Stdout:
			ev = wsEvent{Type: "stdout", Data: string(e.Stdout)}
		case *pb.ExecStreamResponse_Stderr:
			ev = wsEvent{Type: "stderr", Data: string(e.Stderr)}
		case *pb.ExecStreamResponse_End:
			code := e.End.GetExitCode()
			ev = wsEvent{Type: "exit", ExitCode: &code, Error: e.End.GetError()}
		}
		if err := wsjson.Write(ctx, conn, ev); err != nil {
			return
		}
	}
	if err := stream.Err(); err != nil && ctx.Err() == nil {
		conn.Close(websocket.StatusInternalError, truncate(err.Error()))
		return
	}
	conn.Close(websocket.StatusNormalClosure, "")
}

func errText(err error, def string) string {
	if err != nil {
		return err.Error()
	}
	return def
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
