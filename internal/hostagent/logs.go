package hostagent

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/internal/runtime/console"
	"git.omukk.dev/wrenn/sandbox/internal/sandbox"
	"git.omukk.dev/wrenn/sandbox/pkg/limits"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

// logBatch is how many entries one message carries (at most MaxLine
// bytes each).
const logBatch = 200

// SandboxLogs reads the sandbox's console: the entries asked for, in
// batches (always at least one message, so that the caller learns at
// once that the sandbox is there), then, with follow, new ones as the
// guest writes them until the sandbox is gone or the caller leaves.
func (s *Service) SandboxLogs(ctx context.Context, req *connect.Request[pb.SandboxLogsRequest], stream *connect.ServerStream[pb.SandboxLogsResponse]) error {
	m := req.Msg
	q, err := logQuery(m)
	if err != nil {
		return err
	}
	dir, gone, err := s.M.LogDir(m.SandboxId)
	if err != nil {
		return err
	}
	entries, pos, err := console.Read(dir, q)
	if err != nil {
		return fmt.Errorf("read the log of sandbox %s: %w", m.SandboxId, err)
	}
	send := func(es []console.Entry) error {
		for first := true; first || len(es) > 0; first = false {
			n := min(len(es), logBatch)
			out := &pb.SandboxLogsResponse{Entries: make([]*pb.LogEntry, 0, n)}
			for _, e := range es[:n] {
				out.Entries = append(out.Entries, &pb.LogEntry{TimeUnixNs: e.Time.UnixNano(), Level: string(e.Level), Message: e.Message, Fields: e.Fields, Line: e.Line})
			}
			if err := stream.Send(out); err != nil {
				return err
			}
			es = es[n:]
		}
		return nil
	}
	if err := send(entries); err != nil || !m.Follow {
		return err
	}
	if n := len(entries); n > 0 && !entries[n-1].Time.Before(q.Start) {
		// Stamps are unique and increasing: a line shown unfinished
		// above is not shown again when it ends.
		q.Start = entries[n-1].Time.Add(time.Nanosecond)
	}
	err = console.Follow(ctx, dir, pos, q, gone, send)
	if ctx.Err() != nil {
		return nil // the caller left
	}
	return err
}

func logQuery(m *pb.SandboxLogsRequest) (console.Query, error) {
	lvl, ok := console.ParseLevel(m.MinLevel)
	if !ok {
		return console.Query{}, fmt.Errorf("%w: level %q is not one of debug, info, warn, error", sandbox.ErrInvalid, m.MinLevel)
	}
	if m.Follow && m.EndUnixNs != 0 {
		return console.Query{}, fmt.Errorf("%w: a followed log has no end", sandbox.ErrInvalid)
	}
	limit := int(m.Limit)
	if limit == 0 || limit > limits.MaxLogEntries {
		limit = limits.MaxLogEntries
	}
	q := console.Query{MinLevel: lvl, Search: m.Search, Limit: limit, Newest: m.Newest}
	if m.StartUnixNs != 0 {
		q.Start = time.Unix(0, m.StartUnixNs)
	}
	if m.EndUnixNs != 0 {
		q.End = time.Unix(0, m.EndUnixNs)
	}
	return q, nil
}
