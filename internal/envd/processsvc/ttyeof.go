package processsvc

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Terminal input is written so that nothing waits in the line discipline
// behind an end of input.
//
// In canonical mode, the VEOF character (Ctrl-D) at the start of a line
// makes the reader's read return 0: cat, sort or a shell's read see the
// end of their input. gVisor's line discipline (devpts) loses that end
// when more input is already queued behind it by the time the reader gets
// there: the read that should return 0 moves the queued bytes into the
// line and reports "would block", so the reader never sees the end and
// reads on. Ctrl-D followed by typing ahead (or a client's keystroke
// batching, which puts Ctrl-D and the keys after it in one write) left
// cat running and fed it the next command. Linux's n_tty keeps the end in
// its buffer; there this only orders what Linux orders anyway.
//
// So while the terminal is canonical, input is cut after a VEOF that may
// stand at the start of a line, and what follows waits until the end has
// been read: until a process under the terminal's process ends (cat, or
// whatever read it, ends; the usual case), the terminal's process itself
// ends, or eofHold passes (a reader that reads on after the end, such as
// a shell's read loop, cannot be observed).

const (
	eofHold = 500 * time.Millisecond
	eofPoll = 2 * time.Millisecond
	// maxWatched bounds the processes followed while an end is pending.
	maxWatched = 64
)

// pendingEOF is an end of input written to a terminal that its reader may
// not have read yet.
type pendingEOF struct {
	until time.Time
	// under are the processes under the terminal's process when it was
	// written; one of them ending means a reader took the end.
	under []int
}

// writeTerminal types data into the terminal. Precondition: p.inMu held.
func (p *proc) writeTerminal(data []byte) error {
	for len(data) > 0 {
		p.awaitEOFRead()
		n, eof := len(data), false
		if veof, ok := p.canonicalEOF(); ok {
			for i, c := range data {
				if c == veof && p.mayStartLine(data, i) {
					n, eof = i+1, true
					break
				}
			}
		}
		var pending *pendingEOF
		if eof {
			pending = &pendingEOF{under: descendants(int(p.pid))}
		}
		if _, err := p.tty.Write(data[:n]); err != nil {
			return err
		}
		p.lastIn = data[n-1]
		if pending != nil {
			pending.until = time.Now().Add(eofHold)
			p.eof = pending
		}
		data = data[n:]
	}
	return nil
}

// mayStartLine tells whether data[i] may be the first character of a line:
// whatever precedes it is a control character (a line end, an erase, an
// earlier end) or nothing. After plain text, VEOF only hands that text
// over and ends nothing.
func (p *proc) mayStartLine(data []byte, i int) bool {
	prev := p.lastIn // 0 before the first input
	if i > 0 {
		prev = data[i-1]
	}
	return prev < 0x20 || prev == 0x7f
}

// canonicalEOF returns the terminal's VEOF character if it is in
// canonical mode. TCGETS on a PTY master reports the terminal side's
// settings, on Linux and in gVisor.
func (p *proc) canonicalEOF() (byte, bool) {
	rc, err := p.tty.SyscallConn()
	if err != nil {
		return 0, false
	}
	var t *unix.Termios
	var terr error
	if err := rc.Control(func(fd uintptr) { t, terr = unix.IoctlGetTermios(int(fd), unix.TCGETS) }); err != nil || terr != nil {
		return 0, false
	}
	veof := t.Cc[unix.VEOF]
	return veof, t.Lflag&unix.ICANON != 0 && veof != 0 // 0 is _POSIX_VDISABLE
}

// awaitEOFRead waits, if an end of input may still be unread, until it has
// been read or can no longer be waited for. Precondition: p.inMu held.
func (p *proc) awaitEOFRead() {
	e := p.eof
	if e == nil {
		return
	}
	p.eof = nil
	tick := time.NewTicker(eofPoll)
	defer tick.Stop()
	for time.Now().Before(e.until) && !p.exited.Load() {
		if anyEnded(e.under) {
			return
		}
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
	}
}

// descendants lists the processes under pid, from /proc's children files
// (of each process's main thread: a shell's jobs), at most maxWatched.
func descendants(pid int) []int {
	var out []int
	queue := []int{pid}
	for len(queue) > 0 && len(out) < maxWatched {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(queue[0]) + "/task/" + strconv.Itoa(queue[0]) + "/children")
		queue = queue[1:]
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil && len(out) < maxWatched {
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	return out
}

// anyEnded tells whether one of pids has ended (exited, whether or not
// its parent has reaped it yet).
func anyEnded(pids []int) bool {
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return true
		}
		// The state follows the command name, which is in parentheses
		// and may itself contain them.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X') {
			return true
		}
	}
	return false
}
