package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/internal/guestimage"
	"git.omukk.dev/wrenn/sandbox/internal/runtime"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

// SnapshotOptions configures the pause/resume benchmark.
type SnapshotOptions struct {
	Envd, Init string
	Accel      string
	Runs       int // pause/resume cycles
	Concurrent int // sandboxes resumed at once
	Log        io.Writer
}

// Snapshot measures pause and resume through an agent (QEMU), the bytes a
// pause writes, and concurrent resumes; the baseline is create-to-ready of
// the same image in the same run.
func Snapshot(ctx context.Context, o SnapshotOptions) ([]Row, error) {
	if o.Runs == 0 {
		o.Runs = 5
	}
	if o.Concurrent == 0 {
		o.Concurrent = 8
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	state, err := os.MkdirTemp("", "wrenn-bench-snap-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(state)
	if _, err := guestimage.Build(ctx, guestimage.Options{Name: "minimal", Dir: filepath.Join(state, "images"), Envd: o.Envd, Init: o.Init, Progress: o.Log}); err != nil {
		return nil, err
	}
	runtimes := []string{"qemu"}
	if _, err := exec.LookPath("runsc"); err == nil {
		runtimes = append(runtimes, "gvisor")
	}
	var rows []Row
	for _, rt := range runtimes {
		r, err := snapshotRuntime(ctx, o, state, rt)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rt, err)
		}
		rows = append(rows, r...)
	}
	return rows, nil
}

func snapshotRuntime(ctx context.Context, o SnapshotOptions, state, rt string) ([]Row, error) {
	c, stop, err := startAgent(ctx, state, rt, o.Accel)
	if err != nil {
		return nil, err
	}
	defer stop()
	create := func(id string) (time.Duration, error) {
		t0 := time.Now()
		_, err := c.CreateSandbox(ctx, connect.NewRequest(&pb.CreateSandboxRequest{SandboxId: id, Template: "minimal", TimeoutSeconds: 3600}))
		return time.Since(t0), err
	}
	pause := func(id string) (time.Duration, error) {
		t0 := time.Now()
		_, err := c.PauseSandbox(ctx, connect.NewRequest(&pb.PauseSandboxRequest{SandboxId: id}))
		return time.Since(t0), err
	}
	resume := func(id string) (time.Duration, error) {
		t0 := time.Now()
		_, err := c.ResumeSandbox(ctx, connect.NewRequest(&pb.ResumeSandboxRequest{SandboxId: id}))
		return time.Since(t0), err
	}
	dir := filepath.Join(state, "sandboxes", "snap0")

	fmt.Fprintf(o.Log, "%s: create…\n", rt)
	createTime, err := create("snap0")
	if err != nil {
		return nil, err
	}
	var pauses, resumes []time.Duration
	var firstBytes, laterBytes int64
	for i := range o.Runs {
		fmt.Fprintf(o.Log, "pause/resume %d/%d…\n", i+1, o.Runs)
		// What the machine wrote before (the image build, the guest's own
		// disk) goes to the device now rather than during the pause.
		syscall.Sync()
		before := deviceWritten(dir)
		d, err := pause("snap0")
		if err != nil {
			return nil, err
		}
		written := deviceWritten(dir) - before
		if i == 0 {
			firstBytes = written
		} else if i == 1 {
			laterBytes = written
		}
		pauses = append(pauses, d)
		d, err = resume("snap0")
		if err != nil {
			return nil, err
		}
		resumes = append(resumes, d)
		time.Sleep(2 * time.Second) // idle
	}

	fmt.Fprintln(o.Log, "snapshot template and clones…")
	if _, err := c.CreateSnapshot(ctx, connect.NewRequest(&pb.CreateSnapshotRequest{SandboxId: "snap0", Name: "tpl-" + rt})); err != nil {
		return nil, err
	}
	var clones []time.Duration
	for i := range o.Runs {
		t0 := time.Now()
		id := fmt.Sprintf("clone%d", i)
		if _, err := c.CreateSandbox(ctx, connect.NewRequest(&pb.CreateSandboxRequest{SandboxId: id, Snapshot: "tpl-" + rt, TimeoutSeconds: 3600})); err != nil {
			return nil, err
		}
		clones = append(clones, time.Since(t0))
		if _, err := c.DestroySandbox(ctx, connect.NewRequest(&pb.DestroySandboxRequest{SandboxId: id})); err != nil {
			return nil, err
		}
	}

	fmt.Fprintf(o.Log, "%d sandboxes, paused, resumed at once…\n", o.Concurrent)
	var wg sync.WaitGroup
	errs := make([]error, o.Concurrent)
	for i := range o.Concurrent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("conc%d", i)
			if _, errs[i] = create(id); errs[i] == nil {
				_, errs[i] = pause(id)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	conc := make([]time.Duration, o.Concurrent)
	t0 := time.Now()
	for i := range o.Concurrent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conc[i], errs[i] = resume(fmt.Sprintf("conc%d", i))
		}()
	}
	wg.Wait()
	total := time.Since(t0)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return []Row{
		{Metric: fmt.Sprintf("%s: pause, 256 MiB guest (median of %d)", rt, o.Runs), Wrenn: Ms(Median(pauses)), Baseline: "E2B: ~1 s per 256 MiB (4 s/GiB)"},
		{Metric: fmt.Sprintf("%s: resume to ready (median of %d)", rt, o.Runs), Wrenn: Ms(Median(resumes)), Baseline: "create to ready, same run: " + Ms(createTime), Ratio: fmt.Sprintf("%.2f× create", float64(Median(resumes))/float64(createTime)), Target: "< 1.5 s"},
		{Metric: fmt.Sprintf("%s: clone from a snapshot template to ready (median of %d)", rt, o.Runs), Wrenn: Ms(Median(clones)), Baseline: "create to ready, same run: " + Ms(createTime), Ratio: fmt.Sprintf("%.2f× create", float64(Median(clones))/float64(createTime))},
		{Metric: rt + ": bytes written to disk by the first pause", Wrenn: humanMiB(firstBytes), Baseline: "on disk after it: " + humanMiB(runtime.AllocatedBytes(dir))},
		{Metric: rt + ": bytes written by the second pause of an idle sandbox", Wrenn: humanMiB(laterBytes), Ratio: fmt.Sprintf("%.1f%% of the first", 100*float64(laterBytes)/float64(max(firstBytes, 1))), Target: "< 10%"},
		{Metric: fmt.Sprintf("%s: %d concurrent resumes", rt, o.Concurrent), Wrenn: fmt.Sprintf("all ready in %s, slowest %s", Ms(total), Ms(Percentile(conc, 100))), Ratio: fmt.Sprintf("median %s", Ms(Median(conc)))},
	}, nil
}

// deviceWritten is the bytes written so far to the block device holding
// path (from its sysfs stat); the machine's other writes are noise in it.
func deviceWritten(path string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	major, minor := (st.Dev>>8)&0xfff, (st.Dev&0xff)|((st.Dev>>12)&0xfff00)
	b, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/stat", major, minor))
	if err != nil {
		return 0
	}
	var f [11]int64
	fmt.Sscan(string(b), &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6])
	return f[6] * 512
}
