package sdk

import (
	"context"
	"fmt"
	"io"
	"time"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/proto/envd/process"
)

// PTYs opens interactive terminals in a sandbox.
type PTYs struct{ sb *Sandbox }

// PTYOptions describe a terminal.
type PTYOptions struct {
	Cols, Rows uint32
	// Cmd and Args are the program (default: bash -i -l).
	Cmd  string
	Args []string
	// Env adds to TERM=xterm-256color, LANG and LC_ALL=C.UTF-8.
	Env map[string]string
	Cwd string
	// Output receives the terminal's output; without it, read the
	// Terminal.
	Output io.Writer
	// Timeout limits how long the terminal may live.
	Timeout time.Duration
}

// Terminal is a process on a pseudo-terminal. Without PTYOptions.Output
// it is an io.Reader of its output, which ends (io.EOF) when the process
// does; read it promptly, as the process waits for its reader.
type Terminal struct {
	*CommandHandle
	pr *io.PipeReader
}

// Create starts a terminal of the given size.
func (p *PTYs) Create(ctx context.Context, o PTYOptions) (*Terminal, error) {
	if o.Cols == 0 || o.Rows == 0 {
		return nil, &APIError{Op: "create terminal", Message: "Cols and Rows must be positive", kind: ErrInvalid}
	}
	cmd, args := o.Cmd, o.Args
	if cmd == "" {
		cmd, args = "/bin/bash", []string{"-i", "-l"}
	}
	env := map[string]string{"TERM": "xterm-256color", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
	for k, v := range o.Env {
		env[k] = v
	}
	t := &Terminal{}
	out := o.Output
	var pw *io.PipeWriter
	if out == nil {
		t.pr, pw = io.Pipe()
		out = pw
	}
	cfg := &commandConfig{direct: true, args: args, env: env, cwd: o.Cwd, stdin: true, timeout: o.Timeout, stdout: out,
		pty: &process.PTY{Size: &process.PTY_Size{Cols: o.Cols, Rows: o.Rows}}}
	opts := []CommandOption{func(c *commandConfig) { *c = *cfg }}
	h, err := p.sb.Commands.Start(ctx, cmd, opts...)
	if err != nil {
		if pw != nil {
			pw.CloseWithError(err)
		}
		return nil, err
	}
	t.CommandHandle = h
	if pw != nil {
		go func() {
			<-h.done
			if h.err == nil || h.err == ErrDisconnected {
				pw.Close()
				return
			}
			if _, exit := h.err.(*ExitError); exit {
				pw.Close()
				return
			}
			pw.CloseWithError(h.err)
		}()
	}
	return t, nil
}

// Read reads the terminal's output (see Terminal).
func (t *Terminal) Read(b []byte) (int, error) {
	if t.pr == nil {
		return 0, fmt.Errorf("the terminal's output goes to PTYOptions.Output")
	}
	return t.pr.Read(b)
}

// SendInput types data into the terminal.
func (t *Terminal) SendInput(ctx context.Context, data []byte) error {
	_, err := t.sb.envd.proc.SendInput(ctx, connect.NewRequest(&process.SendInputRequest{Process: pidSelector(t.PID),
		Input: &process.ProcessInput{Input: &process.ProcessInput_Pty{Pty: data}}}))
	return connectError(fmt.Sprintf("input to terminal %d", t.PID), err)
}

// Resize changes the terminal's size.
func (t *Terminal) Resize(ctx context.Context, cols, rows uint32) error {
	_, err := t.sb.envd.proc.Update(ctx, connect.NewRequest(&process.UpdateRequest{Process: pidSelector(t.PID),
		Pty: &process.PTY{Size: &process.PTY_Size{Cols: cols, Rows: rows}}}))
	return connectError(fmt.Sprintf("resize terminal %d", t.PID), err)
}
