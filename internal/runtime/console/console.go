// Package console keeps what a guest writes to its console (QEMU's serial
// port, Firecracker's stdout, a gVisor container's stdout and user log) in
// the sandbox's directory, capped: a guest can write without end, and the
// host's disk must not be what absorbs it. Output goes through a pipe to
// a small keeper process, which writes console.log and, once that reaches
// its cap, renames it console.log.1 (replacing the one before) and starts
// again; so a console takes at most twice its cap, in two visible files,
// and each rotation is marked in the log with the bytes seen so far.
//
// Every line is stamped by the keeper, on the host, with the time its
// first byte arrived (a fixed-width UTC timestamp and a space, see
// StampLayout): the guest's own clock is neither trusted nor always right
// (it is set only at /init). Stamps never repeat or go backwards within a
// console, across keepers too (a resumed guest's keeper starts after the
// last stamp in the file), so a stamp is a cursor for reading the log in
// pages (read.go).
//
// The keeper is this same binary started again under another name (see
// init), in a session of its own: it outlives an agent that is killed, so
// that a guest writing to its console never meets a closed pipe, and ends
// when every writer is gone (the guest's process exited).
package console

import (
	"bufio"
	"bytes"
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

// keep copies src into path until EOF, stamping each line and rotating
// at max bytes.
func keep(src io.Reader, path string, max int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	k := &keeper{f: f, path: path, max: max, size: fi.Size(), lineStart: true}
	k.clock.last = lastStamp(f, fi.Size())
	if k.size > 0 && !endsWithNewline(f, fi.Size()) {
		// The previous keeper's guest stopped mid-line; this one's
		// output starts a line of its own.
		if err := k.write([]byte("\n")); err != nil {
			return err
		}
	}
	buf := bufio.NewReaderSize(src, 64<<10)
	chunk := make([]byte, 64<<10)
	for {
		n, rerr := buf.Read(chunk)
		if err := k.copy(chunk[:n]); err != nil {
			return err
		}
		if rerr == io.EOF {
			return k.f.Close()
		}
		if rerr != nil {
			return rerr
		}
	}
}

// keeper is the state of one keep: the file, its size, and whether the
// next byte starts a line (and so gets a stamp first).
type keeper struct {
	f         *os.File
	path      string
	max, size int64
	total     int64 // bytes of the guest's seen by this keeper
	lineStart bool
	clock     stampClock
}

// copy writes the guest's bytes, a stamp before each line.
func (k *keeper) copy(data []byte) error {
	for len(data) > 0 {
		if k.lineStart {
			if k.max-k.size <= min(k.max/8, MaxLine+int64(len(StampLayout))+1) {
				// Little room left: rotate between lines, so that
				// lines of a usual length are never cut in two.
				if err := k.rotate(); err != nil {
					return err
				}
			}
			if err := k.write(k.clock.next(time.Now()).AppendFormat(nil, StampLayout+" ")); err != nil {
				return err
			}
			k.lineStart = false
		}
		line, ends := data, false
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, ends = data[:i+1], true
		}
		if err := k.write(line); err != nil {
			return err
		}
		k.lineStart = ends
		k.total += int64(len(line))
		data = data[len(line):]
	}
	return nil
}

// write appends p, rotating first whenever the file is full; a line cut
// by a rotation goes on, stamped again, after the rotation's note.
func (k *keeper) write(p []byte) error {
	for len(p) > 0 {
		room := k.max - k.size
		if room <= 0 {
			if err := k.rotate(); err != nil {
				return err
			}
			room = k.max - k.size
			if room <= 0 { // a cap smaller than the note: keep what fits
				return nil
			}
		}
		part := p[:min(int64(len(p)), room)]
		if _, err := k.f.Write(part); err != nil {
			return err
		}
		k.size += int64(len(part))
		p = p[len(part):]
	}
	return nil
}

// rotate moves the full file aside and opens a new one that starts with
// a note of it.
func (k *keeper) rotate() error {
	k.f.Close()
	if err := os.Rename(k.path, k.path+".1"); err != nil {
		return err
	}
	nf, err := os.OpenFile(k.path, os.O_CREATE|os.O_RDWR|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	now := k.clock.next(time.Now())
	note := fmt.Appendf(now.AppendFormat(nil, StampLayout+" "), "%s console rotated at %s after %d bytes; the previous part is %s]\n",
		rotationNote, now.Format(time.RFC3339), k.total, filepath.Base(k.path)+".1")
	k.f, k.size = nf, 0
	if _, err := nf.Write(note); err != nil {
		return err
	}
	k.size = int64(len(note))
	if !k.lineStart {
		// The guest's line goes on in the new file: stamp it again.
		stamp := k.clock.next(time.Now()).AppendFormat(nil, StampLayout+" ")
		if _, err := nf.Write(stamp); err != nil {
			return err
		}
		k.size += int64(len(stamp))
	}
	return nil
}

// rotationNote starts the line a rotation writes.
const rotationNote = "[wrenn:"

// stampClock hands out strictly increasing stamps, so that each line's
// stamp names it.
type stampClock struct{ last time.Time }

func (c *stampClock) next(now time.Time) time.Time {
	now = now.UTC().Truncate(time.Nanosecond)
	if !now.After(c.last) {
		now = c.last.Add(time.Nanosecond)
	}
	c.last = now
	return now
}

// lastStamp is the stamp of the last stamped line in the first size
// bytes of f, or the zero time.
func lastStamp(f *os.File, size int64) time.Time {
	off := max(0, size-64<<10)
	b := make([]byte, size-off)
	if n, err := f.ReadAt(b, off); err != nil && err != io.EOF || n < len(b) {
		return time.Time{}
	}
	lines := bytes.Split(b, []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		if t, _, ok := cutStamp(lines[i]); ok {
			return t
		}
	}
	return time.Time{}
}

func endsWithNewline(f *os.File, size int64) bool {
	b := make([]byte, 1)
	_, err := f.ReadAt(b, size-1)
	return err == nil && b[0] == '\n'
}
