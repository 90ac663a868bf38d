package processsvc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	pb "git.omukk.dev/wrenn/sandbox/proto/envd/process"
)

const (
	// firstRead is what each output stream reads at a time while its
	// process is quiet; maxChunk bounds one data event. A PTY hands out at
	// most 4 KB per read(2), and every event costs a client (the E2B SDKs
	// parse JSON and base64 in script) far more than its bytes do, so a
	// read that fills firstRead goes on reading what is already there, up
	// to maxChunk, into one event. Nothing waits for more data: a quiet
	// process's output is sent at once, a burst in few large events.
	firstRead = 4 << 10
	maxChunk  = 256 << 10
	// After the process exits, its output is read until EOF or until the
	// pipes stay silent this long: background children may hold them open.
	drainGrace = 100 * time.Millisecond
)

// chunkBufs hold one burst each while it is read; they are never held
// while a stream waits for output.
var chunkBufs = sync.Pool{New: func() any { b := make([]byte, maxChunk); return &b }}

// proc is one process started through envd.
type proc struct {
	pid    uint32
	tag    *string
	config *pb.ProcessConfig
	cmd    *exec.Cmd

	inMu        sync.Mutex
	tty         *os.File // PTY master; nil without a PTY
	stdin       *os.File // nil when stdin is disabled
	stdinClosed bool
	lastIn      byte        // the last byte typed into the terminal
	eof         *pendingEOF // an end of input typed that may be unread

	out     *fanout
	stop    chan struct{} // closed when envd shuts down
	exited  atomic.Bool
	outputs []*os.File

	done chan struct{} // closed once end is set and all output published
	end  *pb.ProcessEvent_EndEvent
	// killTimer enforces Connect-Timeout-Ms as the process lifetime.
	killTimer atomic.Pointer[time.Timer]
}

type startSpec struct {
	cmd   *exec.Cmd
	pty   *pb.PTY
	stdin bool
}

// startProc starts the command and the goroutines that read its output and
// wait for it. onDone runs once the end event is set.
func startProc(spec startSpec, config *pb.ProcessConfig, tag *string, out *fanout, stop chan struct{}, onDone func(*proc)) (*proc, error) {
	p := &proc{config: config, tag: tag, cmd: spec.cmd, out: out, stop: stop, done: make(chan struct{})}
	var toClose []*os.File
	closeAll := func() {
		for _, f := range toClose {
			f.Close()
		}
	}
	if spec.pty != nil {
		size := &pty.Winsize{Rows: 24, Cols: 80}
		if s := spec.pty.GetSize(); s != nil && s.Rows > 0 && s.Cols > 0 {
			size = &pty.Winsize{Rows: uint16(s.Rows), Cols: uint16(s.Cols)}
		}
		// StartWithAttrs makes the child a session leader with the tty as
		// its controlling terminal, so signals reach its whole job tree.
		spec.cmd.SysProcAttr.Setsid = true
		spec.cmd.SysProcAttr.Setctty = true
		tty, err := pty.StartWithAttrs(spec.cmd, size, spec.cmd.SysProcAttr)
		if err != nil {
			return nil, fmt.Errorf("start %s with a pty: %w", spec.cmd.Path, err)
		}
		if tty, err = pollable(tty); err != nil {
			_ = spec.cmd.Process.Kill()
			_ = spec.cmd.Wait()
			return nil, fmt.Errorf("start %s with a pty: %w", spec.cmd.Path, err)
		}
		p.tty = tty
		p.outputs = []*os.File{tty}
	} else {
		spec.cmd.SysProcAttr.Setpgid = true
		stdoutR, stdoutW, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("stdout pipe: %w", err)
		}
		toClose = append(toClose, stdoutR, stdoutW)
		stderrR, stderrW, err := os.Pipe()
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("stderr pipe: %w", err)
		}
		toClose = append(toClose, stderrR, stderrW)
		spec.cmd.Stdout, spec.cmd.Stderr = stdoutW, stderrW
		var stdinR *os.File
		if spec.stdin {
			r, w, err := os.Pipe()
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("stdin pipe: %w", err)
			}
			toClose = append(toClose, r, w)
			spec.cmd.Stdin, stdinR, p.stdin = r, r, w
		}
		if err := spec.cmd.Start(); err != nil {
			closeAll()
			return nil, fmt.Errorf("start %s: %w", spec.cmd.Path, err)
		}
		stdoutW.Close()
		stderrW.Close()
		if stdinR != nil {
			stdinR.Close()
		}
		p.outputs = []*os.File{stdoutR, stderrR}
	}
	p.pid = uint32(spec.cmd.Process.Pid)

	var readers sync.WaitGroup
	for i, f := range p.outputs {
		readers.Add(1)
		go func() {
			defer readers.Done()
			p.readOutput(f, outputKind(p.tty != nil, i))
		}()
	}
	go p.wait(&readers, onDone)
	return p, nil
}

// pollable returns the PTY master f as a non-blocking file in Go's
// poller. creack/pty leaves the master in blocking mode (its ioctls go
// through Fd, which makes a file blocking), and then readBurst's reads of
// "what is already there" waited for more output instead of returning:
// the tail of a burst stayed in envd until the program wrote again.
// The new descriptor shares the old one's open file, and f is closed.
func pollable(f *os.File) (*os.File, error) {
	defer f.Close()
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicate the pty master: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("make the pty master non-blocking: %w", err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

type outputKindT int

const (
	kindStdout outputKindT = iota
	kindStderr
	kindPty
)

func outputKind(isPty bool, i int) outputKindT {
	if isPty {
		return kindPty
	}
	if i == 0 {
		return kindStdout
	}
	return kindStderr
}

func (p *proc) readOutput(f *os.File, kind outputKindT) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	small := make([]byte, firstRead)
	for {
		if p.exited.Load() {
			_ = f.SetReadDeadline(time.Now().Add(drainGrace))
		}
		data, err := readBurst(rc, small)
		if len(data) > 0 {
			ev := &pb.ProcessEvent_DataEvent{}
			switch kind {
			case kindStdout:
				ev.Output = &pb.ProcessEvent_DataEvent_Stdout{Stdout: data}
			case kindStderr:
				ev.Output = &pb.ProcessEvent_DataEvent_Stderr{Stderr: data}
			default:
				ev.Output = &pb.ProcessEvent_DataEvent_Pty{Pty: data}
			}
			p.out.publish(ev, len(data), p.stop)
		}
		if err != nil {
			// EOF on a pipe, EIO on a PTY master whose slave is gone, or the
			// post-exit deadline: all mean this stream is over.
			return
		}
	}
}

// readBurst waits for output and returns what is there: one read into
// small, and when that fills it, further reads of what is already
// available, up to maxChunk. The error ends the stream (io.EOF, EIO, the
// deadline); data read before it is returned with it.
func readBurst(rc syscall.RawConn, small []byte) ([]byte, error) {
	var data []byte
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		n, err := readNoEINTR(int(fd), small)
		switch {
		case err == syscall.EAGAIN:
			return false // nothing yet: wait for the poller
		case err != nil:
			rerr = err
			return true
		case n == 0:
			rerr = io.EOF
			return true
		case n < len(small):
			data = bytes.Clone(small[:n])
			return true
		}
		bufp := chunkBufs.Get().(*[]byte)
		defer chunkBufs.Put(bufp)
		buf := *bufp
		n = copy(buf, small)
		for n < len(buf) {
			m, err := readNoEINTR(int(fd), buf[n:])
			if err == syscall.EAGAIN {
				break
			}
			if err != nil || m == 0 {
				rerr = err
				if m == 0 && err == nil {
					rerr = io.EOF
				}
				break
			}
			n += m
		}
		data = bytes.Clone(buf[:n])
		return true
	})
	if rerr == nil {
		rerr = err
	}
	return data, rerr
}

func readNoEINTR(fd int, b []byte) (int, error) {
	for {
		n, err := syscall.Read(fd, b)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

func (p *proc) wait(readers *sync.WaitGroup, onDone func(*proc)) {
	awaitExit(int(p.pid))
	err := p.cmd.Wait()
	p.exited.Store(true)
	for _, f := range p.outputs {
		_ = f.SetReadDeadline(time.Now().Add(drainGrace))
	}
	readers.Wait()
	for _, f := range p.outputs {
		f.Close()
	}
	p.inMu.Lock()
	if p.stdin != nil && !p.stdinClosed {
		p.stdin.Close()
		p.stdinClosed = true
	}
	p.inMu.Unlock()
	if t := p.killTimer.Load(); t != nil {
		t.Stop()
	}
	p.end = endEvent(p.cmd.ProcessState, err)
	close(p.done)
	onDone(p)
}

// awaitExit returns once the process has exited (cmd.Wait then only reaps
// it). It waits in Go's poller on a pidfd, so that the exit, the end of the
// output and the answer are handled by envd's goroutines in one go, rather
// than by a thread blocked in waitid(2) that must then queue for the
// processor again. Where pidfds do not work it returns at once and
// cmd.Wait blocks as before.
func awaitExit(pid int) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		return err != nil || info.Signo != 0
	})
}

func endEvent(ps *os.ProcessState, waitErr error) *pb.ProcessEvent_EndEvent {
	end := &pb.ProcessEvent_EndEvent{}
	if ps != nil {
		end.ExitCode = int32(ps.ExitCode())
		end.Exited = ps.Exited()
		end.Status = ps.String()
	}
	if waitErr != nil {
		msg := waitErr.Error()
		end.Error = &msg
	}
	return end
}

// signal delivers sig to the process's group (it leads one), so that
// children of a shell die with it.
func (p *proc) signal(sig syscall.Signal) error {
	err := syscall.Kill(-int(p.pid), sig)
	if errors.Is(err, syscall.ESRCH) {
		err = syscall.Kill(int(p.pid), sig)
	}
	return err
}

var (
	errNoPty         = errors.New("process has no pty")
	errHasPty        = errors.New("process has a pty; send input as pty")
	errStdinDisabled = errors.New("stdin is not enabled for this process")
	errStdinClosed   = errors.New("stdin of this process is closed")
)

func (p *proc) writeInput(in *pb.ProcessInput) error {
	p.inMu.Lock()
	defer p.inMu.Unlock()
	var dst io.Writer
	var data []byte
	switch v := in.GetInput().(type) {
	case *pb.ProcessInput_Pty:
		if p.tty == nil {
			return errNoPty
		}
		if err := p.writeTerminal(v.Pty); err != nil {
			return fmt.Errorf("write input to pid %d: %w", p.pid, err)
		}
		return nil
	case *pb.ProcessInput_Stdin:
		if p.tty != nil {
			return errHasPty
		}
		if p.stdin == nil {
			return errStdinDisabled
		}
		if p.stdinClosed {
			return errStdinClosed
		}
		dst, data = p.stdin, v.Stdin
	default:
		return errors.New("no input given")
	}
	if _, err := dst.Write(data); err != nil {
		return fmt.Errorf("write input to pid %d: %w", p.pid, err)
	}
	return nil
}

func (p *proc) closeStdin() error {
	p.inMu.Lock()
	defer p.inMu.Unlock()
	if p.tty != nil {
		return errHasPty
	}
	if p.stdin == nil || p.stdinClosed {
		return nil
	}
	p.stdinClosed = true
	return p.stdin.Close()
}

func (p *proc) resize(size *pb.PTY_Size) error {
	if p.tty == nil {
		return errNoPty
	}
	if size == nil || size.Rows == 0 || size.Cols == 0 {
		return errors.New("pty size needs rows and cols above 0")
	}
	return pty.Setsize(p.tty, &pty.Winsize{Rows: uint16(size.Rows), Cols: uint16(size.Cols)})
}

func (p *proc) ended() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}
