package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
	"git.omukk.dev/wrenn/sandbox/proto/hostagent/v1/hostagentv1connect"
)

// builders owns the builds this process runs: each runs in a goroutine
// with a cancel function; Close cancels them and waits.
type builders struct {
	mu      sync.Mutex
	running map[uuid.UUID]context.CancelFunc
	wg      sync.WaitGroup
}

func (bs *builders) start(s *Service, c auth.Caller, t db.TeamTemplate, b db.TemplateBuild, rec buildRecord, base buildBase) {
	ctx, cancel := context.WithTimeout(context.Background(), BuildTimeLimit)
	bs.mu.Lock()
	if bs.running == nil {
		bs.running = map[uuid.UUID]context.CancelFunc{}
	}
	bs.running[b.ID] = cancel
	bs.mu.Unlock()
	bs.wg.Add(1)
	go func() {
		defer bs.wg.Done()
		defer func() {
			bs.mu.Lock()
			delete(bs.running, b.ID)
			bs.mu.Unlock()
			cancel()
		}()
		r := &buildRun{s: s, c: c, t: t, b: b, rec: rec, base: base, cancelled: cancel}
		r.run(ctx)
	}()
}

func (bs *builders) cancel(bid uuid.UUID) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if f := bs.running[bid]; f != nil {
		f()
	}
}

func (bs *builders) close() {
	bs.mu.Lock()
	for _, f := range bs.running {
		f()
	}
	bs.mu.Unlock()
	bs.wg.Wait()
}

// buildState is what ENV, WORKDIR and USER steps leave for the steps
// after them and for sandboxes from the template.
type buildState struct {
	envs    map[string]string
	workdir string
	user    string
	// home is the default user's home: where relative paths start
	// before any WORKDIR.
	home string
}

func (st *buildState) apply(step BuildStep) {
	switch step.Type {
	case StepEnv:
		for i := 0; i+1 < len(step.Args); i += 2 {
			st.envs[step.Args[i]] = step.Args[i+1]
		}
	case StepWorkdir:
		st.workdir = st.resolve(step.Args[0])
	case StepUser:
		st.user = step.Args[0]
	}
}

// resolve makes p absolute against the workdir, or the default user's
// home before any (where commands start); "~" is that home.
func (st *buildState) resolve(p string) string {
	if path.IsAbs(p) {
		return p
	}
	if rest, ok := strings.CutPrefix(p, "~"); ok && (rest == "" || rest[0] == '/') {
		return path.Join(st.home, rest)
	}
	if st.workdir == "" {
		return path.Join(st.home, p)
	}
	return path.Join(st.workdir, p)
}

// changesDisk reports whether a step runs something in the sandbox (and
// so gets a cached layer); ENV and USER only change the build's state.
func changesDisk(step BuildStep) bool {
	return step.Type == StepRun || step.Type == StepCopy || step.Type == StepWorkdir
}

// stepError is a step that failed in the sandbox.
type stepError struct {
	step     string // "base", "1".., "finalize"
	exitCode *int32
	msg      string
	tail     []string
}

func (e *stepError) Error() string {
	m := e.msg
	if e.exitCode != nil {
		m += fmt.Sprintf(" (exit code %d)", *e.exitCode)
	}
	if len(e.tail) > 0 {
		m += "; last output:\n" + strings.Join(e.tail, "\n")
	}
	return m
}

// tailLines keeps the last lines of a step's output for its error.
const tailLines = 20

type buildRun struct {
	s         *Service
	c         auth.Caller
	t         db.TeamTemplate
	b         db.TemplateBuild
	rec       buildRecord
	base      buildBase
	cancelled context.CancelFunc

	sandbox *uuid.UUID
	host    db.Host
	client  hostagentv1connect.HostAgentServiceClient
	layers  []db.Snapshot // made by this build, dropped if it fails
	final   *db.Snapshot
	started time.Time
}

func (r *buildRun) log(level, step, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.s.Q.AppendBuildLog(ctx, db.AppendBuildLogParams{BuildID: r.b.ID, Level: level, Step: step, Message: msg}); err != nil {
		r.s.Log.Error("template build log", "build", id.Format(id.Build, r.b.ID), "err", err)
	}
}

// watchCancel turns a cancel request recorded in the database (by any
// control plane) into this run's context cancellation.
func (r *buildRun) watchCancel(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if yes, err := r.s.Q.BuildCancelRequested(ctx, r.b.ID); err == nil && yes {
				r.cancelled()
				return
			}
		}
	}
}

func (r *buildRun) run(ctx context.Context) {
	r.started = time.Now()
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go r.watchCancel(wctx)
	state, err := r.build(ctx)
	cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r.destroySandbox(cctx)
	if err == nil {
		envs, _ := json.Marshal(state.envs)
		if _, err = r.s.Q.FinishTemplateBuild(cctx, db.FinishTemplateBuildParams{ID: r.b.ID, Status: "ready", SnapshotID: &r.final.ID, Envs: envs, Workdir: state.workdir}); err == nil {
			for _, tag := range append([]string{DefaultTag}, r.rec.Tags...) {
				if err = r.s.Q.SetTemplateTag(cctx, db.SetTemplateTagParams{TemplateID: r.t.ID, Tag: tag, BuildID: r.b.ID}); err != nil {
					break
				}
			}
		}
		if err == nil {
			r.log("info", "finalize", "Build finished in %s: template %s is ready", time.Since(r.started).Round(100*time.Millisecond), r.t.Name)
			return
		}
	}
	r.fail(cctx, ctx, err)
}

// fail ends the build as error or cancelled and removes what it made:
// its sandbox (already), its layers, its snapshot and its uploads.
func (r *buildRun) fail(cctx, ctx context.Context, err error) {
	status := "error"
	if errors.Is(ctx.Err(), context.Canceled) {
		status, err = "cancelled", errors.New("the build was cancelled")
	} else if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("the build ran longer than %s: %w", BuildTimeLimit, err)
	}
	params := db.FinishTemplateBuildParams{ID: r.b.ID, Status: status, Envs: []byte("{}"), Error: err.Error()}
	var se *stepError
	if errors.As(err, &se) {
		if n, perr := strconv.Atoi(se.step); perr == nil {
			params.FailedStep = new(int32)
			*params.FailedStep = int32(n)
		}
		params.ExitCode = se.exitCode
	}
	for _, sn := range append(r.layers, r.finalList()...) {
		if derr := r.s.dropSnapshot(cctx, sn); derr != nil {
			r.s.Log.Error("template build cleanup", "build", id.Format(id.Build, r.b.ID), "snapshot", id.Format(id.Snapshot, sn.ID), "err", derr)
		}
	}
	r.dropUploads(cctx)
	step := "base"
	if se != nil {
		step = se.step
	}
	r.log("error", step, "Build %s: %v", status, err)
	if _, ferr := r.s.Q.FinishTemplateBuild(cctx, params); ferr != nil {
		r.s.Log.Error("finish template build", "build", id.Format(id.Build, r.b.ID), "err", ferr)
	}
}

func (r *buildRun) finalList() []db.Snapshot {
	if r.final == nil {
		return nil
	}
	return []db.Snapshot{*r.final}
}

// dropUploads removes this build's archives that no other live build
// names: a failed build leaves no files behind.
func (r *buildRun) dropUploads(ctx context.Context) {
	r.s.dropUploads(ctx, r.b, r.rec.Steps)
}

func (r *buildRun) destroySandbox(ctx context.Context) {
	if r.sandbox == nil {
		return
	}
	if err := r.s.DestroySandbox(ctx, r.c, *r.sandbox); err != nil && !errors.Is(err, ErrNotFound) {
		r.s.Log.Error("destroy build sandbox", "sandbox", id.Format(id.Sandbox, *r.sandbox), "err", err)
	}
	r.sandbox = nil
}

// prepareImage has a host make the guest image of the build's OCI image
// (or find it made for that digest); the build sandbox starts there.
// The credentials go to the agent in the call and nowhere else.
func (r *buildRun) prepareImage(ctx context.Context) error {
	ref := r.base.oci
	fail := func(format string, args ...any) error {
		return &stepError{step: "base", msg: fmt.Sprintf("image %s: ", ref) + fmt.Sprintf(format, args...)}
	}
	hosts, err := r.s.candidates(ctx, "", r.b.MemoryMib, 0)
	if err != nil {
		return fail("%v", err)
	}
	h := hosts[0]
	client, err := r.s.agent(h)
	if err != nil {
		return fail("%v", err)
	}
	r.log("info", "base", "Pulling image %s on host %s", ref, id.Format(id.Host, h.ID))
	req := &pb.PrepareImageRequest{Ref: ref}
	if a := r.rec.FromImageRegistry; a != nil {
		req.Username, req.Password = a.Username, a.Password
	}
	t0 := time.Now()
	res, err := client.PrepareImage(ctx, connect.NewRequest(req))
	if err != nil {
		return &stepError{step: "base", msg: agentError(h, "image "+ref, err).Error()}
	}
	r.base.image, r.base.key, r.base.host = res.Msg.Image, "oci:"+res.Msg.Digest, &h.ID
	how := "made"
	if res.Msg.Cached {
		how = "already made; only the manifest was fetched"
	}
	r.log("info", "base", "Image %s (%s) is guest image %s: %s in %s", ref, res.Msg.Digest, res.Msg.Image, how, since(t0))
	return nil
}

func (r *buildRun) build(ctx context.Context) (buildState, error) {
	if r.base.oci != "" {
		if err := r.prepareImage(ctx); err != nil {
			return buildState{}, err
		}
	}
	steps := r.rec.Steps
	n := len(steps)
	keys := make([]string, n)
	prev := r.base.key
	for i, st := range steps {
		keys[i] = layerKey(prev, st)
		prev = keys[i]
	}
	// The cache holds up to the first forced step.
	cacheable := n
	if r.rec.Force {
		cacheable = 0
	}
	for i, st := range steps {
		if st.Force && i < cacheable {
			cacheable = i
		}
	}
	resume, snapID := -1, (*uuid.UUID)(nil)
	for i := cacheable - 1; i >= 0; i-- {
		if !changesDisk(steps[i]) {
			continue
		}
		l, err := r.s.Q.GetTemplateLayer(ctx, db.GetTemplateLayerParams{TeamID: r.b.TeamID, Key: keys[i]})
		if err == nil {
			resume, snapID = i, &l.SnapshotID
			break
		}
	}
	from := r.rec.FromTemplate
	if r.base.oci != "" {
		from = r.base.oci
	}
	r.log("info", "base", "Building template %s (build %s): %d steps from %s", r.t.Name, id.Format(id.Build, r.b.ID), n, from)
	in := CreateSandboxInput{
		VCPUs: r.b.Vcpus, MemoryMiB: r.b.MemoryMib, TimeoutSeconds: int32(BuildTimeLimit / time.Second),
		Metadata: map[string]string{"wrenn.template_build": id.Format(id.Build, r.b.ID)},
	}
	switch {
	case snapID != nil:
		in.SnapshotID = snapID
		r.log("info", "base", "Layers up to step %d are cached; resuming from there", resume+1)
	case r.base.build != nil:
		in.SnapshotID = r.base.build.SnapshotID
		in.snapshotTeam = &r.base.build.TeamID
	default:
		in.Template, in.onHost = r.base.image, r.base.host
	}
	t0 := time.Now()
	sb, err := r.s.CreateSandbox(ctx, r.c, in)
	if err != nil {
		return buildState{}, &stepError{step: "base", msg: "start the build sandbox: " + err.Error()}
	}
	r.sandbox = &sb.ID
	if r.host, r.client, err = r.s.hostAgent(ctx, sb.HostID); err != nil {
		return buildState{}, &stepError{step: "base", msg: err.Error()}
	}
	r.log("info", "base", "Build sandbox %s started on host %s in %s", id.Format(id.Sandbox, sb.ID), id.Format(id.Host, r.host.ID), since(t0))
	state := buildState{envs: map[string]string{}}
	// Steps run as the image's default user unless they name one; COPY
	// gives its files to that user too.
	who, err := r.client.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: id.Format(id.Sandbox, sb.ID), Cmd: "/bin/sh",
		Args: []string{"-c", `u=$(id -un); echo "$u"; awk -F: -v u="$u" '$1==u{print $6}' /etc/passwd`}, TimeoutSeconds: 30}))
	if err != nil {
		return buildState{}, &stepError{step: "base", msg: agentError(r.host, "find the default user", err).Error()}
	}
	fields := strings.Fields(string(who.Msg.Stdout))
	if len(fields) != 2 {
		return buildState{}, &stepError{step: "base", msg: fmt.Sprintf("find the default user and home: %q", who.Msg.Stdout)}
	}
	state.user, state.home = fields[0], fields[1]
	if r.base.build != nil {
		_ = json.Unmarshal(r.base.build.Envs, &state.envs)
		state.workdir = r.base.build.Workdir
	}
	for i, st := range steps {
		label := strconv.Itoa(i + 1)
		if i <= resume {
			state.apply(st)
			r.log("info", label, "[%d/%d] %s %s: cached", i+1, n, st.Type, describe(st))
			continue
		}
		if err := ctx.Err(); err != nil {
			return state, err
		}
		r.log("info", label, "[%d/%d] %s %s", i+1, n, st.Type, describe(st))
		t0 := time.Now()
		if err := r.step(ctx, label, st, &state); err != nil {
			return state, err
		}
		state.apply(st)
		if changesDisk(st) && i < cacheable {
			if err := r.saveLayer(ctx, keys[i]); err != nil {
				return state, &stepError{step: label, msg: "save the layer: " + err.Error()}
			}
		}
		r.log("info", label, "[%d/%d] done in %s", i+1, n, since(t0))
	}
	if r.rec.StartCmd != "" {
		if err := r.startAndWait(ctx, &state); err != nil {
			return state, err
		}
	}
	t0 = time.Now()
	snap, err := r.snapshot(ctx, "template", fmt.Sprintf("template/%s/%s", r.t.Name, id.Format(id.Build, r.b.ID)), func(sn db.Snapshot) { r.final = &sn })
	if err != nil {
		return state, &stepError{step: "finalize", msg: "snapshot the template: " + err.Error()}
	}
	r.final = &snap
	r.log("info", "finalize", "Snapshot %s taken in %s (%d MiB)", id.Format(id.Snapshot, snap.ID), since(t0), snap.SizeBytes>>20)
	return state, nil
}

func since(t time.Time) time.Duration { return time.Since(t).Round(10 * time.Millisecond) }

func describe(st BuildStep) string {
	switch st.Type {
	case StepRun:
		return st.Args[0]
	case StepEnv:
		names := make([]string, 0, len(st.Args)/2)
		for i := 0; i < len(st.Args); i += 2 {
			names = append(names, st.Args[i])
		}
		return strings.Join(names, " ")
	default:
		return strings.Join(slices.DeleteFunc(slices.Clone(st.Args), func(s string) bool { return s == "" }), " ")
	}
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func (r *buildRun) step(ctx context.Context, label string, st BuildStep, state *buildState) error {
	switch st.Type {
	case StepRun:
		user := state.user
		if len(st.Args) > 1 && st.Args[1] != "" {
			user = st.Args[1]
		}
		return r.exec(ctx, label, st.Args[0], user, state)
	case StepWorkdir:
		return r.exec(ctx, label, "mkdir -p "+shellQuote(state.resolve(st.Args[0])), "root", state)
	case StepCopy:
		return r.copy(ctx, label, st, state)
	}
	return nil
}

// exec runs cmd through a login shell as the build's user, streaming its
// output lines into the build's log.
func (r *buildRun) exec(ctx context.Context, label, cmd, user string, state *buildState) error {
	req := &pb.ExecRequest{SandboxId: id.Format(id.Sandbox, *r.sandbox), Cmd: "/bin/bash", Args: []string{"-l", "-c", cmd},
		Envs: maps.Clone(state.envs), Cwd: state.workdir, User: user}
	stream, err := r.client.ExecStream(ctx, connect.NewRequest(req))
	if err != nil {
		return &stepError{step: label, msg: agentError(r.host, "run step", err).Error()}
	}
	defer stream.Close()
	var tail []string
	var partial [2][]byte
	emit := func(level string, line []byte) {
		s := strings.ToValidUTF8(string(line), "?")
		tail = append(tail, s)
		if len(tail) > tailLines {
			tail = tail[1:]
		}
		r.log(level, label, "%s", s)
	}
	feed := func(k int, level string, data []byte) {
		partial[k] = append(partial[k], data...)
		for {
			i := bytes.IndexByte(partial[k], '\n')
			if i < 0 {
				break
			}
			emit(level, partial[k][:i])
			partial[k] = partial[k][i+1:]
		}
	}
	var end *pb.ExecEnd
	for stream.Receive() {
		switch e := stream.Msg().GetEvent().(type) {
		case *pb.ExecStreamResponse_Stdout:
			feed(0, "info", e.Stdout)
		case *pb.ExecStreamResponse_Stderr:
			feed(1, "warn", e.Stderr)
		case *pb.ExecStreamResponse_End:
			end = e.End
		}
	}
	for k, level := range []string{"info", "warn"} {
		if len(partial[k]) > 0 {
			emit(level, partial[k])
		}
	}
	if err := stream.Err(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &stepError{step: label, msg: agentError(r.host, "run step", err).Error(), tail: tail}
	}
	if end == nil {
		return &stepError{step: label, msg: "the command's output ended without an exit status", tail: tail}
	}
	if end.ExitCode != 0 {
		code := end.ExitCode
		return &stepError{step: label, msg: fmt.Sprintf("step %s failed: %s", label, cmd), exitCode: &code, tail: tail}
	}
	return nil
}

// guestContext is where a COPY step's archive is unpacked in the build
// sandbox before it is moved to its destination.
const guestContext = "/tmp/.wrenn-build-context"

// copy writes the step's archive into the sandbox and unpacks the part
// the step names at its destination: a directory's contents into the
// destination, a file to the destination (or into it when it ends in /).
func (r *buildRun) copy(ctx context.Context, label string, st BuildStep, state *buildState) error {
	data, err := r.s.Q.GetTemplateFile(ctx, db.GetTemplateFileParams{TeamID: r.b.TeamID, Hash: st.FilesHash})
	if err != nil {
		return &stepError{step: label, msg: "the uploaded files are gone: " + err.Error()}
	}
	archive := guestContext + ".tar"
	_, err = r.client.WriteFile(ctx, connect.NewRequest(&pb.WriteFileRequest{SandboxId: id.Format(id.Sandbox, *r.sandbox), Path: archive, Content: data, User: "root"}))
	if err != nil {
		return &stepError{step: label, msg: agentError(r.host, "upload the build context", err).Error()}
	}
	src, dest := path.Clean(st.Args[0]), state.resolve(st.Args[1])
	if strings.HasSuffix(st.Args[1], "/") {
		dest += "/"
	}
	var user, mode string
	if len(st.Args) > 2 {
		user = st.Args[2]
	}
	if user == "" {
		user = state.user
	}
	if len(st.Args) > 3 {
		mode = st.Args[3]
	}

	script := []string{
		"set -e",
		"rm -rf " + guestContext + " && mkdir -p " + guestContext,
		// gzip or plain (E2B's SDK gzips unless told not to); busybox tar
		// may not detect compression itself.
		"if gzip -t " + archive + " 2>/dev/null; then gzip -dc " + archive + "; else cat " + archive + "; fi | tar -xf - -C " + guestContext,
		"cd " + guestContext,
		"dest=" + shellQuote(dest),
		"n=0; for f in " + globQuote(src) + "; do [ -e \"$f\" ] || [ -L \"$f\" ] || continue; n=$((n+1)); done",
		`[ "$n" -gt 0 ] || { echo "COPY: nothing matches ` + strings.ReplaceAll(src, `"`, "") + ` in the build context" >&2; exit 1; }`,
		"for f in " + globQuote(src) + "; do",
		`  if [ -d "$f" ] && [ ! -L "$f" ]; then mkdir -p "$dest"; cp -a "$f/." "$dest/"; t="$dest"`,
		`  elif [ "$n" -gt 1 ] || [ "${dest%/}" != "$dest" ] || [ -d "$dest" ]; then mkdir -p "$dest"; cp -a "$f" "$dest/"; t="$dest/$(basename "$f")"`,
		`  else mkdir -p "$(dirname "$dest")"; cp -a "$f" "$dest"; t="$dest"; fi`,
	}
	if user != "" {
		owner := user
		if !strings.Contains(owner, ":") {
			owner += ":" // and the user's login group
		}
		script = append(script, `  chown -R `+shellQuote(owner)+` "$t"`)
	}
	if mode != "" {
		script = append(script, `  chmod -R `+mode+` "$t"`)
	}
	script = append(script, "done", "cd /; rm -rf "+guestContext+" "+archive)
	return r.exec(ctx, label, strings.Join(script, "\n"), "root", state)
}

// globQuote quotes a context path for the shell, leaving its glob
// characters live.
func globQuote(p string) string {
	var b strings.Builder
	for _, part := range strings.Split(p, "/") {
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		if strings.ContainsAny(part, "*?[") {
			for _, r := range part {
				if strings.ContainsRune("*?[]", r) || r == '-' || r == '.' || r == '_' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
					b.WriteRune(r)
				} else {
					b.WriteString(`\` + string(r))
				}
			}
		} else {
			b.WriteString(shellQuote(part))
		}
	}
	return b.String()
}

// startAndWait starts the start command detached from any envd process
// (so it survives the snapshot and runs in every sandbox from it) and
// waits for the ready check.
func (r *buildRun) startAndWait(ctx context.Context, state *buildState) error {
	const logFile = "/tmp/wrenn-start.log"
	r.log("info", "finalize", "Start command: %s", r.rec.StartCmd)
	// SIGHUP ignored (inherited through exec) and a session of its own:
	// what nohup does, without the nohup binary that busybox images lack.
	start := "trap '' HUP; setsid /bin/bash -l -c " + shellQuote(r.rec.StartCmd) + " >" + logFile + " 2>&1 </dev/null &"
	if err := r.exec(ctx, "finalize", start, state.user, state); err != nil {
		return err
	}
	ready := r.rec.ReadyCmd
	if ready == "" {
		return nil
	}
	r.log("info", "finalize", "Waiting for the ready check: %s", ready)
	deadline := time.Now().Add(ReadyTimeout)
	sid := id.Format(id.Sandbox, *r.sandbox)
	for {
		res, err := r.client.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: sid, Cmd: "/bin/bash", Args: []string{"-l", "-c", ready},
			Envs: maps.Clone(state.envs), Cwd: state.workdir, User: state.user, TimeoutSeconds: 30}))
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil && res.Msg.ExitCode == 0 {
			r.log("info", "finalize", "Ready check passed")
			return nil
		}
		if time.Now().After(deadline) {
			out, _ := r.client.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: sid, Cmd: "/bin/sh", Args: []string{"-c", "tail -n " + strconv.Itoa(tailLines) + " " + logFile}, User: "root"}))
			var tail []string
			if out != nil {
				tail = strings.Split(strings.TrimRight(string(out.Msg.Stdout), "\n"), "\n")
			}
			return &stepError{step: "finalize", msg: fmt.Sprintf("the ready check %q did not pass within %s", ready, ReadyTimeout), tail: tail}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// saveLayer snapshots the build sandbox as the cached layer for key.
func (r *buildRun) saveLayer(ctx context.Context, key string) error {
	t0 := time.Now()
	name := fmt.Sprintf("layer/%s/%s", key[:24], id.Format(id.Build, r.b.ID))
	sn, err := r.snapshot(ctx, "layer", name, func(sn db.Snapshot) { r.layers = append(r.layers, sn) })
	if err != nil {
		return err
	}
	// A forced step replaces the layer its key had.
	if old, err := r.s.Q.GetTemplateLayer(ctx, db.GetTemplateLayerParams{TeamID: r.b.TeamID, Key: key}); err == nil && old.SnapshotID != sn.ID {
		if o, err := r.s.Q.GetSnapshot(ctx, db.GetSnapshotParams{ID: old.SnapshotID, TeamID: r.b.TeamID}); err == nil {
			if n, _ := r.s.Q.SandboxesFromSnapshots(ctx, []uuid.UUID{o.ID}); n == 0 {
				_ = r.s.dropSnapshot(ctx, o)
			}
		}
	}
	if err := r.s.Q.PutTemplateLayer(ctx, db.PutTemplateLayerParams{TeamID: r.b.TeamID, Key: key, SnapshotID: sn.ID, BuildID: &r.b.ID}); err != nil {
		return err
	}
	r.log("info", "", "Layer cached in %s", since(t0))
	return nil
}

// snapshot freezes the build sandbox into a snapshot of kind; made is
// told of the row as soon as it exists, so a failure can remove it.
func (r *buildRun) snapshot(ctx context.Context, kind, name string, made func(db.Snapshot)) (db.Snapshot, error) {
	sb, err := r.s.Q.GetSandbox(ctx, db.GetSandboxParams{ID: *r.sandbox, TeamID: r.b.TeamID})
	if err != nil {
		return db.Snapshot{}, err
	}
	var sn db.Snapshot
	err = r.s.inTx(ctx, func(q *db.Queries) error {
		// A template counts against the team's snapshot quota; its cached
		// layers do not.
		if kind != "layer" {
			if err := r.s.admit(ctx, q, r.b.TeamID, demand{snapshot: true}); err != nil {
				return err
			}
		}
		sn, err = q.CreateTemplateSnapshot(ctx, db.CreateTemplateSnapshotParams{
			ID: id.New(), TeamID: r.b.TeamID, Name: name, HostID: sb.HostID, SourceSandboxID: &sb.ID,
			Template: sb.Template, Vcpus: sb.Vcpus, MemoryMib: sb.MemoryMib, DiskMib: sb.DiskMib, Kind: kind,
		})
		return err
	})
	if err != nil {
		return db.Snapshot{}, err
	}
	made(sn)
	res, err := r.client.CreateSnapshot(ctx, connect.NewRequest(&pb.CreateSnapshotRequest{SandboxId: id.Format(id.Sandbox, sb.ID), Name: id.Format(id.Snapshot, sn.ID)}))
	if err != nil {
		return db.Snapshot{}, agentError(r.host, "create snapshot", err)
	}
	return r.s.Q.SetSnapshotReady(ctx, db.SetSnapshotReadyParams{ID: sn.ID, SizeBytes: int64(res.Msg.GetSnapshot().GetSizeBytes())})
}
