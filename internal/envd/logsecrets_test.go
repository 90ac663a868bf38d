package envd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "git.omukk.dev/wrenn/sandbox/proto/envd/process"
)

// lockedBuffer is a log sink that handlers write to from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLogKeepsSecretsOut: envd's log is the sandbox's log, which the
// sandbox's owners read through the API (and anyone the log is shared
// with): neither the access token, a wrong token, signatures, nor the
// values of environment variables (/init's and a command's) appear in
// it, even at debug level, on success and on every refusal.
func TestLogKeepsSecretsOut(t *testing.T) {
	var buf lockedBuffer
	log := slog.New(slog.NewTextHandler(io.MultiWriter(&buf, t.Output()), &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := startEnvdLogging(t, log)
	token := strings.Repeat("c7", 32)
	wrong := strings.Repeat("d8", 32)
	secrets := []string{token, wrong, "init-env-value-5b1f", "cmd-env-value-93ae", "sig-value-77aa"}

	initBody := fmt.Sprintf(`{"accessToken":%q,"envVars":{"API_KEY":"init-env-value-5b1f"}}`, token)
	if resp, body := do(t, "POST", e.url+"/init", strings.NewReader(initBody), map[string]string{"Content-Type": "application/json"}); resp.StatusCode != 204 {
		t.Fatalf("init: %d %s", resp.StatusCode, body)
	}
	// Refusals: a second /init and calls with the wrong token, a forged signature.
	do(t, "POST", e.url+"/init", strings.NewReader(fmt.Sprintf(`{"accessToken":%q}`, wrong)), map[string]string{"Content-Type": "application/json", "X-Access-Token": wrong})
	do(t, "GET", e.url+"/envs", nil, map[string]string{"X-Access-Token": wrong})
	do(t, "GET", e.url+"/files?path=/etc/hostname&signature=sig-value-77aa&signature_expiration=99999999999", nil, nil)

	// A command with a secret in its environment, run with the token.
	req := connect.NewRequest(&pb.StartRequest{Process: &pb.ProcessConfig{Cmd: "/bin/bash", Args: []string{"-c", "test -n \"$TOKEN_VAR\""}, Envs: map[string]string{"TOKEN_VAR": "cmd-env-value-93ae"}}})
	req.Header().Set("X-Access-Token", token)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := e.proc.Start(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for stream.Receive() {
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, "process started") || !strings.Contains(out, "unauthorized request") {
		t.Fatalf("the log is not the one exercised (no start or refusal line):\n%s", out)
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("envd's log holds the secret %q:\n%s", s, out)
		}
	}
}
