package codeinterp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/envd"
)

// These tests run the server against real IPython kernels: Debian's
// python3-ipykernel, which scripts/setup installs.

type testServer struct {
	srv    *Server
	url    string
	runDir string
	cwd    string
}

func pythonKernel(t *testing.T) Languages {
	t.Helper()
	langs, err := FindLanguages(KernelSpecDirs)
	if err != nil {
		t.Fatal(err)
	}
	if langs["python"] == nil {
		t.Skip("no Python kernel spec in " + strings.Join(KernelSpecDirs, ", ") + ": install python3-ipykernel (scripts/setup does)")
	}
	return langs
}

func startServer(t *testing.T, envdURL string) *testServer {
	t.Helper()
	langs := pythonKernel(t)
	ts := &testServer{runDir: filepath.Join(t.TempDir(), "run"), cwd: t.TempDir()}
	srv, err := New(Config{Languages: langs, DefaultCwd: ts.cwd, RunDir: ts.runDir, Env: os.Environ(), EnvdURL: envdURL})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	hs := httptest.NewServer(srv.Handler())
	ts.srv, ts.url = srv, hs.URL
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
		ts.assertNoKernels(t)
	})
	select {
	case <-srv.Ready():
	case <-time.After(2 * time.Minute):
		t.Fatal("the default context did not start")
	}
	if resp, err := http.Get(ts.url + "/health"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("health: %v %v", resp, err)
	}
	return ts
}

// assertNoKernels checks that no kernel process and no kernel directory
// of this server is left.
func (ts *testServer) assertNoKernels(t *testing.T) {
	t.Helper()
	if dirs, _ := filepath.Glob(filepath.Join(ts.runDir, "kernel-*")); len(dirs) > 0 {
		t.Errorf("kernel directories left: %v", dirs)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte(ts.runDir)) {
			t.Errorf("a kernel process is left: %s %q", p, b)
		}
	}
}

type execResult struct {
	status int
	body   string
	lines  []map[string]any
}

func (r execResult) of(typ string) []map[string]any {
	var out []map[string]any
	for _, l := range r.lines {
		if l["type"] == typ {
			out = append(out, l)
		}
	}
	return out
}

func (r execResult) text(typ string) string {
	var b strings.Builder
	for _, l := range r.of(typ) {
		b.WriteString(l["text"].(string))
	}
	return b.String()
}

func (r execResult) main() map[string]any {
	for _, l := range r.of("result") {
		if l["is_main_result"] == true {
			return l
		}
	}
	return nil
}

func (ts *testServer) exec(t *testing.T, ctx context.Context, body map[string]any, header ...string) execResult {
	t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx, "POST", ts.url+"/execute", bytes.NewReader(raw))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	res := execResult{status: resp.StatusCode}
	if resp.StatusCode != 200 {
		b, _ := ioReadAll(resp)
		res.body = b
		return res
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("not a JSON line: %q", sc.Text())
		}
		res.lines = append(res.lines, l)
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	return res
}

func ioReadAll(resp *http.Response) (string, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(resp.Body)
	return b.String(), err
}

func (ts *testServer) run(t *testing.T, code string, extra ...any) execResult {
	t.Helper()
	body := map[string]any{"code": code}
	for i := 0; i+1 < len(extra); i += 2 {
		body[extra[i].(string)] = extra[i+1]
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := ts.exec(t, ctx, body)
	if r.status != 200 {
		t.Fatalf("execute %q: %d %s", code, r.status, r.body)
	}
	if last := r.lines[len(r.lines)-1]; last["type"] != "end_of_execution" {
		t.Fatalf("the stream does not end with end_of_execution: %v", r.lines)
	}
	return r
}

func TestExecuteStreamsOutputResultsAndErrors(t *testing.T) {
	ts := startServer(t, "")

	ts.run(t, "x = 1")
	r := ts.run(t, "x + 1")
	if m := r.main(); m == nil || m["text"] != "2" {
		t.Fatalf("x + 1: %v", r.lines)
	}
	if n := r.of("number_of_executions"); len(n) != 1 || n[0]["execution_count"].(float64) != 2 {
		t.Errorf("execution count: %v", r.lines)
	}

	// stdout and stderr interleave in the order the code wrote them.
	r = ts.run(t, "import sys, time\nfor i in range(3):\n    print('out', i, flush=True)\n    time.sleep(0.2)\n    print('err', i, file=sys.stderr, flush=True)\n    time.sleep(0.2)")
	var seq []string
	for _, l := range r.lines {
		if l["type"] == "stdout" || l["type"] == "stderr" {
			seq = append(seq, strings.TrimSpace(l["text"].(string)))
			if _, err := time.Parse(time.RFC3339Nano, l["timestamp"].(string)); err != nil {
				t.Errorf("timestamp %v: %v", l["timestamp"], err)
			}
		}
	}
	if strings.Join(seq, ",") != "out 0,err 0,out 1,err 1,out 2,err 2" {
		t.Errorf("stream order: %q", seq)
	}

	// Rich results: every format Jupyter display data carries.
	r = ts.run(t, `from IPython.display import display, HTML, Markdown, SVG, Latex, JSON, Javascript, Image
import base64
png = base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==')
display(HTML('<b>bold</b>'))
display(Markdown('# title'))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg"/>'))
display(Latex(r'$\alpha$'))
display(JSON({'a': [1, 2]}))
display(Javascript('1+1'))
display(Image(data=png, format='png'))
display({'application/x-custom': 'c'}, raw=True)
'done'`)
	res := r.of("result")
	want := []string{"html", "markdown", "svg", "latex", "json", "javascript", "png", "extra"}
	if len(res) != len(want)+1 {
		t.Fatalf("results: %v", res)
	}
	for i, field := range want {
		if res[i][field] == nil || res[i]["is_main_result"] != false {
			t.Errorf("result %d has no %s: %v", i, field, res[i])
		}
	}
	if res[0]["html"] != "<b>bold</b>" || res[4]["json"].(map[string]any)["a"] == nil {
		t.Errorf("html/json: %v %v", res[0], res[4])
	}
	if !strings.HasPrefix(res[6]["png"].(string), "iVBORw0KGgo") {
		t.Errorf("png: %v", res[6])
	}
	if res[7]["extra"].(map[string]any)["application/x-custom"] != "c" {
		t.Errorf("extra: %v", res[7])
	}
	if m := r.main(); m["text"] != "done" {
		t.Errorf("a string's result loses its quotes: %v", m)
	}

	// An exception: name, value and the traceback, without colour codes.
	r = ts.run(t, "def f():\n    return 1 / 0\nf()")
	errs := r.of("error")
	if len(errs) != 1 || errs[0]["name"] != "ZeroDivisionError" || errs[0]["value"] != "division by zero" {
		t.Fatalf("error: %v", r.lines)
	}
	tb := errs[0]["traceback"].(string)
	if !strings.Contains(tb, "1 / 0") || strings.Contains(tb, "\x1b[") {
		t.Errorf("traceback: %q", tb)
	}
	if len(r.of("result")) != 0 {
		t.Errorf("a failed cell has no result: %v", r.lines)
	}
	// Variables survive an error, and a call right after a failed one
	// runs (the kernel does not abort it).
	for i := 0; i < 20; i++ {
		if r := ts.run(t, "x"); r.main()["text"] != "1" {
			t.Fatalf("x after an error: %v", r.lines)
		}
		ts.run(t, "1/0")
	}
}

func TestDisconnectInterruptsTheKernel(t *testing.T) {
	ts := startServer(t, "")
	ts.run(t, "y = 'kept'")
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := ts.exec(t, ctx, map[string]any{"code": "import time\nprint('looping', flush=True)\nwhile True:\n    time.sleep(0.01)"})
	if ctx.Err() == nil {
		t.Fatalf("the infinite loop ended by itself: %v", r.lines)
	}
	if r.text("stdout") != "looping\n" {
		t.Errorf("output before the timeout: %v", r.lines)
	}
	// The next call runs at once on the same kernel, with its variables.
	r = ts.run(t, "y")
	if m := r.main(); m == nil || m["text"] != "kept" {
		t.Fatalf("after the interrupt: %v", r.lines)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the next call waited %s", d)
	}
	// A loop that swallows the first KeyboardInterrupt is interrupted again.
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ts.exec(t, ctx, map[string]any{"code": "import time\ntry:\n    while True: time.sleep(0.01)\nexcept KeyboardInterrupt:\n    pass\nwhile True: time.sleep(0.01)"})
	if m := ts.run(t, "y").main(); m == nil || m["text"] != "kept" {
		t.Fatalf("after two interrupts: %v", m)
	}
}

func TestContexts(t *testing.T) {
	ts := startServer(t, "")
	dir := t.TempDir()
	resp, body := ts.call(t, "POST", "/contexts", `{"language": "python", "cwd": "`+dir+`"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	var c struct{ ID, Language, Cwd string }
	json.Unmarshal([]byte(body), &c)
	if c.ID == "" || c.Language != "python" || c.Cwd != dir {
		t.Fatalf("context: %s", body)
	}
	if m := ts.run(t, "import os; os.getcwd()", "context_id", c.ID).main(); m["text"] != dir {
		t.Errorf("cwd: %v", m)
	}
	// Variables stay in their context.
	ts.run(t, "v = 'default'")
	ts.run(t, "v = 'mine'", "context_id", c.ID)
	if m := ts.run(t, "v").main(); m["text"] != "default" {
		t.Errorf("default context: %v", m)
	}
	if m := ts.run(t, "v", "context_id", c.ID).main(); m["text"] != "mine" {
		t.Errorf("own context: %v", m)
	}
	// The language's default context is the default one.
	if m := ts.run(t, "v", "language", "python").main(); m["text"] != "default" {
		t.Errorf("language python: %v", m)
	}

	resp, body = ts.call(t, "GET", "/contexts", "")
	var list []struct{ ID, Language, Cwd string }
	json.Unmarshal([]byte(body), &list)
	if resp.StatusCode != 200 || len(list) != 2 || list[1].ID != c.ID || list[0].Cwd != ts.cwd {
		t.Fatalf("list: %d %s", resp.StatusCode, body)
	}

	// Restart: same context, no variables.
	if resp, body := ts.call(t, "POST", "/contexts/"+c.ID+"/restart", ""); resp.StatusCode != 204 {
		t.Fatalf("restart: %d %s", resp.StatusCode, body)
	}
	r := ts.run(t, "v", "context_id", c.ID)
	if e := r.of("error"); len(e) != 1 || e[0]["name"] != "NameError" {
		t.Errorf("after restart: %v", r.lines)
	}
	if m := ts.run(t, "import os; os.getcwd()", "context_id", c.ID).main(); m["text"] != dir {
		t.Errorf("cwd after restart: %v", m)
	}

	// Remove: gone from the list, its executions are 404, its kernel stops.
	if resp, body := ts.call(t, "DELETE", "/contexts/"+c.ID, ""); resp.StatusCode != 204 {
		t.Fatalf("remove: %d %s", resp.StatusCode, body)
	}
	if r := ts.exec(t, context.Background(), map[string]any{"code": "1", "context_id": c.ID}); r.status != 404 {
		t.Errorf("execute in a removed context: %d %s", r.status, r.body)
	}
	for _, call := range [][2]string{{"DELETE", "/contexts/" + c.ID}, {"POST", "/contexts/" + c.ID + "/restart"}} {
		if resp, _ := ts.call(t, call[0], call[1], ""); resp.StatusCode != 404 {
			t.Errorf("%s %s: %d", call[0], call[1], resp.StatusCode)
		}
	}
	_, body = ts.call(t, "GET", "/contexts", "")
	if strings.Contains(body, c.ID) {
		t.Errorf("listed after removal: %s", body)
	}

	// Bad requests name what is wrong.
	for _, tc := range []struct {
		method, path, body string
		status             int
		says               string
	}{
		{"POST", "/contexts", `{"language": "cobol"}`, 400, `"cobol" has no kernel`},
		{"POST", "/contexts", `{"cwd": "/no/such/dir"}`, 400, "no such directory"},
		{"POST", "/contexts", `{"cwd": "relative"}`, 400, "absolute"},
		{"POST", "/contexts", `{"language": "python", "colour": "blue"}`, 400, `unknown field "colour"`},
		{"POST", "/execute", `{"code": "1", "context_id": "x", "language": "python"}`, 400, "not both"},
		{"POST", "/execute", `{"context_id": "x"}`, 400, "code is required"},
		{"POST", "/execute", `{"code": "1", "language": "javascript"}`, 400, "available: python"},
		{"POST", "/execute", `{"code": "1", "timeout": 3}`, 400, `unknown field "timeout"`},
		{"POST", "/execute", `{"code": "1", "context_id": "nope"}`, 404, "context nope not found"},
		{"POST", "/execute", `{"code": `, 400, "malformed JSON"},
	} {
		resp, body := ts.call(t, tc.method, tc.path, tc.body)
		if resp.StatusCode != tc.status || !strings.Contains(body, tc.says) {
			t.Errorf("%s %s %s: %d %q", tc.method, tc.path, tc.body, resp.StatusCode, body)
		}
	}
}

func (ts *testServer) call(t *testing.T, method, path, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, ts.url+path, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := ioReadAll(resp)
	return resp, b
}

func TestKernelDeathIsReportedAndRecovered(t *testing.T) {
	ts := startServer(t, "")
	ts.run(t, "z = 1")
	r := ts.run(t, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
	if e := r.of("error"); len(e) != 1 || e[0]["name"] != "KernelDied" {
		t.Fatalf("killed kernel: %v", r.lines)
	}
	r = ts.run(t, "z")
	if e := r.of("error"); len(e) != 1 || e[0]["name"] != "NameError" {
		t.Fatalf("a new kernel without the old variables: %v", r.lines)
	}
	if r := ts.run(t, "6 * 7"); r.main()["text"] != "42" {
		t.Fatalf("after the restart: %v", r.lines)
	}
}

func TestRestartEndsARunningExecution(t *testing.T) {
	ts := startServer(t, "")
	done := make(chan execResult, 1)
	go func() {
		done <- ts.exec(t, context.Background(), map[string]any{"code": "import time\nprint('started', flush=True)\ntime.sleep(600)"})
	}()
	// Wait until it runs, then restart the default context under it.
	deadline := time.Now().Add(time.Minute)
	var id string
	for id == "" && time.Now().Before(deadline) {
		_, body := ts.call(t, "GET", "/contexts", "")
		var list []struct{ ID string }
		json.Unmarshal([]byte(body), &list)
		id = list[0].ID
	}
	time.Sleep(500 * time.Millisecond)
	if resp, body := ts.call(t, "POST", "/contexts/"+id+"/restart", ""); resp.StatusCode != 204 {
		t.Fatalf("restart: %d %s", resp.StatusCode, body)
	}
	select {
	case r := <-done:
		if e := r.of("error"); len(e) != 1 || e[0]["name"] != "ContextRestarting" {
			t.Fatalf("the running execution: %v", r.lines)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the running execution did not end with the restart")
	}
	if m := ts.run(t, "1 + 1").main(); m["text"] != "2" {
		t.Fatalf("after the restart: %v", m)
	}
}

// A real envd (local mode) holds the sandbox's access token and variables.
func TestAccessTokenAndEnvVars(t *testing.T) {
	e, err := envd.New(envd.Config{Local: true})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.Serve(ln)
	t.Cleanup(func() { e.Shutdown(context.Background()) })
	envdURL := "http://" + ln.Addr().String()
	resp, err := http.Post(envdURL+"/init", "application/json", strings.NewReader(`{"accessToken": "secret-token", "envVars": {"GREETING": "hi", "SHARED": "sandbox"}}`))
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("envd init: %v %v", resp, err)
	}
	ts := startServer(t, envdURL)

	for _, tok := range []string{"", "wrong"} {
		r := ts.exec(t, context.Background(), map[string]any{"code": "1"}, "X-Access-Token", tok)
		if r.status != 401 || !strings.Contains(r.body, "access token") {
			t.Errorf("token %q: %d %s", tok, r.status, r.body)
		}
	}
	run := func(code string, env map[string]string) execResult {
		body := map[string]any{"code": code}
		if env != nil {
			body["env_vars"] = env
		}
		r := ts.exec(t, context.Background(), body, "X-Access-Token", "secret-token")
		if r.status != 200 {
			t.Fatalf("%q: %d %s", code, r.status, r.body)
		}
		return r
	}
	show := "import os; print(os.environ.get('GREETING'), os.environ.get('SHARED'), os.environ.get('ONLY_NOW'), os.environ.get('E2B_SANDBOX'))"
	if out := run(show, nil).text("stdout"); out != "hi sandbox None true\n" {
		t.Errorf("sandbox variables: %q", out)
	}
	odd := "quote ' \" back \\ newline \n unicode é"
	r := run(show+"; print(os.environ['ODD'] == "+strconv.Quote(odd)+")", map[string]string{"SHARED": "call", "ONLY_NOW": "yes", "ODD": odd})
	if out := r.text("stdout"); out != "hi call yes true\nTrue\n" {
		t.Errorf("call variables: %q %v", out, r.lines)
	}
	if n := r.of("number_of_executions"); len(n) != 1 {
		t.Errorf("setting variables is not an execution of its own: %v", r.lines)
	}
	if out := run(show+"; print('ODD' in os.environ)", nil).text("stdout"); out != "hi sandbox None true\nFalse\n" {
		t.Errorf("after the call: %q", out)
	}
}

func TestEnvCode(t *testing.T) {
	py, err := envCode("python", map[string]string{"B": "2", "A": "x\"y"}, []string{"C"})
	if err != nil || py != "__import__('os').environ.update({\"A\": \"x\\\"y\", \"B\": \"2\"})\n__import__('os').environ.pop(\"C\", None)\n" {
		t.Errorf("python: %q %v", py, err)
	}
	r, err := envCode("r", map[string]string{"A": "1"}, []string{"B", "C"})
	if err != nil || r != "invisible(Sys.setenv(\"A\" = \"1\"))\ninvisible(Sys.unsetenv(c(\"B\", \"C\")))\n" {
		t.Errorf("r: %q %v", r, err)
	}
	if _, err := envCode("java", map[string]string{"A": "1"}, nil); err == nil {
		t.Error("java: no error")
	}
}

func TestNoPythonKernel(t *testing.T) {
	_, err := New(Config{Languages: Languages{}, RunDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "python3-ipykernel") {
		t.Errorf("without a Python kernel: %v", err)
	}
}
