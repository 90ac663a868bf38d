package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/waitfor"
	"git.omukk.dev/wrenn/sandbox/pkg/sdk"
)

// TestSandboxLogs reads a gVisor sandbox's log through every door.
func TestSandboxLogs(t *testing.T) { testSandboxLogs(t, "gvisor") }

// TestSandboxLogsQEMU is TestSandboxLogs with a VM's serial console.
func TestSandboxLogsQEMU(t *testing.T) { testSandboxLogs(t, "qemu") }

type v1LogEntry struct {
	At      time.Time         `json:"at"`
	Level   string            `json:"level"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields"`
}

func randomMarker(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// testSandboxLogs: a sandbox's log holds envd's start line and the lines
// a test causes (an unauthorised request envd refuses; a root process
// writing to init's console), read through /v1 (time window, limit,
// level, follow), E2B's /sandboxes/{id}/logs and /v2/…/logs, the Go SDK
// and `wrenn logs`; it survives pause and resume, a follower sees new
// lines and ends when the sandbox is killed, and the kill leaves no file
// of it on the host.
func testSandboxLogs(t *testing.T, rt string) {
	s := startSDKStackOn(t, rt)
	cp, key := s.cp, s.key
	sb := sandboxOf(t, cp.Must(t, 201, "POST", "/v1/sandboxes", key, map[string]any{"template": "minimal", "timeout_seconds": 600}))
	killed := false
	t.Cleanup(func() {
		if !killed {
			cp.Do("DELETE", "/v1/sandboxes/"+sb.ID, key, nil)
		}
	})
	logsPath := "/v1/sandboxes/" + sb.ID + "/logs"
	read := func(q string) []v1LogEntry {
		t.Helper()
		r := cp.Must(t, 200, "GET", logsPath+q, key, nil)
		var out []v1LogEntry
		sc := bufio.NewScanner(strings.NewReader(string(r.Body)))
		for sc.Scan() {
			var e v1LogEntry
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("entry %q: %v", sc.Text(), err)
			}
			out = append(out, e)
		}
		return out
	}
	find := func(es []v1LogEntry, msg string) *v1LogEntry {
		for i := range es {
			if strings.Contains(es[i].Message, msg) {
				return &es[i]
			}
		}
		return nil
	}
	waitLine := func(msg string) v1LogEntry {
		t.Helper()
		var e *v1LogEntry
		waitfor.True(t, 20*time.Second, "a log line "+msg, func() bool {
			e = find(read(""), msg)
			return e != nil
		})
		return *e
	}
	writeConsole := func(line string) {
		t.Helper()
		r := cp.Must(t, 200, "POST", "/v1/sandboxes/"+sb.ID+"/exec", key, map[string]any{"cmd": "/bin/sh", "args": []string{"-c", "echo " + line + " > /proc/1/fd/1"}, "user": "root"})
		if code := r.Map()["exit_code"]; code != 0.0 {
			t.Fatalf("write to the console: %s", r)
		}
	}

	// envd's start line, structured.
	listening := waitLine("envd listening")
	if listening.Level != "info" || listening.Fields["component"] != "envd" || listening.Fields["addr"] == "" {
		t.Errorf("envd's start line: %+v", listening)
	}
	if since := time.Since(listening.At); since < 0 || since > 5*time.Minute {
		t.Errorf("envd's start line stamped %s", listening.At)
	}
	if e := find(read(""), "started"); e == nil || e.Fields["component"] != "wrenn-init" {
		t.Errorf("no wrenn-init line among %+v", read(""))
	}

	// A request envd refuses: a warning naming the path.
	refused := randomMarker("/refused")
	req, _ := http.NewRequest("GET", cp.ProxyURL+refused, nil)
	req.Header.Set("E2b-Sandbox-Id", sb.ID)
	req.Header.Set("E2b-Sandbox-Port", "49983")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	var warn v1LogEntry
	waitfor.True(t, 20*time.Second, "envd's warning about "+refused, func() bool {
		for _, e := range read("?level=warn") {
			if e.Level != "warn" && e.Level != "error" {
				t.Fatalf("level=warn gave %+v", e)
			}
			if e.Fields["path"] == refused {
				warn = e
				return true
			}
		}
		return false
	})
	if warn.Message != "unauthorized request" {
		t.Errorf("refusal: %+v", warn)
	}

	// A line a process in the sandbox writes to the console.
	first := randomMarker("console-line")
	writeConsole(first)
	line := waitLine(first)
	if line.Level != "info" || line.Message != first {
		t.Errorf("console line: %+v", line)
	}

	// Time window and limit: stamps are unique, so a window from a
	// line's stamp starts with it and one ending just before leaves it out.
	if es := read("?start=" + url.QueryEscape(line.At.Format(time.RFC3339Nano))); len(es) == 0 || es[0].Message != first {
		t.Errorf("from the line's stamp: %+v", es)
	}
	if es := read("?end=" + url.QueryEscape(line.At.Add(-time.Nanosecond).Format(time.RFC3339Nano))); find(es, first) != nil || find(es, "envd listening") == nil {
		t.Errorf("up to just before the line: %+v", es)
	}
	all := read("")
	if es := read("?limit=2"); len(es) != 2 || !es[1].At.Equal(all[len(all)-1].At) || !es[0].At.Equal(all[len(all)-2].At) {
		t.Errorf("limit=2: %+v, the log ends %+v", es, all[len(all)-2:])
	}
	if es := read("?search=" + first); len(es) != 1 || es[0].Message != first {
		t.Errorf("search: %+v", es)
	}
	for _, q := range []string{"?start=yesterday", "?limit=0", "?limit=10001", "?level=loud", "?follow=maybe",
		"?follow=true&end=" + url.QueryEscape(time.Now().Format(time.RFC3339Nano)),
		"?start=" + url.QueryEscape(time.Now().Format(time.RFC3339)) + "&end=" + url.QueryEscape(time.Now().Add(-time.Hour).Format(time.RFC3339))} {
		if r, _ := cp.Do("GET", logsPath+q, key, nil); r.Status != 400 {
			t.Errorf("GET logs%s: %s", q, r)
		}
	}
	other := cp.APIKey(t, cp.Signup(t, "mallory@example.com"))
	if r, _ := cp.Do("GET", logsPath, other, nil); r.Status != 404 {
		t.Errorf("another team's sandbox's log: %s", r)
	}

	// E2B's routes.
	var v1 struct {
		Logs []struct {
			Timestamp time.Time `json:"timestamp"`
			Line      string    `json:"line"`
		} `json:"logs"`
		LogEntries []struct {
			Timestamp time.Time         `json:"timestamp"`
			Level     string            `json:"level"`
			Message   string            `json:"message"`
			Fields    map[string]string `json:"fields"`
		} `json:"logEntries"`
	}
	startMs := line.At.UnixMilli()
	if err := cp.Must(t, 200, "GET", fmt.Sprintf("/e2b/sandboxes/%s/logs?start=%d&limit=1", sb.ID, startMs), key, nil).JSON(&v1); err != nil {
		t.Fatal(err)
	}
	if len(v1.Logs) != 1 || len(v1.LogEntries) != 1 || v1.LogEntries[0].Timestamp.UnixMilli() < startMs || v1.LogEntries[0].Fields == nil {
		t.Errorf("E2B v1 from %d, limit 1: %+v", startMs, v1)
	}
	if err := cp.Must(t, 200, "GET", "/e2b/sandboxes/"+sb.ID+"/logs", key, nil).JSON(&v1); err != nil {
		t.Fatal(err)
	}
	sawStart := false
	for i, e := range v1.LogEntries {
		sawStart = sawStart || e.Message == "envd listening" && strings.Contains(v1.Logs[i].Line, "level=INFO")
	}
	if !sawStart || len(v1.Logs) != len(v1.LogEntries) {
		t.Errorf("E2B v1: no envd start line in %+v", v1)
	}
	var v2 struct {
		Logs []struct {
			Timestamp time.Time         `json:"timestamp"`
			Level     string            `json:"level"`
			Message   string            `json:"message"`
			Fields    map[string]string `json:"fields"`
		} `json:"logs"`
	}
	if err := cp.Must(t, 200, "GET", "/e2b/v2/sandboxes/"+sb.ID+"/logs?direction=backward&limit=2", key, nil).JSON(&v2); err != nil {
		t.Fatal(err)
	}
	if len(v2.Logs) != 2 || v2.Logs[0].Message != all[len(all)-1].Message || !v2.Logs[0].Timestamp.After(v2.Logs[1].Timestamp) {
		t.Errorf("E2B v2 backward: %+v (the log ends %+v)", v2, all[len(all)-1])
	}
	if err := cp.Must(t, 200, "GET", fmt.Sprintf("/e2b/v2/sandboxes/%s/logs?cursor=%d&search=%s", sb.ID, startMs, first), key, nil).JSON(&v2); err != nil {
		t.Fatal(err)
	}
	if len(v2.Logs) != 1 || v2.Logs[0].Message != first {
		t.Errorf("E2B v2 forward with search: %+v", v2)
	}
	for _, q := range []string{"?direction=sideways", "?limit=-1", "?cursor=soon", "?level=loud"} {
		if r, _ := cp.Do("GET", "/e2b/v2/sandboxes/"+sb.ID+"/logs"+q, key, nil); r.Status != 400 {
			t.Errorf("E2B v2 logs%s: %s", q, r)
		}
	}
	if r, _ := cp.Do("GET", "/e2b/sandboxes/sb-00000000000000000000000000000000/logs", key, nil); r.Status != 404 {
		t.Errorf("E2B logs of no sandbox: %s", r)
	}

	// The Go SDK, both protocols.
	c := s.client(t)
	es, err := c.Logs(context.Background(), sb.ID, sdk.LogOptions{Search: first})
	if err != nil || len(es) != 1 || !es[0].Time.Equal(line.At) {
		t.Errorf("SDK logs: %+v %v", es, err)
	}
	e2bc, err := sdk.New(sdk.WithoutEnv(), sdk.WithProtocol(sdk.ProtocolE2B), sdk.WithAPIURL(cp.URL+"/e2b"), sdk.WithAPIKey(key))
	if err != nil {
		t.Fatal(err)
	}
	if es, err := e2bc.Logs(context.Background(), sb.ID, sdk.LogOptions{Limit: 3}); err != nil || len(es) != 3 || es[2].Message != all[len(all)-1].Message {
		t.Errorf("SDK logs over E2B: %+v %v", es, err)
	}

	// wrenn logs.
	cli := newCLIEnv(t)
	cli.env = append(cli.env, "WRENN_API_URL="+cp.URL, "WRENN_API_KEY="+key)
	if out := cli.ok("logs", sb.ID, "--since", "10m"); !strings.Contains(out, "envd listening") || !strings.Contains(out, first) || !strings.Contains(out, `component="envd"`) {
		t.Errorf("wrenn logs:\n%s", out)
	}
	if out := cli.ok("logs", sb.ID, "-n", "1", "-o", "json"); strings.Count(out, "\n") != 1 || !strings.Contains(out, `"at":`) {
		t.Errorf("wrenn logs -n 1 -o json:\n%s", out)
	}
	if r := cli.run("", "logs", sb.ID, "--since", "-5m"); r.code == 0 {
		t.Errorf("wrenn logs --since -5m: %+v", r)
	}
	if r := cli.run("", "logs", "sb-00000000000000000000000000000000"); r.code == 0 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("wrenn logs of no sandbox: %+v", r)
	}

	// Follow: new lines come as they are written (through the CLI too).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	followed := make(chan sdk.LogEntry, 1000)
	followErr := make(chan error, 1)
	go func() {
		followErr <- c.FollowLogs(ctx, sb.ID, sdk.LogOptions{Limit: 1}, func(e sdk.LogEntry) error {
			followed <- e
			return nil
		})
	}()
	cliFollow := cli.startPTY(nil, "logs", sb.ID, "-f", "-n", "1", "--no-color")
	second := randomMarker("followed-line")
	time.Sleep(time.Second) // both followers are past their backlog
	writeConsole(second)
	waitFollowed := func(msg string) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case e := <-followed:
				if e.Message == msg {
					return
				}
			case err := <-followErr:
				t.Fatalf("follow ended before %s: %v", msg, err)
			case <-deadline:
				t.Fatalf("follow did not see %s", msg)
			}
		}
	}
	waitFollowed(second)
	cliFollow.waitFor(t, second)

	// Pause and resume: the log stays, a follower waits through both,
	// and the resumed guest goes on writing to it.
	cp.Must(t, 200, "POST", "/v1/sandboxes/"+sb.ID+"/pause", key, nil)
	if es := read(""); find(es, first) == nil || find(es, second) == nil {
		t.Errorf("the log of the paused sandbox: %+v", es)
	}
	cp.Must(t, 200, "POST", "/v1/sandboxes/"+sb.ID+"/resume", key, map[string]any{"timeout_seconds": 600})
	third := randomMarker("after-resume")
	writeConsole(third)
	waitFollowed(third)
	if es := read(""); find(es, first) == nil || find(es, "envd listening") == nil || find(es, third) == nil {
		t.Errorf("the log after resume: %+v", es)
	}

	// Kill: the followers end, the log is gone, and so are its files.
	cp.Must(t, 204, "DELETE", "/v1/sandboxes/"+sb.ID, key, nil)
	killed = true
	select {
	case err := <-followErr:
		if err != nil {
			t.Errorf("follow of a killed sandbox ended with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("follow went on after the sandbox was killed")
	}
	if code := cliFollow.wait(t); code != 0 {
		t.Errorf("wrenn logs -f of a killed sandbox exited %d:\n%s", code, cliFollow.output())
	}
	if r, _ := cp.Do("GET", logsPath, key, nil); r.Status != 404 {
		t.Errorf("the log of a killed sandbox: %s", r)
	}
	if _, err := os.Stat(filepath.Join(s.agent.stateDir, "sandboxes", sb.ID)); !os.IsNotExist(err) {
		t.Errorf("the killed sandbox's directory: %v", err)
	}
}
