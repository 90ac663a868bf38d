// Package console keeps what a guest writes to its console (QEMU's serial
// port, Firecracker's stdout, a gVisor container's stdout and user log) in
// the sandbox's directory, capped: a guest can write without end, and the
// host's disk must not be what absorbs it. Output goes through a pipe to
// a small keeper process, which writes console.log and, once that reaches
// its cap, renames it console.log.1 (replacing the one before) and starts
// again; so a console takes at most twice its cap, in two visible files,
// and each rotation is marked in the log with the bytes seen so far.
//
// The keeper is this same binary started again under another name (see
// init), in a session of its own: it outlives an agent that is killed, so
// that a guest writing to its console never meets a closed pipe, and ends
// when every writer is gone (the guest's process exited).
package console

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// MaxBytes is each console file's cap: 4 MiB unless the agent was told
// otherwise at start (host-agent --console-max-bytes).
var MaxBytes int64 = 4 << 20

// keeperName is the name the keeper runs under (its argv[0]).
const keeperName = "wrenn-console-keeper"

func init() {
	if filepath.Base(os.Args[0]) == keeperName && len(os.Args) == 3 {
		max, err := strconv.ParseInt(os.Args[2], 10, 64)
		if err != nil {
			os.Exit(2)
		}
		if err := keep(os.Stdin, os.Args[1], max); err != nil {
			fmt.Fprintln(os.Stderr, keeperName+":", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// Keeper is a running keeper of one console.
type Keeper struct {
	// W is the pipe's write end to give the guest's process (as its
	// stdout, or a descriptor QEMU opens); close it once that process has
	// its own copy.
	W    *os.File
	Path string
	cmd  *exec.Cmd
}

// Start runs a keeper writing to path, each file capped at maxBytes.
func Start(path string, maxBytes int64) (*Keeper, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command(exe, path, strconv.FormatInt(maxBytes, 10))
	cmd.Args[0] = keeperName
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("start the console keeper: %w", err)
	}
	return &Keeper{W: w, Path: path, cmd: cmd}, nil
}

// CloseWriter closes the agent's copy of the write end.
func (k *Keeper) CloseWriter() {
	if k.W != nil {
		k.W.Close()
		k.W = nil
	}
}

// Wait closes the agent's write end and waits for the keeper, which ends
// once the guest's process (the other writer) has exited.
func (k *Keeper) Wait() {
	k.CloseWriter()
	_ = k.cmd.Wait()
}

// WaitFor is Wait for at most d; a keeper whose writer is still there
// after it (a process that did not go away) is stopped.
func (k *Keeper) WaitFor(d time.Duration) {
	k.CloseWriter()
	done := make(chan struct{})
	go func() {
		_ = k.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		_ = k.cmd.Process.Kill()
		<-done
	}
}

// Stop ends the keeper at once (the guest's process is gone or was never
// started) and waits for it.
func (k *Keeper) Stop() {
	k.CloseWriter()
	_ = k.cmd.Process.Kill()
	_ = k.cmd.Wait()
}

// keep copies src into path until EOF, rotating at max bytes.
func keep(src io.Reader, path string, max int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size, total := fi.Size(), int64(0)
	buf := bufio.NewReaderSize(src, 64<<10)
	chunk := make([]byte, 64<<10)
	for {
		n, rerr := buf.Read(chunk)
		data := chunk[:n]
		for len(data) > 0 {
			room := max - size
			if room <= 0 {
				if f, size, err = rotate(f, path, total); err != nil {
					return err
				}
				continue
			}
			part := data[:min(int64(len(data)), room)]
			if _, err := f.Write(part); err != nil {
				return err
			}
			size += int64(len(part))
			total += int64(len(part))
			data = data[len(part):]
		}
		if rerr == io.EOF {
			return f.Close()
		}
		if rerr != nil {
			return rerr
		}
	}
}

// rotate moves the full file aside and opens a new one, noting it; it
// returns the new file and its size.
func rotate(f *os.File, path string, total int64) (*os.File, int64, error) {
	f.Close()
	if err := os.Rename(path, path+".1"); err != nil {
		return nil, 0, err
	}
	nf, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, 0, err
	}
	n, err := fmt.Fprintf(nf, "[wrenn: console rotated at %s after %d bytes; the previous part is %s]\n", time.Now().UTC().Format(time.RFC3339), total, filepath.Base(path)+".1")
	return nf, int64(n), err
}
