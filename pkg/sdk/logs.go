package sdk

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// LogEntry is one line of a sandbox's log: its console, where the
// guest's init and envd write.
type LogEntry struct {
	// Time is when the sandbox's host read the line; unique within the
	// log (nanoseconds on Wrenn's API, milliseconds on E2B's).
	Time    time.Time         `json:"at"`
	Level   string            `json:"level"` // debug, info, warn or error
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields"`
}

// LogOptions select entries of a sandbox's log; zero values select all.
type LogOptions struct {
	Start, End time.Time // both inclusive
	// Limit bounds the entries (the newest of those selected); 0 is the
	// server's default (1000).
	Limit int
	// Level is the lowest level shown: debug, info, warn or error.
	Level string
	// Search keeps entries whose message contains it.
	Search string
}

func (o LogOptions) query() url.Values {
	q := url.Values{}
	if !o.Start.IsZero() {
		q.Set("start", o.Start.UTC().Format(time.RFC3339Nano))
	}
	if !o.End.IsZero() {
		q.Set("end", o.End.UTC().Format(time.RFC3339Nano))
	}
	if o.Limit != 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Level != "" {
		q.Set("level", o.Level)
	}
	if o.Search != "" {
		q.Set("search", o.Search)
	}
	return q
}

// Logs returns the newest entries of a sandbox's log (running or paused)
// that opts select, oldest first. To read further back, ask again with
// End just before the first entry's Time.
func (c *Client) Logs(ctx context.Context, id string, opts LogOptions) ([]LogEntry, error) {
	op := "logs of sandbox " + id
	if c.proto == ProtocolE2B {
		return c.e2bLogs(ctx, op, id, opts)
	}
	var out []LogEntry
	err := c.streamLogs(ctx, op, id, opts.query(), func(e LogEntry) error {
		out = append(out, e)
		return nil
	})
	return out, err
}

// FollowLogs calls fn with the newest entries opts select (End aside),
// then with each new one as the sandbox writes it, until the sandbox is
// gone (nil), ctx ends (its error) or fn fails (fn's error).
func (c *Client) FollowLogs(ctx context.Context, id string, opts LogOptions, fn func(LogEntry) error) error {
	op := "follow the logs of sandbox " + id
	if err := c.wrennOnly(op); err != nil {
		return err
	}
	if !opts.End.IsZero() {
		return &APIError{Op: op, Message: "a followed log has no end", kind: ErrInvalid}
	}
	q := opts.query()
	q.Set("follow", "true")
	return c.streamLogs(ctx, op, id, q, fn)
}

// streamLogs reads GET /v1/sandboxes/{id}/logs, one JSON entry a line.
func (c *Client) streamLogs(ctx context.Context, op, id string, q url.Values, fn func(LogEntry) error) error {
	res, err := c.send(ctx, op, http.MethodGet, c.sandboxPath(id, "/logs"), q, nil, "")
	if err != nil {
		return err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e LogEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("%s: decode an entry: %w", op, err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		return requestError(op, err)
	}
	return nil
}

// e2bLogs reads E2B's GET /v2/sandboxes/{id}/logs backwards from End,
// which gives the newest entries, and keeps those from Start.
func (c *Client) e2bLogs(ctx context.Context, op, id string, opts LogOptions) ([]LogEntry, error) {
	q := url.Values{"direction": {"backward"}}
	if !opts.End.IsZero() {
		q.Set("cursor", strconv.FormatInt(opts.End.UnixMilli(), 10))
	}
	if opts.Limit != 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.Level != "" {
		q.Set("level", opts.Level)
	}
	if opts.Search != "" {
		q.Set("search", opts.Search)
	}
	var page struct {
		Logs []struct {
			Timestamp time.Time         `json:"timestamp"`
			Level     string            `json:"level"`
			Message   string            `json:"message"`
			Fields    map[string]string `json:"fields"`
		} `json:"logs"`
	}
	if _, err := c.call(ctx, op, http.MethodGet, "/v2/sandboxes/"+url.PathEscape(id)+"/logs", q, nil, &page); err != nil {
		return nil, err
	}
	out := make([]LogEntry, 0, len(page.Logs))
	for _, e := range page.Logs {
		if !opts.Start.IsZero() && e.Timestamp.Before(opts.Start) || !opts.End.IsZero() && e.Timestamp.After(opts.End) {
			continue
		}
		out = append(out, LogEntry{Time: e.Timestamp, Level: e.Level, Message: e.Message, Fields: e.Fields})
	}
	slices.Reverse(out) // newest first on the wire
	return out, nil
}

// Logs returns the newest entries of the sandbox's log; see Client.Logs.
func (s *Sandbox) Logs(ctx context.Context, opts LogOptions) ([]LogEntry, error) {
	return s.client.Logs(ctx, s.ID, opts)
}

// FollowLogs follows the sandbox's log; see Client.FollowLogs.
func (s *Sandbox) FollowLogs(ctx context.Context, opts LogOptions, fn func(LogEntry) error) error {
	return s.client.FollowLogs(ctx, s.ID, opts, fn)
}
