package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/devstack"
	"git.omukk.dev/wrenn/sandbox/pkg/sdk"
)

// SDKsOptions configures the Go SDK against the JS SDK.
type SDKsOptions struct {
	Envd, Init string
	Runtime    string
	// Script is tests/e2b/sdk-compare.mjs (node_modules beside it).
	Script   string
	Creates  int // create → first command, each
	Runs     int // run('true') round trips
	FileRuns int // 64 MiB writes and reads, PTY bursts
	FileMiB  int
	PtyMiB   int // random bytes behind the PTY burst's base64 text
	Log      io.Writer
}

// sdkSamples are one SDK's measurements (the JS script prints the same
// JSON).
type sdkSamples struct {
	CreateFirstRunMs []float64 `json:"create_first_run_ms"`
	RunTrueMs        []float64 `json:"run_true_ms"`
	WriteMBps        []float64 `json:"write_mbps"`
	ReadMBps         []float64 `json:"read_mbps"`
	PtyMBps          []float64 `json:"pty_mbps"`
}

// SDKs starts `wrenn dev` and times the same operations through the Go
// SDK (pkg/sdk, Wrenn's API) and the official JS SDK (E2B's API) against
// it: create to first command, run('true'), 64 MiB write and read, a PTY
// burst. The JS SDK's figures are the baseline.
func SDKs(ctx context.Context, o SDKsOptions) ([]Row, error) {
	var rows []Row
	err := withDev(ctx, o.Envd, o.Init, o.Runtime, func(info devstack.Info) error {
		c, err := sdk.New(sdk.WithoutEnv(), sdk.WithAPIURL(info.APIURL), sdk.WithAPIKey(info.APIKey), sdk.WithSandboxURL(info.ProxyURL))
		if err != nil {
			return err
		}
		fmt.Fprintln(o.Log, "Go SDK…")
		goS, err := goSDKSamples(ctx, c, o)
		if err != nil {
			return fmt.Errorf("Go SDK: %w", err)
		}
		fmt.Fprintln(o.Log, "JS SDK…")
		cmd := exec.CommandContext(ctx, "node", filepath.Base(o.Script))
		cmd.Dir = filepath.Dir(o.Script)
		cmd.Env = append(os.Environ(), info.E2BEnv...)
		cmd.Env = append(cmd.Env, "WRENN_BENCH_CREATES="+strconv.Itoa(o.Creates), "WRENN_BENCH_RUNS="+strconv.Itoa(o.Runs),
			"WRENN_BENCH_FILE_RUNS="+strconv.Itoa(o.FileRuns), "WRENN_BENCH_FILE_MIB="+strconv.Itoa(o.FileMiB),
			"WRENN_BENCH_PTY_FILE=/tmp/burst.txt", "WRENN_BENCH_PTY_BYTES="+strconv.Itoa(o.PtyMiB<<20))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, o.Log
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("JS SDK (%s): %w", o.Script, err)
		}
		var jsS sdkSamples
		if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &jsS); err != nil {
			return fmt.Errorf("JS SDK output %q: %w", out.String(), err)
		}
		ms := func(v float64) string { return fmt.Sprintf("%.1f ms", v) }
		mbps := func(v float64) string { return fmt.Sprintf("%.0f MB/s", v) }
		row := func(metric string, g, j []float64, f func(float64) string, lowerBetter bool) Row {
			gm, jm := MedianFloat(g), MedianFloat(j)
			ratio := "-"
			if jm > 0 && gm > 0 {
				if lowerBetter {
					ratio = fmt.Sprintf("%.2fx the time", gm/jm)
				} else {
					ratio = fmt.Sprintf("%.2fx the speed", gm/jm)
				}
			}
			return Row{Metric: metric, Wrenn: f(gm), Baseline: "JS SDK: " + f(jm), Ratio: ratio, Target: "not slower than the JS SDK"}
		}
		rows = []Row{
			row(fmt.Sprintf("create → first run('true'), median of %d", o.Creates), goS.CreateFirstRunMs, jsS.CreateFirstRunMs, ms, true),
			row(fmt.Sprintf("run('true') round trip, median of %d", o.Runs), goS.RunTrueMs, jsS.RunTrueMs, ms, true),
			row(fmt.Sprintf("write %d MiB, median of %d", o.FileMiB, o.FileRuns), goS.WriteMBps, jsS.WriteMBps, mbps, false),
			row(fmt.Sprintf("read %d MiB, median of %d", o.FileMiB, o.FileRuns), goS.ReadMBps, jsS.ReadMBps, mbps, false),
			row(fmt.Sprintf("PTY burst (%d MiB as base64 text), median of %d", o.PtyMiB, o.FileRuns), goS.PtyMBps, jsS.PtyMBps, mbps, false),
		}
		return nil
	})
	return rows, err
}

func goSDKSamples(ctx context.Context, c *sdk.Client, o SDKsOptions) (sdkSamples, error) {
	var s sdkSamples
	since := func(t time.Time) float64 { return float64(time.Since(t)) / float64(time.Millisecond) }
	for range o.Creates {
		t := time.Now()
		sb, err := c.Create(ctx, sdk.CreateOptions{Template: "minimal"})
		if err != nil {
			return s, err
		}
		if _, err := sb.Commands.Run(ctx, "true"); err != nil {
			return s, err
		}
		s.CreateFirstRunMs = append(s.CreateFirstRunMs, since(t))
		if err := sb.Kill(ctx); err != nil {
			return s, err
		}
	}
	sb, err := c.Create(ctx, sdk.CreateOptions{Template: "minimal", Timeout: 10 * time.Minute})
	if err != nil {
		return s, err
	}
	defer sb.Kill(context.WithoutCancel(ctx))
	if _, err := sb.Commands.Run(ctx, "true"); err != nil {
		return s, err
	}
	for range o.Runs {
		t := time.Now()
		if _, err := sb.Commands.Run(ctx, "true"); err != nil {
			return s, err
		}
		s.RunTrueMs = append(s.RunTrueMs, since(t))
	}
	data := make([]byte, o.FileMiB<<20)
	rand.Read(data)
	for range o.FileRuns {
		t := time.Now()
		if _, err := sb.Files.WriteFile(ctx, "/tmp/bench.bin", data); err != nil {
			return s, err
		}
		s.WriteMBps = append(s.WriteMBps, float64(len(data))/1e6/time.Since(t).Seconds())
		t = time.Now()
		got, err := sb.Files.ReadFile(ctx, "/tmp/bench.bin")
		if err != nil {
			return s, err
		}
		s.ReadMBps = append(s.ReadMBps, float64(len(got))/1e6/time.Since(t).Seconds())
		if !bytes.Equal(got, data) {
			return s, fmt.Errorf("read back %d bytes that differ from the %d written", len(got), len(data))
		}
	}
	if _, err := sb.Commands.Run(ctx, fmt.Sprintf("head -c %d /dev/urandom | base64 > /tmp/burst.txt", o.PtyMiB<<20)); err != nil {
		return s, err
	}
	res, err := sb.Commands.Run(ctx, "wc -c < /tmp/burst.txt")
	if err != nil {
		return s, err
	}
	size, _ := strconv.Atoi(strings.TrimSpace(res.Stdout))
	for range o.FileRuns {
		var n countWriter
		term, err := sb.PTY.Create(ctx, sdk.PTYOptions{Cols: 200, Rows: 50, Output: &n})
		if err != nil {
			return s, err
		}
		t := time.Now()
		if err := term.SendInput(ctx, []byte("cat /tmp/burst.txt; exit\n")); err != nil {
			return s, err
		}
		_, _ = term.Wait(ctx)
		s.PtyMBps = append(s.PtyMBps, float64(size)/1e6/time.Since(t).Seconds())
		if int(n) < size {
			return s, fmt.Errorf("the PTY delivered %d bytes of %d", n, size)
		}
	}
	return s, nil
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}
