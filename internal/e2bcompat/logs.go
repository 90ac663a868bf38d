package e2bcompat

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"git.omukk.dev/wrenn/sandbox/pkg/limits"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

// logLine is E2B's SandboxLog.
type logLine struct {
	Timestamp time.Time `json:"timestamp"`
	Line      string    `json:"line"`
}

// logEntry is E2B's SandboxLogEntry.
type logEntry struct {
	Timestamp time.Time         `json:"timestamp"`
	Level     string            `json:"level"`
	Message   string            `json:"message"`
	Fields    map[string]string `json:"fields"`
}

func entryOf(e service.LogEntry) logEntry {
	f := e.Fields
	if f == nil {
		f = map[string]string{}
	}
	return logEntry{Timestamp: e.Time, Level: e.Level, Message: e.Message, Fields: f}
}

// readLogs reads the sandbox's log at once; limit 0 asks for nothing.
func (h *handler) readLogs(r *http.Request, sid uuid.UUID, q service.LogQuery) ([]service.LogEntry, error) {
	if q.Limit == 0 {
		return nil, nil
	}
	var out []service.LogEntry
	err := h.svc.Logs(r.Context(), caller(r), sid, q, func(es []service.LogEntry) error {
		out = append(out, es...)
		return nil
	})
	return out, err
}

// logLimit reads E2B's limit: 0 to MaxLogEntries, DefaultLogEntries
// when absent.
func logLimit(v string) (int, error) {
	if v == "" {
		return limits.DefaultLogEntries, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > limits.MaxLogEntries {
		return 0, fmt.Errorf("limit must be an integer from 0 to %d", limits.MaxLogEntries)
	}
	return n, nil
}

// unixMilliParam reads a time in Unix milliseconds.
func unixMilliParam(v, name string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("%s must be a Unix time in milliseconds", name)
	}
	return time.UnixMilli(n), nil
}

// logParams reads what both log routes take: the sandbox, a time in Unix
// milliseconds (named at), and the limit; a bad one is answered with a
// 400 and ok false.
func logParams(w http.ResponseWriter, r *http.Request, at string) (sid uuid.UUID, t time.Time, limit int, ok bool) {
	if sid, ok = sandboxParam(w, r, ""); !ok {
		return
	}
	q := r.URL.Query()
	t, err := unixMilliParam(q.Get(at), at)
	if err == nil {
		limit, err = logLimit(q.Get("limit"))
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return sid, t, 0, false
	}
	return sid, t, limit, true
}

// logsV1 is GET /sandboxes/{id}/logs?start=&limit=: the first limit
// entries from start (Unix ms), oldest first, both as lines and as
// structured entries.
func (h *handler) logsV1(w http.ResponseWriter, r *http.Request) {
	sid, start, limit, ok := logParams(w, r, "start")
	if !ok {
		return
	}
	es, err := h.readLogs(r, sid, service.LogQuery{Start: start, Limit: limit})
	if err != nil {
		h.fail(w, err)
		return
	}
	out := struct {
		Logs       []logLine  `json:"logs"`
		LogEntries []logEntry `json:"logEntries"`
	}{Logs: []logLine{}, LogEntries: []logEntry{}}
	for _, e := range es {
		out.Logs = append(out.Logs, logLine{Timestamp: e.Time, Line: e.Line})
		out.LogEntries = append(out.LogEntries, entryOf(e))
	}
	writeJSON(w, http.StatusOK, out)
}

// logsV2 is GET /v2/sandboxes/{id}/logs?cursor=&limit=&direction=&level=&search=:
// forward, the first limit entries from cursor (Unix ms) on, oldest
// first; backward, the last limit entries up to cursor (its whole
// millisecond), newest first.
func (h *handler) logsV2(w http.ResponseWriter, r *http.Request) {
	sid, cursor, limit, ok := logParams(w, r, "cursor")
	if !ok {
		return
	}
	q := r.URL.Query()
	lq := service.LogQuery{Limit: limit, MinLevel: q.Get("level"), Search: q.Get("search")}
	backward := false
	switch d := q.Get("direction"); d {
	case "", "forward":
		lq.Start = cursor
	case "backward":
		backward, lq.Newest = true, true
		if !cursor.IsZero() {
			lq.End = cursor.Add(time.Millisecond - time.Nanosecond)
		}
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("direction %q is not forward or backward", d))
		return
	}
	es, err := h.readLogs(r, sid, lq)
	if err != nil {
		h.fail(w, err)
		return
	}
	if backward {
		slices.Reverse(es)
	}
	out := struct {
		Logs []logEntry `json:"logs"`
	}{Logs: make([]logEntry, 0, len(es))}
	for _, e := range es {
		out.Logs = append(out.Logs, entryOf(e))
	}
	writeJSON(w, http.StatusOK, out)
}
