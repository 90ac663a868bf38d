package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/internal/waitfor"
	procpb "git.omukk.dev/wrenn/sandbox/proto/envd/process"
	"git.omukk.dev/wrenn/sandbox/proto/envd/process/processconnect"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

func sandboxState(t *testing.T, a *agent, id string) *pb.Sandbox {
	t.Helper()
	r, err := a.client.GetSandbox(context.Background(), connect.NewRequest(&pb.GetSandboxRequest{SandboxId: id}))
	if err != nil {
		t.Fatal(err)
	}
	return r.Msg.Sandbox
}

// Files, background processes and their output streams survive five
// pause/resume cycles, one of them triggered by the sandbox's timeout.
func TestPauseResumeKeepsEverything(t *testing.T) {
	requireVMs(t)
	forEachRuntime(t, func(t *testing.T, rt string) { pauseResumeKeepsEverything(t, rt) })
}

func pauseResumeKeepsEverything(t *testing.T, rt string) {
	a := startAgent(t, "", "--runtime", rt)
	ctx := context.Background()
	create(t, a, "pz1", func(r *pb.CreateSandboxRequest) { r.OnTimeout = pb.TimeoutAction_TIMEOUT_ACTION_PAUSE })

	data := make([]byte, 1<<20)
	rand.Read(data)
	want := sha256.Sum256(data)
	if _, err := a.client.WriteFile(ctx, connect.NewRequest(&pb.WriteFileRequest{SandboxId: "pz1", Path: "/home/user/keep.bin", Content: data})); err != nil {
		t.Fatal(err)
	}
	bgPid := startBackground(t, a, "pz1", "i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; echo tick; sleep 0.3; done")

	if _, err := a.client.PauseSandbox(ctx, connect.NewRequest(&pb.PauseSandboxRequest{SandboxId: "pz1"})); err != nil {
		t.Fatal(err)
	}
	if _, err := a.client.PauseSandbox(ctx, connect.NewRequest(&pb.PauseSandboxRequest{SandboxId: "pz1"})); connect.CodeOf(err) != connect.CodeAlreadyExists {
		t.Errorf("pausing a paused sandbox: %v", err)
	}
	lastCounter := 0
	for cycle := 1; cycle <= 5; cycle++ {
		sb := sandboxState(t, a, "pz1")
		if sb.State != pb.SandboxState_SANDBOX_STATE_PAUSED || sb.HostAddress != "" {
			t.Fatalf("cycle %d: paused sandbox shows %v", cycle, sb)
		}
		if ns, _ := filepath.Glob("/run/netns/wrenn-ns-*"); len(ns) != 0 {
			t.Fatalf("cycle %d: a paused sandbox holds a network slot: %v", cycle, ns)
		}
		if _, err := a.client.Exec(ctx, connect.NewRequest(&pb.ExecRequest{SandboxId: "pz1", Cmd: "true"})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
			t.Fatalf("cycle %d: exec in a paused sandbox: %v", cycle, err)
		}
		rs, err := a.client.ResumeSandbox(ctx, connect.NewRequest(&pb.ResumeSandboxRequest{SandboxId: "pz1"}))
		if err != nil {
			t.Fatalf("cycle %d: resume: %v", cycle, err)
		}
		if rs.Msg.Sandbox.State != pb.SandboxState_SANDBOX_STATE_RUNNING {
			t.Fatalf("cycle %d: resumed into %v", cycle, rs.Msg.Sandbox.State)
		}
		again, err := a.client.ResumeSandbox(ctx, connect.NewRequest(&pb.ResumeSandboxRequest{SandboxId: "pz1"}))
		if err != nil || again.Msg.Sandbox.State != pb.SandboxState_SANDBOX_STATE_RUNNING {
			t.Fatalf("cycle %d: resuming a running sandbox is not a no-op: %v", cycle, err)
		}
		rf, err := a.client.ReadFile(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: "pz1", Path: "/home/user/keep.bin"}))
		if err != nil || sha256.Sum256(rf.Msg.Content) != want {
			t.Fatalf("cycle %d: the file changed or vanished: %v", cycle, err)
		}
		// The process still runs, is listed, counts on, and can be followed.
		var n int
		waitfor.True(t, 10*time.Second, fmt.Sprintf("cycle %d: the background process to count on from %d", cycle, lastCounter), func() bool {
			n, _ = strconv.Atoi(strings.TrimSpace(string(execIn(t, a, "pz1", "cat /tmp/counter").Stdout)))
			return n > lastCounter
		})
		lastCounter = n
		envd := processconnect.NewProcessClient(http.DefaultClient, "http://"+rs.Msg.Sandbox.HostAddress+":49983")
		list, err := envd.List(ctx, connect.NewRequest(&procpb.ListRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		listed := false
		for _, p := range list.Msg.Processes {
			listed = listed || p.Pid == bgPid
		}
		if !listed {
			t.Fatalf("cycle %d: envd no longer lists the background process %d", cycle, bgPid)
		}
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		follow, err := envd.Connect(cctx, connect.NewRequest(&procpb.ConnectRequest{Process: &procpb.ProcessSelector{Selector: &procpb.ProcessSelector_Pid{Pid: bgPid}}}))
		if err != nil {
			t.Fatal(err)
		}
		gotTick := false
		for !gotTick && follow.Receive() {
			gotTick = bytes.Contains(follow.Msg().GetEvent().GetData().GetStdout(), []byte("tick"))
		}
		ccancel()
		if !gotTick {
			t.Fatalf("cycle %d: reconnecting to the background process's output: %v", cycle, follow.Err())
		}

		if cycle == 4 {
			// Let the timeout do this pause.
			if _, err := a.client.SetSandboxTimeout(ctx, connect.NewRequest(&pb.SetSandboxTimeoutRequest{SandboxId: "pz1", TimeoutSeconds: 1})); err != nil {
				t.Fatal(err)
			}
			waitfor.True(t, 60*time.Second, "the timeout to pause the sandbox", func() bool {
				return sandboxState(t, a, "pz1").State == pb.SandboxState_SANDBOX_STATE_PAUSED
			})
			continue
		}
		if cycle < 5 {
			if _, err := a.client.PauseSandbox(ctx, connect.NewRequest(&pb.PauseSandboxRequest{SandboxId: "pz1"})); err != nil {
				t.Fatalf("cycle %d: pause: %v", cycle, err)
			}
		}
	}
	if _, err := a.client.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: "pz1"})); err != nil {
		t.Fatal(err)
	}
	a.stop(t, syscall.SIGTERM)
	assertNoLeftovers(t, a.stateDir)
	if entries, _ := os.ReadDir(filepath.Join(a.stateDir, "sandboxes")); len(entries) != 0 {
		t.Errorf("snapshot files left: %v", entries)
	}
}

// checksumTree hashes every file under dir.
func checksumTree(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[p] = sha256.Sum256(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A snapshot template starts warm clones that diverge from each other and
// leave the template's files as they were.
func TestSnapshotTemplatesAndClones(t *testing.T) {
	requireVMs(t)
	forEachRuntime(t, func(t *testing.T, rt string) {
		a := startAgent(t, "", "--runtime", rt)
		ctx := context.Background()
		create(t, a, "src", nil)
		execIn(t, a, "src", "echo 'from the template' > /home/user/base.txt")
		snap, err := a.client.CreateSnapshot(ctx, connect.NewRequest(&pb.CreateSnapshotRequest{SandboxId: "src", Name: "tpl1"}))
		if err != nil {
			t.Fatal(err)
		}
		if snap.Msg.Snapshot.SizeBytes == 0 || snap.Msg.Snapshot.Template != "minimal" {
			t.Fatalf("snapshot %v", snap.Msg.Snapshot)
		}
		if st := sandboxState(t, a, "src").State; st != pb.SandboxState_SANDBOX_STATE_RUNNING {
			t.Fatalf("the source is %v after its snapshot, want running", st)
		}
		if _, err := a.client.CreateSnapshot(ctx, connect.NewRequest(&pb.CreateSnapshotRequest{SandboxId: "src", Name: "tpl1"})); connect.CodeOf(err) != connect.CodeAlreadyExists {
			t.Errorf("a second snapshot of the same name: %v", err)
		}
		if _, err := a.client.CreateSandbox(ctx, connect.NewRequest(&pb.CreateSandboxRequest{SandboxId: "x", Snapshot: "nope"})); connect.CodeOf(err) != connect.CodeNotFound {
			t.Errorf("create from an unknown snapshot: %v", err)
		}
		tplDir := filepath.Join(a.stateDir, "snapshots", "tpl1")
		before := checksumTree(t, tplDir)

		for _, id := range []string{"clone1", "clone2"} {
			resp, err := a.client.CreateSandbox(ctx, connect.NewRequest(&pb.CreateSandboxRequest{SandboxId: id, Snapshot: "tpl1", TimeoutSeconds: 600}))
			if err != nil {
				t.Fatalf("clone %s: %v", id, err)
			}
			if resp.Msg.Sandbox.Snapshot != "tpl1" || resp.Msg.Sandbox.State != pb.SandboxState_SANDBOX_STATE_RUNNING {
				t.Fatalf("clone %s: %v", id, resp.Msg.Sandbox)
			}
		}
		for _, id := range []string{"clone1", "clone2"} {
			if got := string(execIn(t, a, id, "cat /home/user/base.txt").Stdout); got != "from the template\n" {
				t.Fatalf("%s: template file %q", id, got)
			}
			execIn(t, a, id, "echo "+id+" > /home/user/own.txt")
		}
		for _, id := range []string{"clone1", "clone2"} {
			if got := string(execIn(t, a, id, "cat /home/user/own.txt").Stdout); got != id+"\n" {
				t.Fatalf("%s did not diverge: %q", id, got)
			}
		}
		if got := string(execIn(t, a, "src", "cat /home/user/own.txt 2>/dev/null || echo none").Stdout); got != "none\n" {
			t.Fatalf("a clone's write reached the source: %q", got)
		}
		// A clone's first pause gives it memory of its own (until then it
		// maps the template's); its files come through that and a second
		// cycle, and its sibling is untouched.
		for i := range 2 {
			if _, err := a.client.PauseSandbox(ctx, connect.NewRequest(&pb.PauseSandboxRequest{SandboxId: "clone1"})); err != nil {
				t.Fatalf("pause clone1 (%d): %v", i+1, err)
			}
			if _, err := a.client.ResumeSandbox(ctx, connect.NewRequest(&pb.ResumeSandboxRequest{SandboxId: "clone1"})); err != nil {
				t.Fatalf("resume clone1 (%d): %v", i+1, err)
			}
			if got := string(execIn(t, a, "clone1", "cat /home/user/base.txt /home/user/own.txt").Stdout); got != "from the template\nclone1\n" {
				t.Fatalf("clone1 after pause %d: %q", i+1, got)
			}
		}
		if got := string(execIn(t, a, "clone2", "cat /home/user/own.txt").Stdout); got != "clone2\n" {
			t.Fatalf("clone2 after clone1's pauses: %q", got)
		}
		after := checksumTree(t, tplDir)
		if len(after) != len(before) {
			t.Fatalf("the template's files changed: %d before, %d after", len(before), len(after))
		}
		for p, sum := range before {
			if after[p] != sum {
				t.Fatalf("the template's %s changed", p)
			}
		}
		if _, err := a.client.DeleteSnapshot(ctx, connect.NewRequest(&pb.DeleteSnapshotRequest{Name: "tpl1"})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
			t.Errorf("deleting a snapshot clones use: %v", err)
		}
		list, err := a.client.ListSnapshots(ctx, connect.NewRequest(&pb.ListSnapshotsRequest{}))
		if err != nil || len(list.Msg.Snapshots) != 1 || list.Msg.Snapshots[0].Name != "tpl1" {
			t.Fatalf("list: %v %v", list, err)
		}
		for _, id := range []string{"clone1", "clone2", "src"} {
			if _, err := a.client.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id})); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := a.client.DeleteSnapshot(ctx, connect.NewRequest(&pb.DeleteSnapshotRequest{Name: "tpl1"})); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(tplDir); !os.IsNotExist(err) {
			t.Errorf("snapshot directory left: %v", err)
		}
		a.stop(t, syscall.SIGTERM)
		assertNoLeftovers(t, a.stateDir)
	})
}

// A pause or snapshot that runs out of disk fails with a clear error and
// the sandbox keeps running, its files intact. The agent's state lives on
// a small ext4 filesystem that the test fills.
func TestDiskFullDuringPause(t *testing.T) {
	requireVMs(t)
	forEachRuntime(t, diskFullDuringPause)
}

func diskFullDuringPause(t *testing.T, rt string) {
	state := smallFilesystem(t, 192)
	a := startAgent(t, state, "--runtime", rt)
	ctx := context.Background()
	create(t, a, "full1", nil)
	if _, err := a.client.WriteFile(ctx, connect.NewRequest(&pb.WriteFileRequest{SandboxId: "full1", Path: "/home/user/kept.txt", Content: []byte("still here")})); err != nil {
		t.Fatal(err)
	}
	// Nothing of the guest's waits to be written to its disk layer; then
	// leave 16 MiB free, where a pause needs tens.
	execIn(t, a, "full1", "sync")
	filler := fillDisk(t, state, 16<<20)
	before := freeBytes(t, state)

	_, err := a.client.PauseSandbox(ctx, connect.NewRequest(&pb.PauseSandboxRequest{SandboxId: "full1"}))
	if err == nil {
		t.Fatal("pause succeeded on a full disk")
	}
	if !strings.Contains(strings.ToLower(err.Error()), "space") {
		t.Errorf("pause error does not say the disk is full: %v", err)
	}
	_, err = a.client.CreateSnapshot(ctx, connect.NewRequest(&pb.CreateSnapshotRequest{SandboxId: "full1", Name: "nospace"}))
	if err == nil || connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("snapshot on a full disk: %v", err)
	}
	if s := sandboxState(t, a, "full1"); s.State != pb.SandboxState_SANDBOX_STATE_RUNNING {
		t.Fatalf("after the failed pause the sandbox is %s (%s)", s.State, s.Error)
	}
	// What the failed attempts wrote was given back.
	if after := freeBytes(t, state); after < before-2<<20 {
		t.Errorf("the failed pauses kept %d MiB of the little space left", (before-after)>>20)
	}
	got, err := a.client.ReadFile(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: "full1", Path: "/home/user/kept.txt"}))
	if err != nil || string(got.Msg.Content) != "still here" {
		t.Fatalf("file after the failed pause: %q %v", got.Msg.GetContent(), err)
	}
	if r := execIn(t, a, "full1", "echo alive"); string(r.Stdout) != "alive\n" {
		t.Fatalf("exec after the failed pause: %q", r.Stdout)
	}
	// With room again, the pause works.
	os.Remove(filler)
	if _, err := a.client.PauseSandbox(ctx, connect.NewRequest(&pb.PauseSandboxRequest{SandboxId: "full1"})); err != nil {
		t.Fatalf("pause with room: %v", err)
	}
	if _, err := a.client.ResumeSandbox(ctx, connect.NewRequest(&pb.ResumeSandboxRequest{SandboxId: "full1"})); err != nil {
		t.Fatalf("resume: %v", err)
	}
	got, err = a.client.ReadFile(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: "full1", Path: "/home/user/kept.txt"}))
	if err != nil || string(got.Msg.Content) != "still here" {
		t.Fatalf("file after resume: %v", err)
	}
	a.stop(t, syscall.SIGTERM)
	assertNoLeftovers(t, a.stateDir)
}

// A QEMU guest whose disk layer cannot grow because the host disk is full
// is stopped by QEMU with its write kept; it continues on its own once
// there is room, and the write lands.
func TestGuestOnFullDiskContinues(t *testing.T) {
	requireVMs(t)
	state := smallFilesystem(t, 192)
	a := startAgent(t, state, "--runtime", "qemu")
	ctx := context.Background()
	create(t, a, "fill1", nil)
	filler := fillDisk(t, state, 1<<20)
	startBackground(t, a, "fill1", "dd if=/dev/urandom of=/home/user/big bs=1M count=24 && sync && echo done > /home/user/done")
	waitfor.True(t, 60*time.Second, "the agent to report the guest stopped on the full disk", func() bool {
		return a.logged("the host disk is full")
	})
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, 60*time.Second, "the guest to finish its write", func() bool {
		got, err := a.client.ReadFile(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: "fill1", Path: "/home/user/done"}))
		return err == nil && string(got.Msg.Content) == "done\n"
	})
	if r := execIn(t, a, "fill1", "stat -c %s /home/user/big"); string(r.Stdout) != fmt.Sprintln(24<<20) {
		t.Fatalf("size of the file written across the stop: %q", r.Stdout)
	}
	if !a.logged("guest continues") {
		t.Error("the agent did not log that the guest continued")
	}
	if _, err := a.client.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: "fill1"})); err != nil {
		t.Fatal(err)
	}
	a.stop(t, syscall.SIGTERM)
	assertNoLeftovers(t, a.stateDir)
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// fillDisk fills the filesystem of dir but for about leave bytes and
// returns the file that holds the space.
func fillDisk(t *testing.T, dir string, leave int64) string {
	t.Helper()
	filler := filepath.Join(dir, "filler")
	free := freeBytes(t, dir) - leave
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for written := int64(0); written < free; written += int64(len(chunk)) {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	return filler
}

// smallFilesystem mounts an ext4 filesystem of sizeMiB (no blocks reserved
// for root, who could otherwise write on when it is "full") for the test.
func smallFilesystem(t *testing.T, sizeMiB int64) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, sizeMiB<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-m", "0", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount %s: %v: %s", img, err, out)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// An agent killed (SIGKILL) while its sandbox runs, or in the middle of
// pausing it, comes back with the sandbox paused and resumable: files
// intact, nothing lost, nothing leaked.
func TestAgentKilledMidPause(t *testing.T) {
	requireVMs(t)
	forEachRuntime(t, func(t *testing.T, rt string) {
		ctx := context.Background()
		state := t.TempDir()
		for i, when := range []string{"while running", "mid-pause"} {
			a := startAgent(t, state, "--runtime", rt)
			id := fmt.Sprintf("kill%d", i)
			create(t, a, id, nil)
			if _, err := a.client.WriteFile(ctx, connect.NewRequest(&pb.WriteFileRequest{SandboxId: id, Path: "/home/user/kept.txt", Content: []byte("kept " + when)})); err != nil {
				t.Fatal(err)
			}
			if when == "mid-pause" {
				go func() { _, _ = a.client.PauseSandbox(ctx, connect.NewRequest(&pb.PauseSandboxRequest{SandboxId: id})) }()
				// Killed once the pause has begun (rarely, a quick one has ended).
				waitfor.True(t, 30*time.Second, "the pause to begin", func() bool {
					st := sandboxState(t, a, id).State
					return st == pb.SandboxState_SANDBOX_STATE_PAUSING || st == pb.SandboxState_SANDBOX_STATE_PAUSED
				})
			}
			a.stop(t, syscall.SIGKILL)

			a = startAgent(t, state, "--runtime", rt)
			s := sandboxState(t, a, id)
			if s.State != pb.SandboxState_SANDBOX_STATE_PAUSED && s.State != pb.SandboxState_SANDBOX_STATE_RUNNING {
				t.Fatalf("%s: after the restart the sandbox is %s", when, s.State)
			}
			if _, err := a.client.ResumeSandbox(ctx, connect.NewRequest(&pb.ResumeSandboxRequest{SandboxId: id, TimeoutSeconds: 300})); err != nil {
				t.Fatalf("%s: resume after the restart: %v", when, err)
			}
			got, err := a.client.ReadFile(ctx, connect.NewRequest(&pb.ReadFileRequest{SandboxId: id, Path: "/home/user/kept.txt"}))
			if err != nil || string(got.Msg.Content) != "kept "+when {
				t.Fatalf("%s: file after the restart: %q %v", when, got.Msg.GetContent(), err)
			}
			if r := execIn(t, a, id, "echo alive"); string(r.Stdout) != "alive\n" {
				t.Fatalf("%s: exec after the restart: %q", when, r.Stdout)
			}
			if _, err := a.client.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id})); err != nil {
				t.Fatal(err)
			}
			a.stop(t, syscall.SIGTERM)
			assertNoLeftovers(t, state)
		}
	})
}
