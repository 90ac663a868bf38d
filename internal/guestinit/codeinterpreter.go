package guestinit

import (
	"context"
	"net/http"
	"os"
	"time"
)

// CodeInterpreterPath is where the code-interpreter image installs its
// server (cmd/code-interpreter).
const CodeInterpreterPath = "/usr/bin/code-interpreter"

// CodeInterpreterHealthURL answers 200 once the server's default Python
// kernel runs code (its port is codeinterp.Port; a test keeps them equal).
const CodeInterpreterHealthURL = "http://127.0.0.1:49999/health"

// codeInterpreterWait bounds how long envd waits for the code interpreter
// (a Python kernel under TCG takes tens of seconds); past it envd starts
// anyway, so the sandbox works without runCode rather than never.
const codeInterpreterWait = 2 * time.Minute

// startEnvd starts envd, and in an image with the code interpreter starts
// that first and envd once its kernel is ready: a sandbox is ready when
// envd answers, and runCode must work from then on.
func (p *pid1) startEnvd(envd *child) {
	if _, err := os.Stat(CodeInterpreterPath); err != nil {
		p.supervise(envd)
		return
	}
	p.supervise(&child{name: "code-interpreter", argv: []string{CodeInterpreterPath}})
	start := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), codeInterpreterWait)
		defer cancel()
		err := waitHealthy(ctx, CodeInterpreterHealthURL)
		p.events <- func() {
			if err != nil {
				p.log.Error("the code interpreter is not ready; starting envd anyway", "waited", time.Since(start).Round(time.Millisecond), "err", err)
			} else {
				p.log.Info("code interpreter ready", "after", time.Since(start).Round(time.Millisecond))
			}
			if !p.shuttingDown {
				p.supervise(envd)
			}
		}
	}()
}

// waitHealthy polls url until it answers 200 or ctx ends.
func waitHealthy(ctx context.Context, url string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return err
		case <-tick.C:
		}
	}
}
