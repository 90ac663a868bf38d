package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"github.com/creack/pty"

	pb "git.omukk.dev/wrenn/sandbox/proto/envd/process"
	"git.omukk.dev/wrenn/sandbox/proto/envd/process/processconnect"
)

// EnvdOptions configures the envd benchmark.
type EnvdOptions struct {
	EnvdBin  string // the envd binary to start in --local mode
	Dir      string // where transferred files are written
	Runs     int    // repetitions of the process round trip
	FileMiB  int    // size of the upload/download file
	FileRuns int    // repetitions of each transfer
	PtyMB    int    // PTY burst size
	Log      io.Writer
}

func (o *EnvdOptions) defaults() {
	if o.Runs == 0 {
		o.Runs = 200
	}
	if o.FileMiB == 0 {
		o.FileMiB = 256
	}
	if o.FileRuns == 0 {
		o.FileRuns = 5
	}
	if o.PtyMB == 0 {
		o.PtyMB = 100
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// Envd starts envd and measures process round trips, file transfers and PTY
// throughput, each beside its baseline.
func Envd(ctx context.Context, o EnvdOptions) ([]Row, error) {
	o.defaults()
	dir, err := os.MkdirTemp(o.Dir, "wrenn-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	base, stop, err := startEnvd(ctx, o.EnvdBin)
	if err != nil {
		return nil, err
	}
	defer stop()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer client.CloseIdleConnections()
	proc := processconnect.NewProcessClient(client, base)

	rows := []Row{envdMemory("envd resident memory, idle after start")}
	fmt.Fprintln(o.Log, "process round trips…")
	r, err := benchProcess(ctx, proc, o.Runs)
	if err != nil {
		return nil, err
	}
	rows = append(rows, r...)

	fmt.Fprintf(o.Log, "%d MiB transfers…\n", o.FileMiB)
	r, err = benchFiles(ctx, client, base, dir, o.FileMiB, o.FileRuns)
	if err != nil {
		return nil, err
	}
	rows = append(rows, r...)

	fmt.Fprintf(o.Log, "%d MB PTY burst…\n", o.PtyMB)
	r, err = benchPty(ctx, proc, o.PtyMB)
	if err != nil {
		return nil, err
	}
	rows = append(rows, r...)

	fmt.Fprintln(o.Log, "envd memory…")
	rows = append(rows, envdMemory("envd resident memory after the runs"))
	return rows, nil
}

var envdPid int

func startEnvd(ctx context.Context, bin string) (string, func(), error) {
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "--local", "--port", strconv.Itoa(port))
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start envd %s: %w", bin, err)
	}
	envdPid = cmd.Process.Pid
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	if err := waitListening(base + "/health"); err != nil {
		stop()
		return "", nil, fmt.Errorf("envd: %w", err)
	}
	return base, stop, nil
}

func envdMemory(what string) Row {
	rss := "n/a"
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", envdPid)); err == nil {
		for _, line := range bytes.Split(b, []byte("\n")) {
			if bytes.HasPrefix(line, []byte("VmRSS:")) {
				f := bytes.Fields(line)
				if kb, err := strconv.Atoi(string(f[1])); err == nil {
					rss = fmt.Sprintf("%.1f MB", float64(kb)/1024)
				}
			}
		}
	}
	return Row{Metric: what, Wrenn: rss, Baseline: "E2B envd: 11.5 MB idle, ~20 MB after its runs (ANCHORS.md)"}
}

func runTrue(ctx context.Context, proc processconnect.ProcessClient, cmd string, args ...string) error {
	f := false
	s, err := proc.Start(ctx, connect.NewRequest(&pb.StartRequest{Process: &pb.ProcessConfig{Cmd: cmd, Args: args}, Stdin: &f}))
	if err != nil {
		return err
	}
	var end *pb.ProcessEvent_EndEvent
	for s.Receive() {
		if e := s.Msg().GetEvent().GetEnd(); e != nil {
			end = e
		}
	}
	if err := s.Err(); err != nil {
		return err
	}
	if end == nil || end.ExitCode != 0 {
		return fmt.Errorf("%s ended with %v", cmd, end)
	}
	return nil
}

func timeN(n int, f func() error) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if err := f(); err != nil {
			return nil, err
		}
		out = append(out, time.Since(t0))
	}
	return out, nil
}

// bashRuns is small: a login shell's profile dominates its time.
const bashRuns = 20

func benchProcess(ctx context.Context, proc processconnect.ProcessClient, n int) ([]Row, error) {
	truePath, err := exec.LookPath("true")
	if err != nil {
		return nil, err
	}
	bashPath, err := exec.LookPath("bash")
	if err != nil {
		return nil, err
	}
	// Warm up both paths.
	for range 10 {
		if err := runTrue(ctx, proc, truePath); err != nil {
			return nil, err
		}
		_ = exec.Command(truePath).Run()
	}
	// Interleave so that machine noise hits both alike.
	var viaEnvd, direct, viaEnvdBash, directBash []time.Duration
	for range n {
		d, err := timeN(1, func() error { return runTrue(ctx, proc, truePath) })
		if err != nil {
			return nil, err
		}
		viaEnvd = append(viaEnvd, d...)
		d, err = timeN(1, func() error { return exec.Command(truePath).Run() })
		if err != nil {
			return nil, err
		}
		direct = append(direct, d...)
	}
	for range bashRuns {
		d, err := timeN(1, func() error { return runTrue(ctx, proc, bashPath, "-l", "-c", "true") })
		if err != nil {
			return nil, err
		}
		viaEnvdBash = append(viaEnvdBash, d...)
		d, err = timeN(1, func() error { return exec.Command(bashPath, "-l", "-c", "true").Run() })
		if err != nil {
			return nil, err
		}
		directBash = append(directBash, d...)
	}
	overhead := Median(viaEnvd) - Median(direct)
	return []Row{
		{Metric: fmt.Sprintf("Start→end of `true` (median of %d)", n), Wrenn: Ms(Median(viaEnvd)), Baseline: "fork/exec+wait: " + Ms(Median(direct)), Ratio: "overhead " + Ms(overhead), Target: "overhead < 3 ms"},
		{Metric: fmt.Sprintf("Start→end of `true` (p95 of %d)", n), Wrenn: Ms(Percentile(viaEnvd, 95)), Baseline: "fork/exec+wait: " + Ms(Percentile(direct, 95)), Ratio: "", Target: ""},
		{Metric: fmt.Sprintf("Start→end of `bash -l -c true` (median of %d)", bashRuns), Wrenn: Ms(Median(viaEnvdBash)), Baseline: "fork/exec+wait: " + Ms(Median(directBash)), Ratio: "overhead " + Ms(Median(viaEnvdBash)-Median(directBash)), Target: "(SDK's commands.run shape)"},
	}, nil
}

// PlainServer is the plain loopback HTTP copy that envd's /files is compared
// with: it writes request bodies to a file in dir and serves dir/src.bin,
// nothing else. The benchmark runs it in its own process, as envd is.
func PlainServer(ln net.Listener, dir string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /up", func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Create(filepath.Join(dir, filepath.Base(r.URL.Query().Get("name"))))
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer f.Close()
		buf := make([]byte, 1<<20)
		if _, err := io.CopyBuffer(struct{ io.Writer }{f}, r.Body, buf); err != nil {
			http.Error(w, err.Error(), 500)
		}
	})
	mux.HandleFunc("GET /down", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(dir, "src.bin"))
	})
	return http.Serve(ln, mux)
}

// startPlainServer runs PlainServer in a child process (this executable,
// with PlainServerArg), so both sides of the comparison cross processes.
func startPlainServer(ctx context.Context, dir string) (string, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.CommandContext(ctx, self, PlainServerArg, strconv.Itoa(port), dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start baseline server: %w", err)
	}
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	if err := waitListening(base + "/down"); err != nil {
		stop()
		return "", nil, err
	}
	return base, stop, nil
}

// PlainServerArg is the hidden command that runs PlainServer.
const PlainServerArg = "__bench-plain-http-server"

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitListening(u string) error {
	for range 200 {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer within 5s", u)
}

func benchFiles(ctx context.Context, client *http.Client, base, dir string, mib, runs int) ([]Row, error) {
	size := int64(mib) << 20
	src := filepath.Join(dir, "src.bin")
	f, err := os.Create(src)
	if err != nil {
		return nil, err
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		f.Close()
		return nil, err
	}
	f.Close()
	plain, stopPlain, err := startPlainServer(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer stopPlain()

	upload := func(u string) error {
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, f)
		if err != nil {
			return err
		}
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Errorf("upload to %s: %s", u, resp.Status)
		}
		return nil
	}
	download := func(u string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		n, err := io.CopyBuffer(io.Discard, resp.Body, make([]byte, 1<<20))
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 || n != size {
			return fmt.Errorf("download from %s: %s, %d bytes", u, resp.Status, n)
		}
		return nil
	}
	envdDown := base + "/files?" + url.Values{"path": {src}}.Encode()

	// Every upload goes to a new file and is deleted after it is timed, on
	// both sides: freeing a large file's blocks (with online discard, as
	// here) costs more than writing it, and is no part of the transfer.
	mbps := func(d time.Duration) float64 { return float64(size) / 1e6 / d.Seconds() }
	var upE, upB, downE, downB []float64
	for i := range runs {
		envdTarget := filepath.Join(dir, fmt.Sprintf("envd-up-%d.bin", i))
		plainTarget := filepath.Join(dir, fmt.Sprintf("plain-up-%d.bin", i))
		for _, c := range []struct {
			f       func(string) error
			u       string
			out     *[]float64
			written string
		}{
			{upload, base + "/files?" + url.Values{"path": {envdTarget}}.Encode(), &upE, envdTarget},
			{upload, plain + "/up?name=" + filepath.Base(plainTarget), &upB, plainTarget},
			{download, envdDown, &downE, ""},
			{download, plain + "/down", &downB, ""},
		} {
			t0 := time.Now()
			if err := c.f(c.u); err != nil {
				return nil, err
			}
			*c.out = append(*c.out, mbps(time.Since(t0)))
			if c.written != "" {
				if err := os.Remove(c.written); err != nil {
					return nil, fmt.Errorf("upload did not write %s: %w", c.written, err)
				}
			}
		}
	}
	pct := func(a, b float64) string { return fmt.Sprintf("%.0f%% of baseline", 100*a/b) }
	return []Row{
		{Metric: fmt.Sprintf("POST /files %d MiB (median of %d)", mib, runs), Wrenn: MBps(MedianFloat(upE)), Baseline: "plain HTTP: " + MBps(MedianFloat(upB)), Ratio: pct(MedianFloat(upE), MedianFloat(upB)), Target: "≥ 70%"},
		{Metric: fmt.Sprintf("GET /files %d MiB (median of %d)", mib, runs), Wrenn: MBps(MedianFloat(downE)), Baseline: "plain HTTP: " + MBps(MedianFloat(downB)), Ratio: pct(MedianFloat(downE), MedianFloat(downB)), Target: "≥ 70%"},
	}, nil
}

func benchPty(ctx context.Context, proc processconnect.ProcessClient, mb int) ([]Row, error) {
	total := int64(mb) * 1_000_000
	script := fmt.Sprintf("stty raw -echo; head -c %d /dev/zero | tr '\\0' 'w'", total)

	t0 := time.Now()
	s, err := proc.Start(ctx, connect.NewRequest(&pb.StartRequest{
		Process: &pb.ProcessConfig{Cmd: "/bin/bash", Args: []string{"-c", script}},
		Pty:     &pb.PTY{Size: &pb.PTY_Size{Cols: 200, Rows: 50}},
	}))
	if err != nil {
		return nil, err
	}
	var got int64
	for s.Receive() {
		got += int64(len(s.Msg().GetEvent().GetData().GetPty()))
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	envdRate := float64(got) / 1e6 / time.Since(t0).Seconds()

	// Baseline: the same command on a local PTY, read directly.
	cmd := exec.CommandContext(ctx, "/bin/bash", "-c", script)
	t0 = time.Now()
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: 200, Rows: 50})
	if err != nil {
		return nil, err
	}
	n, _ := io.CopyBuffer(io.Discard, tty, make([]byte, 64<<10))
	cmd.Wait()
	tty.Close()
	localRate := float64(n) / 1e6 / time.Since(t0).Seconds()

	return []Row{
		{Metric: fmt.Sprintf("PTY burst of %d MB to one client: bytes lost", mb), Wrenn: strconv.FormatInt(total-got, 10), Baseline: fmt.Sprintf("local PTY read: lost %d", total-n), Ratio: "", Target: "0"},
		{Metric: fmt.Sprintf("PTY burst of %d MB: throughput", mb), Wrenn: MBps(envdRate), Baseline: "local PTY: " + MBps(localRate), Ratio: fmt.Sprintf("%.0f%% of local", 100*envdRate/localRate), Target: "(E2B envd: 12 MB/s)"},
	}, nil
}
