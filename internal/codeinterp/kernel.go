package codeinterp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/google/uuid"
)

// kernelConfig says how to start one kernel process.
type kernelConfig struct {
	Spec   *KernelSpec
	Cwd    string
	Env    []string // the process environment, before the spec's own
	RunDir string   // connection files and sockets go under it
	// Args are added to an IPython kernel's command line (configuration).
	Args         []string
	StartTimeout time.Duration
	Log          *slog.Logger
}

// kernel is one running kernel process and the ZeroMQ sockets to it: shell
// and control (DEALER) for requests, iopub (SUB) for what it publishes.
// Every message it sends is routed to whoever registered its parent's
// msg_id.
type kernel struct {
	cfg     kernelConfig
	dir     string
	sign    signer
	session string
	pid     int

	exited  chan struct{} // closed when the process has exited
	exitErr error         // why, once exited is closed

	ctx                   context.Context // the sockets' lifetime
	cancel                context.CancelFunc
	shell, control, iopub zmq4.Socket
	readers               sync.WaitGroup

	mu       sync.Mutex
	routes   map[string]*route
	stopping bool
	note     stopNote // why it was stopped, for an execution it cuts short
	stderr   *tailBuffer
}

// route receives the messages whose parent is one request.
type route struct {
	ch   chan *message
	done chan struct{}
}

const (
	routeBuffer = 1024
	// ipc ports: ipykernel binds ipc sockets at <ip>-<port>.
	portShell, portIOPub, portStdin, portControl, portHB = 1, 2, 3, 4, 5
)

// connectionFile is what a kernel reads to know where to listen and how
// to sign.
type connectionFile struct {
	Transport       string `json:"transport"`
	IP              string `json:"ip"`
	ShellPort       int    `json:"shell_port"`
	IOPubPort       int    `json:"iopub_port"`
	StdinPort       int    `json:"stdin_port"`
	ControlPort     int    `json:"control_port"`
	HBPort          int    `json:"hb_port"`
	Key             string `json:"key"`
	SignatureScheme string `json:"signature_scheme"`
	KernelName      string `json:"kernel_name"`
}

// startKernel launches a kernel and returns once it answers a
// kernel_info_request on shell with iopub subscribed, so nothing it
// publishes from then on is lost. The sockets are ipc (Unix) sockets in a
// private directory: nothing of the kernel listens on the network.
func startKernel(ctx context.Context, cfg kernelConfig) (_ *kernel, err error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 2 * time.Minute
	}
	dir, err := os.MkdirTemp(cfg.RunDir, "kernel-")
	if err != nil {
		return nil, fmt.Errorf("kernel directory: %w", err)
	}
	keyb := make([]byte, 32)
	_, _ = rand.Read(keyb)
	key := hex.EncodeToString(keyb)
	k := &kernel{cfg: cfg, dir: dir, sign: signer{key: []byte(key)}, session: uuid.NewString(), exited: make(chan struct{}), routes: map[string]*route{}, stderr: &tailBuffer{max: 4096}}
	defer func() {
		if err != nil {
			k.shutdown(context.Background())
		}
	}()
	conn := connectionFile{Transport: "ipc", IP: filepath.Join(dir, "k"), ShellPort: portShell, IOPubPort: portIOPub, StdinPort: portStdin,
		ControlPort: portControl, HBPort: portHB, Key: key, SignatureScheme: signatureScheme, KernelName: cfg.Spec.Name}
	connPath := filepath.Join(dir, "connection.json")
	raw, _ := json.Marshal(conn)
	if err := os.WriteFile(connPath, raw, 0o600); err != nil {
		return nil, fmt.Errorf("connection file: %w", err)
	}
	argv := make([]string, 0, len(cfg.Spec.Argv)+len(cfg.Args))
	for _, a := range cfg.Spec.Argv {
		argv = append(argv, strings.ReplaceAll(a, "{connection_file}", connPath))
	}
	if cfg.Spec.ipython() {
		argv = append(argv, cfg.Args...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = cfg.Cwd
	cmd.Env = append([]string{}, cfg.Env...)
	for name, v := range cfg.Spec.Env {
		cmd.Env = append(cmd.Env, name+"="+v)
	}
	cmd.Stdout, cmd.Stderr = k.stderr, k.stderr
	// Its own process group: an interrupt or a kill reaches what the
	// code started too, as Jupyter does it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the %s kernel (%s): %w", cfg.Spec.Name, argv[0], err)
	}
	k.pid = cmd.Process.Pid
	go func() {
		err := cmd.Wait()
		if err == nil {
			err = errors.New("exit status 0")
		}
		k.exitErr = err
		close(k.exited)
	}()
	cfg.Log.Info("kernel started", "kernel", cfg.Spec.Name, "pid", k.pid, "cwd", cfg.Cwd)

	startCtx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	// The kernel's ipc sockets exist once it has bound them; dialing
	// earlier would only spin in the library's retries.
	for _, port := range []int{portShell, portIOPub, portControl} {
		if err := k.waitFor(startCtx, func() bool { _, err := os.Stat(k.endpointPath(port)); return err == nil }); err != nil {
			return nil, err
		}
	}
	k.ctx, k.cancel = context.WithCancel(context.Background())
	quiet := zmq4.WithLogger(log.New(io.Discard, "", 0))
	k.shell = zmq4.NewDealer(k.ctx, quiet, zmq4.WithDialerMaxRetries(20))
	k.control = zmq4.NewDealer(k.ctx, quiet, zmq4.WithDialerMaxRetries(20))
	k.iopub = zmq4.NewSub(k.ctx, quiet, zmq4.WithDialerMaxRetries(20))
	for _, s := range []struct {
		sock zmq4.Socket
		port int
	}{{k.shell, portShell}, {k.control, portControl}, {k.iopub, portIOPub}} {
		if err := s.sock.Dial("ipc://" + k.endpointPath(s.port)); err != nil {
			return nil, fmt.Errorf("connect to the %s kernel: %w", cfg.Spec.Name, err)
		}
	}
	if err := k.iopub.SetOption(zmq4.OptionSubscribe, ""); err != nil {
		return nil, fmt.Errorf("subscribe to the kernel's iopub: %w", err)
	}
	for _, s := range []zmq4.Socket{k.shell, k.control, k.iopub} {
		k.readers.Add(1)
		go k.read(s)
	}
	if err := k.handshake(startCtx); err != nil {
		return nil, err
	}
	cfg.Log.Info("kernel ready", "kernel", cfg.Spec.Name, "pid", k.pid)
	return k, nil
}

func (k *kernel) endpointPath(port int) string {
	return fmt.Sprintf("%s-%d", filepath.Join(k.dir, "k"), port)
}

// waitFor polls cond until it holds, the process exits or ctx ends.
func (k *kernel) waitFor(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-k.exited:
			return k.deadError()
		case <-ctx.Done():
			return fmt.Errorf("the %s kernel did not start within %s (its output: %q)", k.cfg.Spec.Name, k.cfg.StartTimeout, k.stderr.String())
		case <-t.C:
		}
	}
	return nil
}

func (k *kernel) deadError() error {
	return fmt.Errorf("the %s kernel exited (%v); its output: %q", k.cfg.Spec.Name, k.exitErr, k.stderr.String())
}

// handshake sends kernel_info_request until its reply comes back on shell
// and its status messages on iopub: a SUB socket's subscription reaches
// the publisher some time after connecting, and what is published before
// it is dropped.
func (k *kernel) handshake(ctx context.Context) error {
	for {
		req, err := newMessage(k.session, "kernel_info_request", struct{}{})
		if err != nil {
			return err
		}
		rt := k.register(req.Header.MsgID)
		if err := k.send(k.shell, req); err != nil {
			k.unregister(req.Header.MsgID)
			return err
		}
		replied, published := false, false
		timer := time.NewTimer(250 * time.Millisecond)
	wait:
		for !(replied && published) {
			select {
			case m := <-rt.ch:
				if m.Header.MsgType == "kernel_info_reply" {
					replied = true
				} else {
					published = true
				}
			case <-timer.C:
				if replied {
					break wait // no iopub yet: ask again
				}
				timer.Reset(250 * time.Millisecond)
			case <-k.exited:
				k.unregister(req.Header.MsgID)
				return k.deadError()
			case <-ctx.Done():
				timer.Stop()
				k.unregister(req.Header.MsgID)
				return fmt.Errorf("the %s kernel did not answer within %s (its output: %q)", k.cfg.Spec.Name, k.cfg.StartTimeout, k.stderr.String())
			}
		}
		timer.Stop()
		k.unregister(req.Header.MsgID)
		if replied && published {
			return nil
		}
	}
}

func (k *kernel) send(s zmq4.Socket, m *message) error {
	frames, err := k.sign.encode(m)
	if err != nil {
		return err
	}
	if err := s.SendMulti(zmq4.NewMsgFrom(frames...)); err != nil {
		return fmt.Errorf("send %s to the %s kernel: %w", m.Header.MsgType, k.cfg.Spec.Name, err)
	}
	return nil
}

// read routes what one socket receives until the socket closes.
func (k *kernel) read(s zmq4.Socket) {
	defer k.readers.Done()
	for {
		zm, err := s.Recv()
		if err != nil {
			return
		}
		m, err := k.sign.decode(zm.Frames)
		if err != nil {
			k.cfg.Log.Warn("dropped a kernel message", "kernel", k.cfg.Spec.Name, "err", err)
			continue
		}
		k.mu.Lock()
		rt := k.routes[m.Parent.MsgID]
		k.mu.Unlock()
		if rt == nil {
			continue
		}
		select {
		case rt.ch <- m:
		case <-rt.done:
		case <-k.ctx.Done():
			return
		}
	}
}

func (k *kernel) register(msgID string) *route {
	rt := &route{ch: make(chan *message, routeBuffer), done: make(chan struct{})}
	k.mu.Lock()
	k.routes[msgID] = rt
	k.mu.Unlock()
	return rt
}

func (k *kernel) unregister(msgID string) {
	k.mu.Lock()
	if rt := k.routes[msgID]; rt != nil {
		close(rt.done)
		delete(k.routes, msgID)
	}
	k.mu.Unlock()
}

// interrupt stops what the kernel runs, the way its spec says.
func (k *kernel) interrupt() error {
	if k.cfg.Spec.InterruptMode == "message" {
		m, err := newMessage(k.session, "interrupt_request", struct{}{})
		if err != nil {
			return err
		}
		return k.send(k.control, m)
	}
	if err := syscall.Kill(-k.pid, syscall.SIGINT); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("interrupt the %s kernel: %w", k.cfg.Spec.Name, err)
	}
	return nil
}

// alive reports whether the process still runs.
func (k *kernel) alive() bool {
	select {
	case <-k.exited:
		return false
	default:
		return true
	}
}

// shutdown asks the kernel to exit, kills its process group if it does
// not within a grace period (or ctx ends), closes the sockets, waits for
// the readers and removes its directory. It is safe to call more than once.
func (k *kernel) shutdown(ctx context.Context) {
	k.mu.Lock()
	already := k.stopping
	k.stopping = true
	k.mu.Unlock()
	if already {
		<-k.exited
		return
	}
	if k.pid > 0 && k.alive() && k.control != nil {
		if m, err := newMessage(k.session, "shutdown_request", map[string]bool{"restart": false}); err == nil {
			_ = k.send(k.control, m)
		}
		grace := time.NewTimer(2 * time.Second)
		select {
		case <-k.exited:
		case <-grace.C:
		case <-ctx.Done():
		}
		grace.Stop()
	}
	if k.pid > 0 {
		// The whole group: whatever the code started goes with it.
		_ = syscall.Kill(-k.pid, syscall.SIGKILL)
		<-k.exited
	}
	if k.cancel != nil {
		k.cancel()
		for _, s := range []zmq4.Socket{k.shell, k.control, k.iopub} {
			if s != nil {
				_ = s.Close()
			}
		}
		k.readers.Wait()
	}
	_ = os.RemoveAll(k.dir)
	k.cfg.Log.Info("kernel stopped", "kernel", k.cfg.Spec.Name, "pid", k.pid)
}

// tailBuffer keeps the last bytes a kernel wrote, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(t.buf.String())
}
