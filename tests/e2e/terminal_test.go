package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"git.omukk.dev/wrenn/sandbox/internal/waitfor"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

// agentTerminal is a login shell on a PTY in a sandbox, through the agent
// as the control plane's terminal route drives it.
type agentTerminal struct {
	a   *agent
	id  string
	pid uint32
	mu  sync.Mutex
	out strings.Builder
}

func openAgentTerminal(t *testing.T, a *agent, id string) *agentTerminal {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := a.client.PtyAttach(ctx, connect.NewRequest(&pb.PtyAttachRequest{SandboxId: id, Cols: 120, Rows: 40}))
	if err != nil {
		t.Fatal(err)
	}
	if !st.Receive() || st.Msg().GetStartedPid() == 0 {
		t.Fatalf("terminal start: %v", st.Err())
	}
	term := &agentTerminal{a: a, id: id, pid: st.Msg().GetStartedPid()}
	go func() {
		for st.Receive() {
			term.mu.Lock()
			term.out.Write(st.Msg().GetOutput())
			term.mu.Unlock()
		}
	}()
	return term
}

// typeIn sends data as one input message, as a client's batch of keys.
func (term *agentTerminal) typeIn(t *testing.T, data string) {
	t.Helper()
	if _, err := term.a.client.PtySendInput(context.Background(), connect.NewRequest(&pb.PtySendInputRequest{SandboxId: term.id, Pid: term.pid, Data: []byte(data)})); err != nil {
		t.Fatal(err)
	}
}

func (term *agentTerminal) waitFor(t *testing.T, text, why string) {
	t.Helper()
	waitfor.NoError(t, 20*time.Second, why, func() error {
		term.mu.Lock()
		defer term.mu.Unlock()
		screen := term.out.String()
		if strings.Contains(screen, text) {
			return nil
		}
		return fmt.Errorf("the terminal does not show %q; it ends:\n%s", text, screen[max(0, len(screen)-1500):])
	})
}

// fileIn is a file's content in the sandbox.
func fileIn(t *testing.T, a *agent, id, path string) string {
	t.Helper()
	rf, err := a.client.ReadFile(context.Background(), connect.NewRequest(&pb.ReadFileRequest{SandboxId: id, Path: path}))
	if err != nil {
		return ""
	}
	return string(rf.Msg.Content)
}

// Ctrl-D ends a program's input the way a terminal does on every runtime:
// at the start of a line it ends cat, even when more keys follow it at
// once (a client batching keys sends them in the same message; gVisor's
// line discipline lost such an end and cat read the next command); after
// text without a newline it only hands that text over and cat reads on.
func TestAgentTerminalEndOfInput(t *testing.T) {
	requireVMs(t)
	forEachRuntime(t, func(t *testing.T, rt string) {
		a := startAgent(t, "", "--runtime", rt)
		create(t, a, "eof1", nil)
		term := openAgentTerminal(t, a, "eof1")

		// A 20 kB multi-line paste, typed as a terminal sends it (Enter is
		// a carriage return), in the dashboard's 16 KiB frames.
		var lines []string
		for i := range 200 {
			lines = append(lines, fmt.Sprintf("line %03d %s", i, strings.Repeat("x", 90)))
		}
		pasted := strings.Join(lines, "\r") + "\r"
		want := strings.ReplaceAll(pasted, "\r", "\n")
		term.typeIn(t, "echo ready-$((1+2)); cat > /tmp/paste.txt\r")
		term.waitFor(t, "ready-3", "cat started")
		for off := 0; off < len(pasted); off += 16 << 10 {
			term.typeIn(t, pasted[off:min(len(pasted), off+16<<10)])
		}
		waitfor.NoError(t, 30*time.Second, "cat to write the paste", func() error {
			if n := len(fileIn(t, a, "eof1", "/tmp/paste.txt")); n < len(want) {
				return fmt.Errorf("%d of %d bytes", n, len(want))
			}
			return nil
		})
		// Ctrl-D at the start of a line with the next command right
		// behind it in the same message.
		term.typeIn(t, "\x04echo after-$((20+22))\r")
		term.waitFor(t, "after-42", "Ctrl-D at the start of a line ends cat and the next command runs in the shell")
		if got := fileIn(t, a, "eof1", "/tmp/paste.txt"); got != want {
			t.Errorf("the paste in the file: %d bytes, want %d; it ends %q", len(got), len(want), got[max(0, len(got)-120):])
		}

		// The same with the next keys in a message of their own, sent at once.
		term.typeIn(t, "echo go-$((1+1)); cat > /dev/null\r")
		term.waitFor(t, "go-2", "cat started")
		term.typeIn(t, "\x04")
		term.typeIn(t, "echo next-$((3+4))\r")
		term.waitFor(t, "next-7", "Ctrl-D then the next command as separate messages")

		// Text without a newline: Ctrl-D hands it to cat, which reads on;
		// Ctrl-D at the start of a later line ends it.
		term.typeIn(t, "echo part-$((2+3)); cat > /tmp/partial.txt\r")
		term.waitFor(t, "part-5", "cat started")
		term.typeIn(t, "no newline")
		term.typeIn(t, "\x04")
		waitfor.NoError(t, 20*time.Second, "one Ctrl-D to hand the text to cat", func() error {
			if got := fileIn(t, a, "eof1", "/tmp/partial.txt"); got != "no newline" {
				return fmt.Errorf("the file holds %q", got)
			}
			return nil
		})
		// cat still reads: the next line goes to it, not to the shell.
		term.typeIn(t, " and more\r")
		waitfor.NoError(t, 20*time.Second, "cat to read on after one Ctrl-D after text", func() error {
			if got := fileIn(t, a, "eof1", "/tmp/partial.txt"); got != "no newline and more\n" {
				return fmt.Errorf("the file holds %q", got)
			}
			return nil
		})
		term.typeIn(t, "\x04echo second-$((4+5))\r")
		term.waitFor(t, "second-9", "Ctrl-D at the start of the next line ends cat")
		if got := fileIn(t, a, "eof1", "/tmp/partial.txt"); got != "no newline and more\n" {
			t.Errorf("the file cat wrote: %q", got)
		}

		a.stop(t, syscall.SIGTERM)
		assertNoLeftovers(t, a.stateDir)
	})
}
