package codeinterp

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// output is one line of the NDJSON stream the SDKs read from POST /execute:
// {"type": "stdout"|"stderr"|"result"|"error"|"number_of_executions"|
// "end_of_execution", ...}.
type output map[string]any

func errorOutput(name, value, traceback string) output {
	return output{"type": "error", "name": name, "value": value, "traceback": traceback}
}

// resultFields maps the MIME types of Jupyter's display data to the
// fields of the SDKs' Result; any other type goes into "extra".
var resultFields = map[string]string{
	"text/plain":             "text",
	"text/html":              "html",
	"text/markdown":          "markdown",
	"image/svg+xml":          "svg",
	"image/png":              "png",
	"image/jpeg":             "jpeg",
	"application/pdf":        "pdf",
	"text/latex":             "latex",
	"application/json":       "json",
	"application/javascript": "javascript",
	"e2b/data":               "data",
	"e2b/chart":              "chart",
}

func resultOutput(data map[string]json.RawMessage, main bool) output {
	out := output{"type": "result", "is_main_result": main}
	extra := map[string]json.RawMessage{}
	for mime, v := range data {
		field, ok := resultFields[mime]
		if !ok {
			extra[mime] = v
			continue
		}
		if field == "text" {
			var s string
			if json.Unmarshal(v, &s) == nil {
				// A string's repr loses its quotes, as E2B's server does.
				if len(s) >= 2 && (s[0] == '\'' && s[len(s)-1] == '\'' || s[0] == '"' && s[len(s)-1] == '"') {
					s = s[1 : len(s)-1]
				}
				out[field] = s
				continue
			}
		}
		out[field] = v
	}
	if len(extra) > 0 {
		out["extra"] = extra
	}
	return out
}

// stopNote is what a running execution reports when its kernel is stopped
// on purpose (restart, removal) rather than dying.
type stopNote struct{ name, value string }

// reinterruptEvery repeats an interrupt while abandoned code keeps running
// (code may catch one KeyboardInterrupt).
const reinterruptEvery = 5 * time.Second

// execute runs code and passes what it produces to emit, in order. It
// returns when the kernel has replied and gone idle; failed reports an
// error in the code. If ctx ends first (the client left, or its timeout
// passed), it interrupts the kernel and waits for it to be idle again
// without emitting anything more, so the next execution finds it ready.
// An error means the kernel exited (emit has been told why).
func (k *kernel) execute(ctx context.Context, code string, silent bool, emit func(output)) (failed bool, err error) {
	req, err := newMessage(k.session, "execute_request", map[string]any{
		"code": code, "silent": silent, "store_history": !silent, "user_expressions": map[string]any{},
		// One request is in flight at a time, so there is no queue to
		// abort on an error; with stop_on_error the kernel would abort a
		// request that comes in just after a failed one.
		"allow_stdin": false, "stop_on_error": false,
	})
	if err != nil {
		return false, err
	}
	rt := k.register(req.Header.MsgID)
	defer k.unregister(req.Header.MsgID)
	if err := k.send(k.shell, req); err != nil {
		emit(errorOutput("KernelUnreachable", err.Error(), ""))
		return true, err
	}
	var (
		idle, replied, errored bool
		done                   = ctx.Done()
		reinterrupt            *time.Ticker
		tick                   <-chan time.Time
	)
	defer func() {
		if reinterrupt != nil {
			reinterrupt.Stop()
		}
	}()
	for !(idle && replied) {
		select {
		case m := <-rt.ch:
			switch m.Header.MsgType {
			case "execute_input":
				var c struct {
					Count int `json:"execution_count"`
				}
				_ = json.Unmarshal(m.Content, &c)
				emit(output{"type": "number_of_executions", "execution_count": c.Count})
			case "stream":
				var c struct{ Name, Text string }
				_ = json.Unmarshal(m.Content, &c)
				if c.Name == "stdout" || c.Name == "stderr" {
					emit(output{"type": c.Name, "text": c.Text, "timestamp": m.Header.Date})
				}
			case "display_data", "execute_result":
				var c struct {
					Data map[string]json.RawMessage `json:"data"`
				}
				_ = json.Unmarshal(m.Content, &c)
				emit(resultOutput(c.Data, m.Header.MsgType == "execute_result"))
			case "error":
				if !errored {
					errored = true
					emit(kernelError(m.Content))
				}
			case "status":
				var c struct {
					State string `json:"execution_state"`
				}
				_ = json.Unmarshal(m.Content, &c)
				idle = idle || c.State == "idle"
			case "execute_reply":
				replied = true
				var c struct {
					Status string `json:"status"`
				}
				_ = json.Unmarshal(m.Content, &c)
				switch {
				case c.Status == "error" && !errored:
					errored = true
					emit(kernelError(m.Content))
				case c.Status == "aborted" || c.Status == "abort":
					errored = true
					emit(errorOutput("ExecutionAborted", "the execution was aborted: an earlier one failed", ""))
				}
			}
		case <-done:
			// Nobody reads any more: stop the code, and wait for the
			// kernel to be idle before the next execution gets it.
			emit, done = func(output) {}, nil
			if err := k.interrupt(); err != nil {
				k.cfg.Log.Warn("interrupt failed", "err", err)
			}
			reinterrupt = time.NewTicker(reinterruptEvery)
			tick = reinterrupt.C
		case <-tick:
			_ = k.interrupt()
		case <-k.exited:
			k.mu.Lock()
			note := k.note
			k.mu.Unlock()
			if note.name == "" {
				note = stopNote{"KernelDied", fmt.Sprintf("the %s kernel exited (%v) while the code ran; the next run starts a new one, without this context's variables", k.cfg.Spec.Language, k.exitErr)}
			}
			emit(errorOutput(note.name, note.value, ""))
			return true, k.deadError()
		}
	}
	return errored, nil
}

func kernelError(content json.RawMessage) output {
	var c struct {
		Name      string   `json:"ename"`
		Value     string   `json:"evalue"`
		Traceback []string `json:"traceback"`
	}
	_ = json.Unmarshal(content, &c)
	return errorOutput(c.Name, c.Value, strings.Join(c.Traceback, "\n"))
}
