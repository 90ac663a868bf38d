package service

import (
	"context"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
	"git.omukk.dev/wrenn/sandbox/pkg/limits"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

// LogEntry is one line of a sandbox's log: its console, where the
// guest's init and envd write (and, in a VM, the kernel's warnings).
type LogEntry struct {
	// Time is the host's stamp of the line, unique within the sandbox's
	// log, so a client pages with it.
	Time time.Time
	// Level is debug, info, warn or error.
	Level   string
	Message string
	Fields  map[string]string
	// Line is the line as the guest wrote it.
	Line string
}

// LogQuery selects entries of a sandbox's log; zero values select all.
type LogQuery struct {
	Start, End time.Time // both inclusive
	// MinLevel drops entries below it (debug, info, warn, error).
	MinLevel string
	// Search keeps entries whose message contains it.
	Search string
	// Limit bounds the entries: 0 is limits.DefaultLogEntries, more than
	// limits.MaxLogEntries is refused. They are the oldest selected, or
	// the newest with Newest.
	Limit  int
	Newest bool
	// Follow goes on with new entries as they come, until ctx ends or
	// the sandbox is gone; End must be zero.
	Follow bool
}

// Logs reads the log of one of the team's sandboxes, running or paused
// (a sandbox's log lives on its host and goes with it), and calls fn
// with its entries in batches, oldest first.
func (s *Service) Logs(ctx context.Context, c auth.Caller, sid uuid.UUID, q LogQuery, fn func([]LogEntry) error) error {
	switch {
	case q.Limit < 0 || q.Limit > limits.MaxLogEntries:
		return errf(ErrInvalid, "limit must be 1 to %d", limits.MaxLogEntries)
	case !q.Start.IsZero() && !q.End.IsZero() && q.Start.After(q.End):
		return errf(ErrInvalid, "start is after end")
	case q.Follow && !q.End.IsZero():
		return errf(ErrInvalid, "end cannot be used with follow: a followed log has no end")
	}
	if q.Limit == 0 {
		q.Limit = limits.DefaultLogEntries
	}
	sb, err := s.getSandbox(ctx, c, sid)
	if err != nil {
		return err
	}
	if sb.State == "stopped" {
		return errf(ErrNotFound, "sandbox %s is stopped: its log was deleted with it", id.Format(id.Sandbox, sb.ID))
	}
	h, client, err := s.hostAgent(ctx, sb.HostID)
	if err != nil {
		return err
	}
	t := target{Sandbox: sb, Host: h, Agent: client, AgentID: id.Format(id.Sandbox, sb.ID)}
	req := &pb.SandboxLogsRequest{SandboxId: t.AgentID, MinLevel: q.MinLevel, Search: q.Search, Limit: uint32(q.Limit), Newest: q.Newest, Follow: q.Follow}
	if !q.Start.IsZero() {
		req.StartUnixNs = q.Start.UnixNano()
	}
	if !q.End.IsZero() {
		req.EndUnixNs = q.End.UnixNano()
	}
	stream, err := client.SandboxLogs(ctx, connect.NewRequest(req))
	if err != nil {
		return t.fail("logs", err)
	}
	defer stream.Close()
	for stream.Receive() {
		es := stream.Msg().GetEntries()
		out := make([]LogEntry, 0, len(es))
		for _, e := range es {
			out = append(out, LogEntry{Time: time.Unix(0, e.GetTimeUnixNs()).UTC(), Level: e.GetLevel(), Message: e.GetMessage(), Fields: e.GetFields(), Line: e.GetLine()})
		}
		if err := fn(out); err != nil {
			return err
		}
	}
	if err := stream.Err(); err != nil && ctx.Err() == nil {
		return t.fail("logs", err)
	}
	return nil
}
