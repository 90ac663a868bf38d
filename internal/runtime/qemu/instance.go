package qemu

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Instance is a running QEMU process.
type Instance struct {
	VM  *VM
	Cmd *exec.Cmd
	QMP *QMP

	stderr   lockedWriter
	done     chan struct{}
	waitErr  error
	stopOnce sync.Once
}

// Start launches vm and connects to its QMP socket.
func Start(ctx context.Context, vm *VM) (*Instance, error) {
	cmd, err := vm.Command()
	if err != nil {
		return nil, err
	}
	in := &Instance{VM: vm, Cmd: cmd, done: make(chan struct{})}
	cmd.Stderr = &in.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", Binary, err)
	}
	go func() {
		in.waitErr = cmd.Wait()
		close(in.done)
	}()
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	in.QMP, err = DialQMP(qctx, vm.QMPSocket)
	if err != nil {
		in.Kill()
		return nil, fmt.Errorf("%w (qemu: %s)", err, strings.TrimSpace(in.Stderr()))
	}
	return in, nil
}

// lockedWriter collects QEMU's stderr while it may be read, keeping its
// last stderrCap bytes: a guest may make QEMU complain without end.
type lockedWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

const stderrCap = 64 << 10

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if w.b.Len() > 2*stderrCap {
		tail := w.b.String()[w.b.Len()-stderrCap:]
		w.b.Reset()
		w.b.WriteString(tail)
	}
	return len(p), nil
}

// Stderr is what QEMU printed so far.
func (in *Instance) Stderr() string {
	in.stderr.mu.Lock()
	defer in.stderr.mu.Unlock()
	return in.stderr.b.String()
}

// Done is closed when the process has exited.
func (in *Instance) Done() <-chan struct{} { return in.done }

// Err is the process's exit error, valid after Done.
func (in *Instance) Err() error { return in.waitErr }

// Kill ends QEMU at once and waits for it.
func (in *Instance) Kill() {
	in.stopOnce.Do(func() {
		if in.QMP != nil {
			in.QMP.Close()
		}
		_ = in.Cmd.Process.Kill()
	})
	<-in.done
}
