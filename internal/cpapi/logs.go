package cpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

// logEntryView is one line of GET /v1/sandboxes/{id}/logs.
type logEntryView struct {
	At      time.Time         `json:"at"`
	Level   string            `json:"level"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields"`
}

// sandboxLogs streams a sandbox's log as JSON lines: the newest limit
// entries from start to end, oldest first, then with follow=true new
// ones as they come until the sandbox is gone or the client leaves.
func (a *API) sandboxLogs(w http.ResponseWriter, r *http.Request) {
	sid, ok := sandboxParam(w, r, "")
	if !ok {
		return
	}
	q := r.URL.Query()
	lq := service.LogQuery{MinLevel: q.Get("level"), Search: q.Get("search"), Newest: true}
	for name, into := range map[string]*time.Time{"start": &lq.Start, "end": &lq.End} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				writeError(w, http.StatusBadRequest, "invalid_argument", name+" must be an RFC 3339 time")
				return
			}
			*into = t
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			writeError(w, http.StatusBadRequest, "invalid_argument", "limit must be a positive integer")
			return
		}
		lq.Limit = n
	}
	if v := q.Get("follow"); v != "" {
		f, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_argument", "follow must be true or false")
			return
		}
		lq.Follow = f
	}
	started := false
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	err := a.svc.Logs(r.Context(), caller(r), sid, lq, func(es []service.LogEntry) error {
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		for _, e := range es {
			v := logEntryView{At: e.Time, Level: e.Level, Message: e.Message, Fields: e.Fields}
			if v.Fields == nil {
				v.Fields = map[string]string{}
			}
			if err := enc.Encode(v); err != nil {
				return err
			}
		}
		return rc.Flush()
	})
	switch {
	case err == nil:
		if !started { // an agent that sent nothing
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
		}
	case !started:
		a.fail(w, r, err)
	case r.Context().Err() == nil:
		// Headers are out: cut the response so the client sees a
		// broken stream, not a complete-looking one.
		a.log.Warn("log stream interrupted", "sandbox", chi.URLParam(r, "sandboxID"), "err", err)
		panic(http.ErrAbortHandler)
	}
}
