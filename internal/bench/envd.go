package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
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
	// BigMiB is the size of the upload and download during which envd's
	// peak memory is measured (issue 20: bounded for 1 GiB).
	BigMiB int
	// SDKScript is tests/e2b/bench.mjs (npm ci beside it): the E2B SDK's
	// view of the same envd binary, whose rows join the table. Empty skips it.
	SDKScript string
	Log       io.Writer
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
	if o.BigMiB == 0 {
		o.BigMiB = 1024
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// Envd starts envd and measures process round trips, file transfers and PTY
// throughput, each beside its baseline, envd's memory while it moves a
// large file, and then (with SDKScript) the E2B SDK's view of it.
func Envd(ctx context.Context, o EnvdOptions) ([]Row, error) {
	o.defaults()
	dir, err := os.MkdirTemp(o.Dir, "wrenn-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	// envd and every baseline process get the same clean HOME, so that a
	// login shell's profile costs the same on both sides.
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + filepath.Join(dir, "home"), "LANG=C.UTF-8"}
	if err := os.Mkdir(filepath.Join(dir, "home"), 0o755); err != nil {
		return nil, err
	}

	e, err := startEnvd(ctx, o.EnvdBin, env)
	if err != nil {
		return nil, err
	}
	defer e.stop()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer client.CloseIdleConnections()
	proc := processconnect.NewProcessClient(client, e.url)

	rows := []Row{e.memory("envd resident memory, idle after start")}
	fmt.Fprintln(o.Log, "process round trips…")
	r, err := benchProcess(ctx, proc, o.Runs, env)
	if err != nil {
		return nil, err
	}
	rows = append(rows, r...)

	fmt.Fprintf(o.Log, "%d MiB transfers…\n", o.FileMiB)
	r, err = benchFiles(ctx, client, e.url, dir, o.FileMiB, o.FileRuns)
	if err != nil {
		return nil, err
	}
	rows = append(rows, r...)

	fmt.Fprintf(o.Log, "%d MB PTY burst…\n", o.PtyMB)
	r, err = benchPty(ctx, proc, o.PtyMB, env)
	if err != nil {
		return nil, err
	}
	rows = append(rows, r...)
	rows = append(rows, e.memory("envd resident memory after the runs"))
	e.stop()

	fmt.Fprintf(o.Log, "%d MiB upload and download, envd's peak memory…\n", o.BigMiB)
	r, err = benchBigTransfer(ctx, o.EnvdBin, env, dir, o.BigMiB)
	if err != nil {
		return nil, err
	}
	rows = append(rows, r...)

	if o.SDKScript != "" {
		fmt.Fprintln(o.Log, "the E2B SDK against the same envd…")
		r, err := benchSDK(ctx, o.SDKScript, o.EnvdBin)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r...)
	}
	return rows, nil
}

// runningEnvd is one envd started in --local mode for a benchmark.
type runningEnvd struct {
	url  string
	cmd  *exec.Cmd
	once sync.Once
}

func startEnvd(ctx context.Context, bin string, env []string) (*runningEnvd, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "--local", "--port", strconv.Itoa(port))
	cmd.Env = env
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start envd %s: %w", bin, err)
	}
	e := &runningEnvd{url: "http://127.0.0.1:" + strconv.Itoa(port), cmd: cmd}
	if err := waitListening(e.url + "/health"); err != nil {
		e.stop()
		return nil, fmt.Errorf("envd: %w", err)
	}
	return e, nil
}

func (e *runningEnvd) stop() {
	e.once.Do(func() {
		_ = e.cmd.Process.Signal(os.Interrupt)
		_ = e.cmd.Wait()
	})
}

// status reads a "VmRSS"-style field of envd's /proc status, in MB.
func (e *runningEnvd) status(field string) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", e.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if f := bytes.Fields(line); len(f) >= 2 && string(f[0]) == field+":" {
			kb, err := strconv.Atoi(string(f[1]))
			if err != nil {
				return 0, err
			}
			return float64(kb) / 1024, nil
		}
	}
	return 0, fmt.Errorf("no %s in envd's status", field)
}

func (e *runningEnvd) memory(what string) Row {
	rss := "n/a"
	if mb, err := e.status("VmRSS"); err == nil {
		rss = fmt.Sprintf("%.1f MB", mb)
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

func benchProcess(ctx context.Context, proc processconnect.ProcessClient, n int, env []string) ([]Row, error) {
	truePath, err := exec.LookPath("true")
	if err != nil {
		return nil, err
	}
	bashPath, err := exec.LookPath("bash")
	if err != nil {
		return nil, err
	}
	direct := func(path string, args ...string) error {
		cmd := exec.Command(path, args...)
		cmd.Env = env
		return cmd.Run()
	}
	// Warm up both paths.
	for range 10 {
		if err := runTrue(ctx, proc, truePath); err != nil {
			return nil, err
		}
		_ = direct(truePath)
	}
	// Interleave so that machine noise hits both alike.
	var viaEnvd, viaDirect, viaEnvdBash, directBash []time.Duration
	for range n {
		d, err := timeN(1, func() error { return runTrue(ctx, proc, truePath) })
		if err != nil {
			return nil, err
		}
		viaEnvd = append(viaEnvd, d...)
		d, err = timeN(1, func() error { return direct(truePath) })
		if err != nil {
			return nil, err
		}
		viaDirect = append(viaDirect, d...)
	}
	for range bashRuns {
		d, err := timeN(1, func() error { return runTrue(ctx, proc, bashPath, "-l", "-c", "true") })
		if err != nil {
			return nil, err
		}
		viaEnvdBash = append(viaEnvdBash, d...)
		d, err = timeN(1, func() error { return direct(bashPath, "-l", "-c", "true") })
		if err != nil {
			return nil, err
		}
		directBash = append(directBash, d...)
	}
	overhead := Median(viaEnvd) - Median(viaDirect)
	return []Row{
		{Metric: fmt.Sprintf("Start→end of `true` (median of %d)", n), Wrenn: Ms(Median(viaEnvd)), Baseline: "fork/exec+wait: " + Ms(Median(viaDirect)), Ratio: "overhead " + Ms(overhead), Target: "overhead < 3 ms"},
		{Metric: fmt.Sprintf("Start→end of `true` (p95 of %d)", n), Wrenn: Ms(Percentile(viaEnvd, 95)), Baseline: "fork/exec+wait: " + Ms(Percentile(viaDirect, 95)), Ratio: "", Target: ""},
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

func benchPty(ctx context.Context, proc processconnect.ProcessClient, mb int, env []string) ([]Row, error) {
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
	cmd.Env = env
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

// benchBigTransfer starts a fresh envd and moves a large file through it:
// a multipart upload (the SDK's default) streamed from memory, then its
// download. envd's peak resident memory (VmHWM) over both is the figure.
func benchBigTransfer(ctx context.Context, bin string, env []string, dir string, mib int) ([]Row, error) {
	e, err := startEnvd(ctx, bin, env)
	if err != nil {
		return nil, err
	}
	defer e.stop()
	idle, err := e.status("VmRSS")
	if err != nil {
		return nil, err
	}
	size := int64(mib) << 20
	target := filepath.Join(dir, "big.bin")
	defer os.Remove(target)

	block := make([]byte, 1<<20)
	if _, err := rand.Read(block); err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		fw, err := mw.CreateFormFile("file", target)
		if err == nil {
			for left := size; left > 0 && err == nil; left -= int64(len(block)) {
				_, err = fw.Write(block[:min(int64(len(block)), left)])
			}
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	client := &http.Client{}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/files", pr)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("upload %d MiB: %w", mib, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("upload %d MiB: %s %s", mib, resp.Status, body)
	}
	up := time.Since(t0)
	if fi, err := os.Stat(target); err != nil || fi.Size() != size {
		return nil, fmt.Errorf("upload of %d MiB left %v (%v)", mib, fi, err)
	}

	t0 = time.Now()
	resp, err = client.Get(e.url + "/files?" + url.Values{"path": {target}}.Encode())
	if err != nil {
		return nil, fmt.Errorf("download %d MiB: %w", mib, err)
	}
	n, err := io.CopyBuffer(io.Discard, resp.Body, make([]byte, 1<<20))
	resp.Body.Close()
	if err != nil || n != size {
		return nil, fmt.Errorf("download %d MiB: %d bytes, %v", mib, n, err)
	}
	down := time.Since(t0)
	peak, err := e.status("VmHWM")
	if err != nil {
		return nil, err
	}
	mbps := func(d time.Duration) string { return MBps(float64(size) / 1e6 / d.Seconds()) }
	return []Row{{
		Metric:   fmt.Sprintf("envd peak memory over a %d MiB multipart upload and its download", mib),
		Wrenn:    fmt.Sprintf("%.1f MB", peak),
		Baseline: fmt.Sprintf("idle: %.1f MB (upload %s, download %s)", idle, mbps(up), mbps(down)),
		Target:   "bounded: independent of the file's size",
	}}, nil
}

// benchSDK runs tests/e2b/bench.mjs against the same envd binary and takes
// its rows (the script prints them as JSON with --json).
func benchSDK(ctx context.Context, script, envdBin string) ([]Row, error) {
	bin, err := filepath.Abs(envdBin)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "node", filepath.Base(script), bin, "--json")
	cmd.Dir = filepath.Dir(script)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s (run `npm ci` in %s first): %w", script, filepath.Dir(script), err)
	}
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	var got []struct{ Metric, Wrenn, Baseline, Ratio, Target string }
	if err := json.Unmarshal(lines[len(lines)-1], &got); err != nil {
		return nil, fmt.Errorf("%s printed no JSON rows: %w", script, err)
	}
	rows := make([]Row, 0, len(got))
	for _, r := range got {
		rows = append(rows, Row{Metric: "SDK: " + r.Metric, Wrenn: r.Wrenn, Baseline: r.Baseline, Ratio: r.Ratio, Target: r.Target})
	}
	return rows, nil
}
