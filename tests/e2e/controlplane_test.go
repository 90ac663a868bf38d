package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/google/uuid"

	"git.omukk.dev/wrenn/sandbox/internal/cptest"
	"git.omukk.dev/wrenn/sandbox/internal/waitfor"
	"git.omukk.dev/wrenn/sandbox/pkg/config"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
	"git.omukk.dev/wrenn/sandbox/proto/hostagent/v1/hostagentv1connect"
)

// cpAgent is an agent registered with a control plane.
type cpAgent struct {
	*agent
	hostID string
}

// startCPAgent runs an agent that registers with cp using a fresh token
// and talks to it from then on.
func startCPAgent(t *testing.T, cp *cptest.CP, adminToken string, partition int, rt string, extraArgs ...string) *cpAgent {
	t.Helper()
	tok := cp.Must(t, 201, "POST", "/v1/hosts/tokens", adminToken, nil).Map()["token"].(string)
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	a := launchAgent(t, "", nil, append([]string{"--runtime", rt, "--control-plane", cp.URL, "--registration-token-file", tokFile,
		"--network-partition", fmt.Sprint(partition)}, extraArgs...)...)
	var creds struct {
		HostID string `json:"host_id"`
	}
	waitfor.NoError(t, 30*time.Second, "the agent to register", func() error {
		b, err := os.ReadFile(filepath.Join(a.stateDir, "control-plane.json"))
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &creds)
	})
	a.waitServing(t, asControlPlane(t, cp, creds.HostID, a.addr))
	waitfor.True(t, 30*time.Second, "host "+creds.HostID+" ready", func() bool {
		h := cp.Must(t, 200, "GET", "/v1/hosts/"+creds.HostID, adminToken, nil).Map()
		return h["status"] == "ready" && strings.Contains(fmt.Sprint(h["templates"]), "minimal")
	})
	return &cpAgent{agent: a, hostID: creds.HostID}
}

// asControlPlane is a client of host hostID's agent at addr that calls it
// as the control plane does, over mutual TLS.
func asControlPlane(t *testing.T, cp *cptest.CP, hostID, addr string) hostagentv1connect.HostAgentServiceClient {
	t.Helper()
	c, err := cp.AgentClient(context.Background(), hostID, addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type sbView struct {
	ID, State, Template, Error string
	HostID                     string `json:"host_id"`
	HostStatus                 string `json:"host_status"`
	EnvdAccessToken            string `json:"envd_access_token"`
	Metadata                   map[string]string
}

func sandboxOf(t *testing.T, r cptest.Response) sbView {
	t.Helper()
	var v sbView
	if err := r.JSON(&v); err != nil {
		t.Fatalf("decode sandbox %s: %v", r, err)
	}
	return v
}

func (cpa *cpAgent) has(t *testing.T, sandboxID string) bool {
	_, err := cpa.client.GetSandbox(context.Background(), connect.NewRequest(&pb.GetSandboxRequest{SandboxId: sandboxID}))
	return err == nil
}

// fastClocks makes a test control plane notice lost hosts and reconcile
// within seconds.
func fastClocks(c *config.Config) {
	c.HeartbeatTimeout = 3 * time.Second
	c.ReconcileInterval = time.Second
	c.TransitionGrace = 2 * time.Second
}

// tuneCP makes a test control plane notice lost hosts and reconcile
// within seconds, and route sandbox traffic by Host under sandbox.test.
func tuneCP(c *config.Config) {
	fastClocks(c)
	c.SandboxDomain = "sandbox.test"
}

// cpStack is a control plane on a database of its own, with gVisor agents
// registered with it. Each control plane test starts its own, so that it
// runs alone or in any order.
type cpStack struct {
	cp     *cptest.CP
	secret []byte
	log    *slog.Logger
	admin  cptest.Account
	hosts  []*cpAgent
}

// startStack starts a stack with an agent on each network partition
// given. Its cleanup checks that the test left no sandbox, then stops the
// agents and checks that they left nothing on the host.
func startStack(t *testing.T, partitions ...int) *cpStack {
	t.Helper()
	return startStackArgs(t, nil, partitions...)
}

// startStackArgs is startStack with extra flags for every agent.
func startStackArgs(t *testing.T, agentArgs []string, partitions ...int) *cpStack {
	t.Helper()
	requireVMs(t)
	requireRunsc(t)
	pg := requirePostgres(t)
	st := &cpStack{secret: make([]byte, 32)}
	rand.Read(st.secret)
	logw := &syncWriter{w: &bytes.Buffer{}}
	st.log = slog.New(slog.NewTextHandler(logw, nil))
	cp, err := pg.Start(context.Background(), cptest.Options{Secret: st.secret, Tune: tuneCP, Log: st.log})
	if err != nil {
		t.Fatal(err)
	}
	st.cp = cp
	t.Cleanup(func() {
		_ = st.cp.Stop()
		if t.Failed() {
			logw.mu.Lock()
			t.Logf("control plane log:\n%s", logw.w.String())
			logw.mu.Unlock()
		}
	})
	st.admin = cp.Admin(t, "admin@example.com")
	for _, p := range partitions {
		st.hosts = append(st.hosts, startCPAgent(t, cp, st.admin.Token, p, "gvisor", agentArgs...))
	}
	t.Cleanup(func() { st.checkNothingLeft(t) })
	return st
}

func (st *cpStack) checkNothingLeft(t *testing.T) {
	if !t.Failed() {
		var live []sbView
		_ = st.cp.Must(t, 200, "GET", "/v1/admin/sandboxes", st.admin.Token, nil).JSON(&live)
		if len(live) != 0 {
			t.Errorf("sandboxes left: %+v", live)
		}
		for _, h := range st.hosts {
			res, err := h.client.ListSandboxes(context.Background(), connect.NewRequest(&pb.ListSandboxesRequest{}))
			if err != nil || len(res.Msg.GetSandboxes()) != 0 {
				t.Errorf("host %s still runs %v (%v)", h.hostID, res, err)
			}
		}
	}
	// Every agent stops before any is checked: the checks see the whole host.
	for _, h := range st.hosts {
		h.stop(t, syscall.SIGTERM)
	}
	for _, h := range st.hosts {
		assertNoLeftovers(t, h.stateDir)
	}
}

// key signs up a user and returns an API key of their team.
func (st *cpStack) key(t *testing.T, email string) string {
	t.Helper()
	return st.cp.APIKey(t, st.cp.Signup(t, email))
}

// sandbox creates a running sandbox with the given key; the test's end
// destroys it through the API.
func (st *cpStack) sandbox(t *testing.T, key string) sbView {
	t.Helper()
	sb := sandboxOf(t, st.cp.Must(t, 201, "POST", "/v1/sandboxes", key, map[string]any{"template": "minimal", "timeout_seconds": 600}))
	if sb.State != "running" {
		t.Fatalf("created: %+v", sb)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			st.cp.Must(t, 204, "DELETE", "/v1/sandboxes/"+sb.ID, key, nil)
		}
	})
	return sb
}

// teams signs up two users in teams of their own and returns their keys.
func (st *cpStack) teams(t *testing.T) (a, b string) {
	t.Helper()
	return st.key(t, "alice@example.com"), st.key(t, "bob@example.com")
}

// reconciled returns after a reconciler pass that began after the call
// has gone over host h: it makes a sandbox on h behind the control
// plane's back and waits until the host reports it unknown, which a pass
// does last; then the sandbox goes.
func (st *cpStack) reconciled(t *testing.T, h *cpAgent) {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	marker := "marker-" + hex.EncodeToString(b)
	create(t, h.agent, marker, nil)
	waitfor.True(t, 15*time.Second, "a reconciler pass over host "+h.hostID, func() bool {
		v := st.cp.Must(t, 200, "GET", "/v1/hosts/"+h.hostID, st.admin.Token, nil).Map()
		return strings.Contains(fmt.Sprint(v["unknown_sandboxes"]), marker)
	})
	if _, err := h.client.DestroySandbox(context.Background(), connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: marker})); err != nil {
		t.Fatal(err)
	}
}

// A sandbox through the REST API as a user would use it: create with
// metadata and env vars, filtered lists, exec, a streamed file round trip,
// file listing and removal, metrics, timeouts, bad input.
func TestControlPlaneSandboxLifecycle(t *testing.T) {
	st := startStack(t, 1)
	cp := st.cp
	ka := st.key(t, "alice@example.com")
	sb := sandboxOf(t, cp.Must(t, 201, "POST", "/v1/sandboxes", ka, map[string]any{
		"template": "minimal", "timeout_seconds": 600, "metadata": map[string]string{"purpose": "e2e"}, "env_vars": map[string]string{"FROM_CP": "yes"},
	}))
	if sb.State != "running" || sb.EnvdAccessToken == "" || sb.HostStatus != "ready" {
		t.Fatalf("created: %+v", sb)
	}
	var list []sbView
	_ = cp.Must(t, 200, "GET", "/v1/sandboxes?metadata=purpose%3De2e&state=running", ka, nil).JSON(&list)
	if len(list) != 1 || list[0].ID != sb.ID {
		t.Fatalf("filtered list: %+v", list)
	}
	_ = cp.Must(t, 200, "GET", "/v1/sandboxes?metadata=purpose%3Dother", ka, nil).JSON(&list)
	if len(list) != 0 {
		t.Fatalf("metadata filter matched: %+v", list)
	}
	x := cp.Must(t, 200, "POST", "/v1/sandboxes/"+sb.ID+"/exec", ka, map[string]any{"cmd": "/bin/sh", "args": []string{"-c", "echo $FROM_CP; echo oops >&2; exit 3"}}).Map()
	if x["stdout"] != "yes\n" || x["stderr"] != "oops\n" || x["exit_code"] != float64(3) {
		t.Fatalf("exec: %v", x)
	}
	// Files: a streamed 24 MiB round trip, list, mkdir, remove.
	data := make([]byte, 24<<20)
	rand.Read(data)
	cp.Must(t, 200, "PUT", "/v1/sandboxes/"+sb.ID+"/files?path=/tmp/big.bin", ka, data)
	got := cp.Must(t, 200, "GET", "/v1/sandboxes/"+sb.ID+"/files?path=/tmp/big.bin", ka, nil)
	if !bytes.Equal(got.Body, data) {
		t.Fatalf("download differs: %d bytes", len(got.Body))
	}
	if r, _ := cp.Do("GET", "/v1/sandboxes/"+sb.ID+"/files?path=/no/such/file", ka, nil); r.Status != 404 {
		t.Errorf("missing file: %s", r)
	}
	// A path the sandbox's default user may not touch: envd refuses it
	// (403), and the API says forbidden, not that the host failed.
	if r, _ := cp.Do("PUT", "/v1/sandboxes/"+sb.ID+"/files?path=/root/not-yours", ka, []byte("x")); r.Status != 403 || r.Code() != "forbidden" {
		t.Errorf("a file in /root as the default user: %s", r)
	}
	cp.Must(t, 201, "POST", "/v1/sandboxes/"+sb.ID+"/files/mkdir?path=/tmp/d/e", ka, nil)
	var entries []struct {
		Name  string
		IsDir bool `json:"is_dir"`
		Size  int64
	}
	_ = cp.Must(t, 200, "GET", "/v1/sandboxes/"+sb.ID+"/files/list?path=/tmp", ka, nil).JSON(&entries)
	seen := map[string]bool{}
	for _, e := range entries {
		seen[e.Name] = true
		if e.Name == "big.bin" && e.Size != int64(len(data)) {
			t.Errorf("listed size %d", e.Size)
		}
	}
	if !seen["big.bin"] || !seen["d"] {
		t.Errorf("listing: %+v", entries)
	}
	cp.Must(t, 204, "DELETE", "/v1/sandboxes/"+sb.ID+"/files?path=/tmp/d", ka, nil)
	cp.Must(t, 200, "GET", "/v1/sandboxes/"+sb.ID+"/metrics", ka, nil)
	cp.Must(t, 200, "POST", "/v1/sandboxes/"+sb.ID+"/timeout", ka, map[string]any{"timeout_seconds": 900})
	if r, _ := cp.Do("POST", "/v1/sandboxes/"+sb.ID+"/timeout", ka, map[string]any{"timeout_seconds": 0}); r.Status != 400 {
		t.Errorf("zero timeout: %s", r)
	}
	if r, _ := cp.Do("POST", "/v1/sandboxes/"+sb.ID+"/exec", ka, map[string]any{}); r.Status != 400 {
		t.Errorf("exec without cmd: %s", r)
	}
	cp.Must(t, 204, "DELETE", "/v1/sandboxes/"+sb.ID, ka, nil)
}

// Exec and terminal streams over WebSockets, authenticated by query token
// or header; bad credentials never upgrade.
func TestControlPlaneWebSockets(t *testing.T) {
	st := startStack(t, 1)
	cp := st.cp
	ka, kb := st.teams(t)
	sb := st.sandbox(t, ka)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	wsURL := "ws" + strings.TrimPrefix(cp.URL, "http") + "/v1/ws/sandboxes/" + sb.ID
	// Exec stream, authenticated by ?token= as a browser would.
	c, _, err := websocket.Dial(ctx, wsURL+"/exec?"+url.Values{"cmd": {"/bin/sh"}, "arg": {"-c", "echo out; echo err >&2; exit 4"}, "token": {ka}}.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var events []map[string]any
	for {
		var ev map[string]any
		if err := wsjson.Read(ctx, c, &ev); err != nil {
			break
		}
		events = append(events, ev)
	}
	c.CloseNow()
	text := fmt.Sprint(events)
	if len(events) < 4 || events[0]["type"] != "start" || !strings.Contains(text, "out") || !strings.Contains(text, "err") || events[len(events)-1]["exit_code"] != float64(4) {
		t.Fatalf("exec events: %v", events)
	}
	// Terminal with the key in a header: input, output, resize, the
	// process listed, kill.
	c, _, err = websocket.Dial(ctx, wsURL+"/pty?cols=100&rows=30", &websocket.DialOptions{HTTPHeader: http.Header{"X-API-Key": {ka}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	var started map[string]any
	if err := wsjson.Read(ctx, c, &started); err != nil || started["type"] != "started" {
		t.Fatalf("started: %v %v", started, err)
	}
	pid := started["pid"].(float64)
	var procs []struct{ PID float64 }
	_ = cp.Must(t, 200, "GET", "/v1/sandboxes/"+sb.ID+"/processes", ka, nil).JSON(&procs)
	found := false
	for _, p := range procs {
		found = found || p.PID == pid
	}
	if !found {
		t.Errorf("terminal %v not in processes %+v", pid, procs)
	}
	_ = wsjson.Write(ctx, c, map[string]any{"type": "resize", "cols": 120, "rows": 40})
	_ = c.Write(ctx, websocket.MessageBinary, []byte("stty size; echo hi-$((6*7))\n"))
	var out strings.Builder
	for !strings.Contains(out.String(), "hi-42") || !strings.Contains(out.String(), "40 120") {
		typ, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("pty read: %v; output so far %q", err, out.String())
		}
		if typ == websocket.MessageBinary {
			out.Write(b)
		}
	}
	_ = wsjson.Write(ctx, c, map[string]any{"type": "kill"})
	for {
		typ, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("no exit event after kill: %v", err)
		}
		var ev map[string]any
		if typ == websocket.MessageText && json.Unmarshal(b, &ev) == nil && ev["type"] == "exit" {
			break
		}
	}
	// Bad credentials never upgrade.
	if _, res, err := websocket.Dial(ctx, wsURL+"/pty?token="+kb, nil); err == nil || res == nil || res.StatusCode != 404 {
		t.Errorf("another team's key on the terminal: %v %v", res, err)
	}
	if _, res, err := websocket.Dial(ctx, wsURL+"/pty?token=e2b_00", nil); err == nil || res == nil || res.StatusCode != 401 {
		t.Errorf("bad token on the terminal: %v %v", res, err)
	}
}

// Another team can neither see nor touch a sandbox, and its attempts are
// audited in its own log only.
func TestControlPlaneTeamIsolation(t *testing.T) {
	st := startStack(t, 1)
	cp := st.cp
	ka, kb := st.teams(t)
	sb := st.sandbox(t, ka)
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", "", nil}, {"DELETE", "", nil}, {"POST", "/exec", map[string]any{"cmd": "id"}}, {"POST", "/pause", nil},
		{"POST", "/resume", nil}, {"POST", "/timeout", map[string]any{"timeout_seconds": 5}}, {"GET", "/metrics", nil},
		{"GET", "/processes", nil}, {"GET", "/files?path=/tmp/big.bin", nil}, {"PUT", "/files?path=/tmp/x", []byte("x")},
		{"DELETE", "/files?path=/tmp/big.bin", nil}, {"GET", "/files/list?path=/", nil}, {"POST", "/files/mkdir?path=/tmp/y", nil},
	} {
		if r, _ := cp.Do(c.method, "/v1/sandboxes/"+sb.ID+c.path, kb, c.body); r.Status != 404 {
			t.Errorf("team B %s %s on A's sandbox: %s", c.method, c.path, r)
		}
	}
	if r, _ := cp.Do("POST", "/v1/snapshots", kb, map[string]any{"sandbox_id": sb.ID, "name": "steal"}); r.Status != 404 {
		t.Errorf("team B snapshots A's sandbox: %s", r)
	}
	var list []sbView
	_ = cp.Must(t, 200, "GET", "/v1/sandboxes?include_stopped=true", kb, nil).JSON(&list)
	if len(list) != 0 {
		t.Errorf("team B lists: %+v", list)
	}
	// B's log has B's failed attempts, A's has none of them, and
	// neither shows the other's actors.
	var entries []struct {
		ActorID string `json:"actor_id"`
		Action  string
		Result  string
	}
	_ = cp.Must(t, 200, "GET", "/v1/audit?resource_id="+sb.ID, kb, nil).JSON(&entries)
	for _, e := range entries {
		if e.Result != "error" || strings.HasPrefix(e.ActorID, "usr-") {
			t.Errorf("team B's log shows %+v", e)
		}
	}
	if len(entries) < 9 {
		t.Errorf("team B's attempts not audited: %d entries", len(entries))
	}
	bActors := map[string]bool{}
	for _, e := range entries {
		bActors[e.ActorID] = true
	}
	_ = cp.Must(t, 200, "GET", "/v1/audit?resource_id="+sb.ID, ka, nil).JSON(&entries)
	for _, e := range entries {
		if bActors[e.ActorID] {
			t.Errorf("team A's log shows team B's call: %+v", e)
		}
	}
	// The sandbox is untouched.
	if v := sandboxOf(t, cp.Must(t, 200, "GET", "/v1/sandboxes/"+sb.ID, ka, nil)); v.State != "running" {
		t.Fatalf("after team B's attempts: %+v", v)
	}
}

// Pause and resume through the API (the reconciler leaves a paused
// sandbox alone), snapshots and clones from them, and what a snapshot in
// use refuses.
func TestControlPlanePauseResumeSnapshot(t *testing.T) {
	st := startStack(t, 1)
	cp := st.cp
	ka, kb := st.teams(t)
	sb := st.sandbox(t, ka)
	cp.Must(t, 200, "PUT", "/v1/sandboxes/"+sb.ID+"/files?path=/home/user/kept.txt", ka, []byte("kept across pause"))
	if v := sandboxOf(t, cp.Must(t, 200, "POST", "/v1/sandboxes/"+sb.ID+"/pause", ka, nil)); v.State != "paused" {
		t.Fatalf("pause: %+v", v)
	}
	if r, _ := cp.Do("POST", "/v1/sandboxes/"+sb.ID+"/exec", ka, map[string]any{"cmd": "true"}); r.Status != 409 {
		t.Errorf("exec on a paused sandbox: %s", r)
	}
	if r, _ := cp.Do("POST", "/v1/sandboxes/"+sb.ID+"/pause", ka, nil); r.Status != 409 {
		t.Errorf("pause twice: %s", r)
	}
	// The reconciler leaves a paused sandbox paused.
	st.reconciled(t, st.hosts[0])
	if v := sandboxOf(t, cp.Must(t, 200, "GET", "/v1/sandboxes/"+sb.ID, ka, nil)); v.State != "paused" {
		t.Fatalf("paused sandbox after reconciling: %+v", v)
	}
	if v := sandboxOf(t, cp.Must(t, 200, "POST", "/v1/sandboxes/"+sb.ID+"/resume", ka, map[string]any{"timeout_seconds": 600})); v.State != "running" {
		t.Fatalf("resume: %+v", v)
	}
	cp.Must(t, 200, "POST", "/v1/sandboxes/"+sb.ID+"/resume", ka, nil) // idempotent
	if got := cp.Must(t, 200, "GET", "/v1/sandboxes/"+sb.ID+"/files?path=/home/user/kept.txt", ka, nil); string(got.Body) != "kept across pause" {
		t.Fatalf("file after resume: %q", got.Body)
	}
	snap := cp.Must(t, 201, "POST", "/v1/snapshots", ka, map[string]any{"sandbox_id": sb.ID, "name": "warm"}).Map()
	if snap["status"] != "ready" || snap["size_bytes"].(float64) <= 0 {
		t.Fatalf("snapshot: %v", snap)
	}
	if r, _ := cp.Do("POST", "/v1/snapshots", ka, map[string]any{"sandbox_id": sb.ID, "name": "warm"}); r.Status != 409 {
		t.Errorf("duplicate snapshot name: %s", r)
	}
	if r, _ := cp.Do("POST", "/v1/sandboxes", kb, map[string]any{"snapshot_id": snap["id"]}); r.Status != 404 {
		t.Errorf("team B spawns from A's snapshot: %s", r)
	}
	clone := sandboxOf(t, cp.Must(t, 201, "POST", "/v1/sandboxes", ka, map[string]any{"snapshot_id": snap["id"]}))
	if clone.HostID != sb.HostID {
		t.Errorf("clone on %s, its snapshot on %s", clone.HostID, sb.HostID)
	}
	if got := cp.Must(t, 200, "GET", "/v1/sandboxes/"+clone.ID+"/files?path=/home/user/kept.txt", ka, nil); string(got.Body) != "kept across pause" {
		t.Fatalf("file in the clone: %q", got.Body)
	}
	// A snapshot in use by a clone stays until the clone is gone.
	if r, _ := cp.Do("DELETE", "/v1/snapshots/"+snap["id"].(string), ka, nil); r.Status != 409 {
		t.Errorf("delete a snapshot in use: %s", r)
	}
	cp.Must(t, 200, "POST", "/v1/sandboxes/"+clone.ID+"/exec", ka, map[string]any{"cmd": "true"})
	cp.Must(t, 204, "DELETE", "/v1/sandboxes/"+clone.ID, ka, nil)
	cp.Must(t, 204, "DELETE", "/v1/snapshots/"+snap["id"].(string), ka, nil)
	if r, _ := cp.Do("GET", "/v1/snapshots/"+snap["id"].(string), ka, nil); r.Status != 404 {
		t.Errorf("deleted snapshot: %s", r)
	}
	if r, _ := cp.Do("DELETE", "/v1/sandboxes/"+clone.ID, ka, nil); r.Status != 409 {
		t.Errorf("destroy twice: %s", r)
	}
}

// The sandbox traffic proxy: envd's port, public and private ports, Host
// and header routing, upgrades both ways, a client that leaves, paused and
// auto-resumed sandboxes.
func TestControlPlaneProxy(t *testing.T) {
	st := startStack(t, 1)
	cp := st.cp
	ka := st.key(t, "alice@example.com")
	sb := st.sandbox(t, ka)
	call := func(host string, hdr map[string]string, port int, sandboxID string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", cp.ProxyURL+"/", nil)
		if host != "" {
			req.Host = host
		}
		if sandboxID != "" {
			req.Header.Set("E2b-Sandbox-Id", sandboxID)
			req.Header.Set("E2b-Sandbox-Port", fmt.Sprint(port))
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	errorCode := func(body string) string {
		var e struct {
			Code      int    `json:"code"`
			ErrorCode string `json:"error_code"`
		}
		_ = json.Unmarshal([]byte(body), &e)
		return fmt.Sprint(e.Code, " ", e.ErrorCode)
	}
	serve := func(id string) {
		cp.Must(t, 200, "POST", "/v1/sandboxes/"+id+"/exec", ka, map[string]any{"cmd": "/bin/sh", "args": []string{"-c",
			"mkdir -p /tmp/www && echo hello-proxy > /tmp/www/index.html && busybox httpd -p 8000 -h /tmp/www"}, "user": "root"})
	}
	// envd's port is open to the proxy but guarded by envd's own token.
	if st, body := call("", nil, 49983, sb.ID); st != 401 {
		t.Errorf("envd without its token: %d %s", st, body)
	}
	if st, body := call("", map[string]string{"X-Access-Token": sb.EnvdAccessToken}, 49983, sb.ID); st == 401 || st >= 500 {
		t.Errorf("envd with its token: %d %s", st, body)
	}
	serve(sb.ID)
	if st, body := call("", nil, 8000, sb.ID); st != 200 || !strings.Contains(body, "hello-proxy") {
		t.Errorf("public port by headers: %d %s", st, body)
	}
	if st, body := call("8000-"+sb.ID+".sandbox.test", nil, 0, ""); st != 200 || !strings.Contains(body, "hello-proxy") {
		t.Errorf("public port by Host: %d %s", st, body)
	}
	// A client's own agent headers change nothing.
	if st, body := call("", map[string]string{"X-Wrenn-Agent-Secret": "forged", "X-Wrenn-Port": "49983"}, 8000, sb.ID); st != 200 || !strings.Contains(body, "hello-proxy") {
		t.Errorf("with forged agent headers: %d %s", st, body)
	}
	for _, c := range []struct {
		name, host, sandbox string
		port                int
		want                string
	}{
		{"port not open", "", sb.ID, 8001, "502 port_not_open"},
		{"unknown sandbox", "", id.Format(id.Sandbox, uuid.New()), 8000, "502 sandbox_not_found"},
		{"malformed sandbox", "", "not-a-sandbox", 8000, "502 sandbox_not_found"},
		{"bad port", "", sb.ID, 70000, "400 invalid_port"},
		{"no route", "example.com", "", 0, "400 no_route"},
	} {
		if _, body := call(c.host, nil, c.port, c.sandbox); errorCode(body) != c.want {
			t.Errorf("%s: %s, want %s", c.name, body, c.want)
		}
	}

	// A WebSocket-style upgrade streams both ways through both proxies:
	// a server in the sandbox answers 101 and echoes what follows.
	script := "#!/bin/sh\nwhile IFS= read -r line; do\n  line=$(printf '%s' \"$line\" | tr -d '\\r')\n  [ -z \"$line\" ] && break\ndone\n" +
		"printf 'HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n\\r\\n'\nexec cat\n"
	cp.Must(t, 200, "PUT", "/v1/sandboxes/"+sb.ID+"/files?path=/tmp/ws.sh&user=root", ka, []byte(script))
	cp.Must(t, 200, "POST", "/v1/sandboxes/"+sb.ID+"/exec", ka, map[string]any{"cmd": "/bin/sh", "user": "root", "args": []string{"-c",
		"chmod +x /tmp/ws.sh && setsid busybox nc -ll -p 9000 -e /tmp/ws.sh </dev/null >/dev/null 2>&1 &"}})
	proxyAddr := strings.TrimPrefix(cp.ProxyURL, "http://")
	// The server may not listen yet: a connection is tried until one is upgraded.
	var conn net.Conn
	var br *bufio.Reader
	waitfor.True(t, 10*time.Second, "an upgraded connection through the proxy", func() bool {
		c, err := net.Dial("tcp", proxyAddr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nE2b-Sandbox-Id: %s\r\nE2b-Sandbox-Port: 9000\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", sb.ID)
		r := bufio.NewReader(c)
		if status, _ := r.ReadString('\n'); !strings.Contains(status, " 101 ") {
			c.Close()
			return false
		}
		conn, br = c, r
		return true
	})
	for {
		l, err := br.ReadString('\n')
		if err != nil || l == "\r\n" {
			break
		}
	}
	for _, msg := range []string{"ping-through-proxy\n", strings.Repeat("x", 100000) + "\n"} {
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		back, err := br.ReadString('\n')
		if err != nil || back != msg {
			t.Fatalf("echo through the upgraded connection: %d bytes back, want %d: %v", len(back), len(msg), err)
		}
	}
	conn.Close()

	// A client that gives up cancels the request down to the guest: the
	// connection into the sandbox closes.
	cp.Must(t, 200, "POST", "/v1/sandboxes/"+sb.ID+"/exec", ka, map[string]any{"cmd": "/bin/sh", "user": "root", "args": []string{"-c",
		"setsid sh -c 'sleep 600 | busybox nc -l -p 9001 > /tmp/got' </dev/null >/dev/null 2>&1 &"}})
	established := func() bool {
		r := cp.Must(t, 200, "POST", "/v1/sandboxes/"+sb.ID+"/exec", ka, map[string]any{"cmd": "/bin/sh", "args": []string{"-c", "busybox netstat -tn | grep ':9001 ' | grep -c ESTABLISHED || true"}}).Map()
		return strings.TrimSpace(fmt.Sprint(r["stdout"])) != "0"
	}
	waitfor.True(t, 10*time.Second, "the server in the sandbox to listen", func() bool {
		r := cp.Must(t, 200, "POST", "/v1/sandboxes/"+sb.ID+"/exec", ka, map[string]any{"cmd": "/bin/sh", "args": []string{"-c", "busybox netstat -tln | grep -c ':9001 ' || true"}}).Map()
		return strings.TrimSpace(fmt.Sprint(r["stdout"])) != "0"
	})
	cctx, cancelReq := context.WithCancel(context.Background())
	reqDone := make(chan struct{})
	go func() {
		defer close(reqDone)
		req, _ := http.NewRequestWithContext(cctx, "POST", cp.ProxyURL+"/slow", strings.NewReader("hello"))
		req.Header.Set("E2b-Sandbox-Id", sb.ID)
		req.Header.Set("E2b-Sandbox-Port", "9001")
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}()
	waitfor.True(t, 10*time.Second, "the proxied connection to reach the sandbox", established)
	cancelReq()
	<-reqDone
	waitfor.True(t, 10*time.Second, "the connection into the sandbox to close after the client left", func() bool { return !established() })

	// Private ports need the traffic token; envd's does not.
	priv := cp.Must(t, 201, "POST", "/v1/sandboxes", ka, map[string]any{"allow_public_traffic": false}).Map()
	pid, traffic := priv["id"].(string), priv["traffic_access_token"].(string)
	serve(pid)
	if _, body := call("", nil, 8000, pid); errorCode(body) != "403 traffic_token_required" {
		t.Errorf("private port without token: %s", body)
	}
	if _, body := call("", map[string]string{"E2b-Traffic-Access-Token": "wrong"}, 8000, pid); errorCode(body) != "403 traffic_token_required" {
		t.Errorf("private port with a wrong token: %s", body)
	}
	if st, body := call("", map[string]string{"E2b-Traffic-Access-Token": traffic}, 8000, pid); st != 200 || !strings.Contains(body, "hello-proxy") {
		t.Errorf("private port with its token: %d %s", st, body)
	}
	// Paused, without auto-resume: a clear error, and it stays paused.
	cp.Must(t, 200, "POST", "/v1/sandboxes/"+pid+"/pause", ka, nil)
	if _, body := call("", map[string]string{"E2b-Traffic-Access-Token": traffic}, 8000, pid); errorCode(body) != "502 sandbox_paused" {
		t.Errorf("paused sandbox: %s", body)
	}
	cp.Must(t, 204, "DELETE", "/v1/sandboxes/"+pid, ka, nil)
	if _, body := call("", nil, 8000, pid); errorCode(body) != "502 sandbox_not_found" {
		t.Errorf("destroyed sandbox: %s", body)
	}

	// Paused with auto-resume: the request resumes it.
	ar := cp.Must(t, 201, "POST", "/v1/sandboxes", ka, map[string]any{"auto_resume": true}).Map()
	arID := ar["id"].(string)
	serve(arID)
	cp.Must(t, 200, "POST", "/v1/sandboxes/"+arID+"/pause", ka, nil)
	if st, body := call("", nil, 8000, arID); st != 200 || !strings.Contains(body, "hello-proxy") {
		t.Errorf("auto-resume: %d %s", st, body)
	}
	if v := sandboxOf(t, cp.Must(t, 200, "GET", "/v1/sandboxes/"+arID, ka, nil)); v.State != "running" {
		t.Errorf("after auto-resume: %+v", v)
	}
	if r := cp.Must(t, 200, "GET", "/v1/audit?action=sandbox.auto_resume", ka, nil); !strings.Contains(string(r.Body), arID) {
		t.Errorf("auto-resume not audited: %s", r.Body)
	}
	cp.Must(t, 204, "DELETE", "/v1/sandboxes/"+arID, ka, nil)
}

// The reconciler marks a sandbox its host lost as stopped, and reports one
// the control plane never made.
func TestControlPlaneReconciler(t *testing.T) {
	st := startStack(t, 1)
	cp, admin := st.cp, st.admin
	ka := st.key(t, "alice@example.com")
	victim := sandboxOf(t, cp.Must(t, 201, "POST", "/v1/sandboxes", ka, map[string]any{"timeout_seconds": 600}))
	owner := st.hosts[0]
	// The sandbox disappears behind the control plane's back.
	if _, err := owner.client.DestroySandbox(context.Background(), connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: victim.ID})); err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, 15*time.Second, "the reconciler to mark the lost sandbox stopped", func() bool {
		return sandboxOf(t, cp.Must(t, 200, "GET", "/v1/sandboxes/"+victim.ID, ka, nil)).State == "stopped"
	})
	// A sandbox the control plane never made is reported on its host.
	create(t, owner.agent, "sb-unknown0", nil)
	waitfor.True(t, 15*time.Second, "the unknown sandbox reported", func() bool {
		h := cp.Must(t, 200, "GET", "/v1/hosts/"+owner.hostID, admin.Token, nil).Map()
		return strings.Contains(fmt.Sprint(h["unknown_sandboxes"]), "sb-unknown0")
	})
	if _, err := owner.client.DestroySandbox(context.Background(), connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: "sb-unknown0"})); err != nil {
		t.Fatal(err)
	}
}

// A host that stops answering is marked unreachable, its sandboxes shown
// so, and calls to them refused, until it is back.
func TestControlPlaneUnreachableHost(t *testing.T) {
	st := startStack(t, 1)
	cp, admin := st.cp, st.admin
	ka := st.key(t, "alice@example.com")
	sb := st.sandbox(t, ka)
	owner := st.hosts[0]
	if err := owner.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			_ = owner.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	waitfor.True(t, 15*time.Second, "the stopped host marked unreachable", func() bool {
		return cp.Must(t, 200, "GET", "/v1/hosts/"+owner.hostID, admin.Token, nil).Map()["status"] == "unreachable"
	})
	v := sandboxOf(t, cp.Must(t, 200, "GET", "/v1/sandboxes/"+sb.ID, ka, nil))
	if v.State != "running" || v.HostStatus != "unreachable" {
		t.Fatalf("sandbox on an unreachable host: %+v", v)
	}
	if r, _ := cp.Do("POST", "/v1/sandboxes/"+sb.ID+"/exec", ka, map[string]any{"cmd": "true"}); r.Status != 503 {
		t.Errorf("exec on an unreachable host: %s", r)
	}
	_ = owner.cmd.Process.Signal(syscall.SIGCONT)
	stopped = false
	waitfor.True(t, 15*time.Second, "the host back", func() bool {
		return cp.Must(t, 200, "GET", "/v1/hosts/"+owner.hostID, admin.Token, nil).Map()["status"] == "ready"
	})
	cp.Must(t, 200, "POST", "/v1/sandboxes/"+sb.ID+"/exec", ka, map[string]any{"cmd": "true"})
}

// A second control plane on the same database (a replica) is killed
// while a create is in flight; the first converges the row to what the
// agent has.
func TestControlPlaneKilledMidCreate(t *testing.T) {
	st := startStack(t, 1)
	cp := st.cp
	ka := st.key(t, "alice@example.com")
	// A second control plane on the same database (a replica) is
	// killed while a create is in flight; the first converges the row
	// to what the agent has.
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, st.secret, 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	replica := exec.Command(filepath.Join(binDir, "control-plane"))
	replica.Env = append(os.Environ(), "WRENN_DATABASE_URL="+cp.Config.DatabaseURL, "WRENN_CP_SECRET_FILE="+secretFile,
		"WRENN_CP_LISTEN="+addr, "WRENN_PROXY_LISTEN="+freeAddr(t), "WRENN_PLAIN_HTTP=true")
	rlog := &syncWriter{w: &bytes.Buffer{}}
	replica.Stderr = rlog
	if err := replica.Start(); err != nil {
		t.Fatal(err)
	}
	replicaExited := make(chan error, 1)
	go func() { replicaExited <- replica.Wait() }()
	defer func() {
		_ = replica.Process.Kill()
		<-replicaExited
		if t.Failed() {
			rlog.mu.Lock()
			t.Logf("replica log:\n%s", rlog.w.String())
			rlog.mu.Unlock()
		}
	}()
	rc := &cptest.CP{URL: "http://" + addr}
	waitfor.True(t, 30*time.Second, "the replica to serve", func() bool {
		select {
		case err := <-replicaExited:
			replicaExited <- err
			t.Fatalf("the replica exited: %v", err)
		default:
		}
		r, err := rc.Do("GET", "/health", "", nil)
		return err == nil && r.Status == 200
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = rc.Do("POST", "/v1/sandboxes", ka, map[string]any{"metadata": map[string]string{"case": "killed"}})
	}()
	var row sbView
	waitfor.True(t, 30*time.Second, "the create to reach the database", func() bool {
		var list []sbView
		_ = cp.Must(t, 200, "GET", "/v1/sandboxes?metadata=case%3Dkilled&include_stopped=true", ka, nil).JSON(&list)
		if len(list) == 1 {
			row = list[0]
		}
		return len(list) == 1
	})
	_ = replica.Process.Kill()
	<-done
	waitfor.True(t, 30*time.Second, "the row to settle", func() bool {
		row = sandboxOf(t, cp.Must(t, 200, "GET", "/v1/sandboxes/"+row.ID, ka, nil))
		return row.State == "running" || row.State == "stopped"
	})
	onAgent := st.hosts[0].has(t, row.ID)
	if (row.State == "running") != onAgent {
		t.Fatalf("database says %s, agent has it: %v", row.State, onAgent)
	}
	if row.State == "running" {
		cp.Must(t, 200, "POST", "/v1/sandboxes/"+row.ID+"/exec", ka, map[string]any{"cmd": "true"})
		cp.Must(t, 204, "DELETE", "/v1/sandboxes/"+row.ID, ka, nil)
	}
}

// Sandboxes spread over two hosts; a drained host takes no new ones and
// cannot be deleted while it has any.
func TestControlPlaneScheduler(t *testing.T) {
	st := startStack(t, 1, 2)
	cp, admin := st.cp, st.admin
	ka, kb := st.teams(t)
	if r, _ := cp.Do("POST", "/v1/sandboxes", ka, map[string]any{"template": "no-such-template"}); r.Status != 503 || r.Code() != "no_capacity" || !strings.Contains(r.String(), "no-such-template") {
		t.Errorf("unknown template: %s", r)
	}
	perHost := map[string]int{}
	var ids []string
	for range 4 {
		v := sandboxOf(t, cp.Must(t, 201, "POST", "/v1/sandboxes", kb, map[string]any{"memory_mib": 256}))
		perHost[v.HostID]++
		ids = append(ids, v.ID)
	}
	if perHost[st.hosts[0].hostID] == 0 || perHost[st.hosts[1].hostID] == 0 {
		t.Errorf("sandboxes not spread over both hosts: %v", perHost)
	}
	// A drained host takes no new sandboxes.
	cp.Must(t, 200, "POST", "/v1/hosts/"+st.hosts[0].hostID+"/drain", admin.Token, nil)
	for range 2 {
		v := sandboxOf(t, cp.Must(t, 201, "POST", "/v1/sandboxes", kb, nil))
		if v.HostID != st.hosts[1].hostID {
			t.Errorf("placed on the drained host")
		}
		ids = append(ids, v.ID)
	}
	if r, _ := cp.Do("DELETE", "/v1/hosts/"+st.hosts[0].hostID, admin.Token, nil); r.Status != 409 {
		t.Errorf("delete a host with sandboxes: %s", r)
	}
	for _, id := range ids {
		cp.Must(t, 204, "DELETE", "/v1/sandboxes/"+id, kb, nil)
	}
}

// The control plane restarts on the same address and database: sessions,
// keys and sandboxes are all still there, and the hosts heartbeat to it
// again.
func TestControlPlaneRestart(t *testing.T) {
	st := startStack(t, 1)
	cp := st.cp
	ka := st.key(t, "alice@example.com")
	sb := st.sandbox(t, ka)
	// The control plane restarts on the same address and database:
	// sessions, keys and sandboxes are all still there, and the hosts
	// heartbeat to it again.
	addr := strings.TrimPrefix(cp.URL, "http://")
	if err := cp.Stop(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	cp2, err := requirePostgres(t).Start(context.Background(), cptest.Options{Secret: st.secret, DatabaseURL: cp.Config.DatabaseURL, Listen: addr, Tune: tuneCP, Log: st.log})
	if err != nil {
		t.Fatal(err)
	}
	cp, st.cp = cp2, cp2
	if v := sandboxOf(t, cp.Must(t, 200, "GET", "/v1/sandboxes/"+sb.ID, ka, nil)); v.State != "running" {
		t.Fatalf("after restart: %+v", v)
	}
	waitfor.True(t, 15*time.Second, "the host to heartbeat to the restarted control plane", func() bool {
		var h struct {
			Status          string
			LastHeartbeatAt time.Time `json:"last_heartbeat_at"`
		}
		_ = cp.Must(t, 200, "GET", "/v1/hosts/"+st.hosts[0].hostID, st.admin.Token, nil).JSON(&h)
		return h.Status == "ready" && h.LastHeartbeatAt.After(restarted)
	})
	cp.Must(t, 200, "POST", "/v1/sandboxes/"+sb.ID+"/exec", ka, map[string]any{"cmd": "true"})
}

// An agent restarted gracefully (an upgrade) under a control plane keeps
// its sandboxes: the control plane shows them paused once it is back, and
// a resume through the API brings one back with its files.
func TestControlPlaneAgentRestart(t *testing.T) {
	requireVMs(t)
	requireRunsc(t)
	pg := requirePostgres(t)
	secret := make([]byte, 32)
	rand.Read(secret)
	cp, err := pg.Start(context.Background(), cptest.Options{Secret: secret, Tune: fastClocks})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cp.Stop() }()
	admin := cp.Admin(t, "admin@example.com")
	h := startCPAgent(t, cp, admin.Token, 3, "gvisor", "--on-stop", "pause")
	key := cp.APIKey(t, cp.Signup(t, "user@example.com"))
	sb := sandboxOf(t, cp.Must(t, 201, "POST", "/v1/sandboxes", key, map[string]any{"timeout_seconds": 600}))
	cp.Must(t, 200, "POST", "/v1/sandboxes/"+sb.ID+"/exec", key, map[string]any{"cmd": "/bin/sh", "args": []string{"-c", "echo kept > /home/user/kept.txt"}})

	h.stop(t, syscall.SIGTERM)
	assertNothingRunning(t, h.stateDir)
	b := launchAgent(t, h.stateDir, nil, "--runtime", "gvisor", "--control-plane", cp.URL, "--network-partition", "3", "--on-stop", "pause")
	b.waitServing(t, asControlPlane(t, cp, h.hostID, b.addr))
	waitfor.True(t, 20*time.Second, "the control plane to see the sandbox paused", func() bool {
		return sandboxOf(t, cp.Must(t, 200, "GET", "/v1/sandboxes/"+sb.ID, key, nil)).State == "paused"
	})
	cp.Must(t, 200, "POST", "/v1/sandboxes/"+sb.ID+"/resume", key, nil)
	out := cp.Must(t, 200, "POST", "/v1/sandboxes/"+sb.ID+"/exec", key, map[string]any{"cmd": "cat", "args": []string{"/home/user/kept.txt"}}).Map()
	if out["stdout"] != "kept\n" {
		t.Fatalf("the file after the agent's restart: %v", out)
	}
	cp.Must(t, 204, "DELETE", "/v1/sandboxes/"+sb.ID, key, nil)
	b.stop(t, syscall.SIGTERM)
	assertNoLeftovers(t, h.stateDir)
}
