// Package devstack is `wrenn dev`: the whole platform on one machine from
// one command. It starts a private PostgreSQL (pglocal) in the data
// directory, the control plane with its sandbox proxy, and a host agent
// with the best runtime the host has, registered with the control plane;
// builds the minimal image if it is missing; creates an admin, a team and
// an API key on the first run; and prints how to use it all. Ctrl-C stops
// everything in order and leaves nothing running; the next run reuses the
// data.
package devstack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/cpclient"
	"git.omukk.dev/wrenn/sandbox/internal/guestimage"
	"git.omukk.dev/wrenn/sandbox/internal/hostagent"
	"git.omukk.dev/wrenn/sandbox/internal/pglocal"
	"git.omukk.dev/wrenn/sandbox/internal/webui"
	"git.omukk.dev/wrenn/sandbox/pkg/config"
	"git.omukk.dev/wrenn/sandbox/pkg/cpserver"
)

// Options configure the stack.
type Options struct {
	DataDir string
	// ImagesDir holds the guest images (default DataDir/images).
	ImagesDir string
	// Runtime is auto, qemu, gvisor or firecracker.
	Runtime     string
	Listen      string // control plane API
	ProxyListen string // sandbox proxy, by headers
	AgentListen string
	// ProxyTLSPort serves the sandbox proxy over TLS on this port of both
	// loopback addresses as well, by host name: <port>-<sandboxID>.
	// <SandboxDomain>, with a certificate from a CA kept in the data
	// directory (0: not at all).
	ProxyTLSPort  int
	SandboxDomain string
	// Base also builds the base image (debootstrap: minutes).
	Base bool
	// CodeInterpreter also builds the code-interpreter image (base and
	// more packages), from the CodeInterpreterBin binary.
	CodeInterpreter    bool
	CodeInterpreterBin string
	// Envd and Init are the binaries baked into images.
	Envd, Init string
	// Out receives the usage text; Log everything else.
	Out io.Writer
	Log *slog.Logger
	// Ready, if set, is called with the stack's details once it serves.
	Ready func(Info)
	// CLI is the wrenn binary the printed examples run (default: wrenn).
	CLI string
}

// Info is how to reach the running stack.
type Info struct {
	APIURL, ProxyURL      string
	AdminEmail, AdminPass string
	APIKey                string
	E2BEnv                []string // NAME=value for the E2B SDK
	EnvFile               string   // the same, in a file
	// With a TLS proxy: its URL pattern, the E2B SDK's variables for it
	// (E2B_DOMAIN and the CA for Node), and the same in a file.
	ProxyTLSURL string
	E2BTLSEnv   []string
	TLSEnvFile  string
}

// credentials are the first run's admin and key, kept for later runs.
type credentials struct {
	AdminEmail    string `json:"admin_email"`
	AdminPassword string `json:"admin_password"`
	APIKey        string `json:"api_key"`
}

const adminEmail = "admin@wrenn.local"

// Run starts the stack and serves until ctx ends.
func Run(ctx context.Context, o Options) error {
	if os.Geteuid() != 0 {
		return errors.New("wrenn dev needs root: the agent makes network namespaces, taps and cgroups (sudo wrenn dev)")
	}
	if o.ImagesDir == "" {
		o.ImagesDir = filepath.Join(o.DataDir, "images")
	}
	// The postgres user must be able to reach its directory inside.
	if err := os.MkdirAll(o.DataDir, 0o711); err != nil {
		return err
	}
	if err := os.Chmod(o.DataDir, 0o711); err != nil {
		return err
	}
	log := o.Log

	images := []string{"minimal"}
	if o.Base {
		images = append(images, "base")
	}
	if o.CodeInterpreter {
		images = append(images, guestimage.CodeInterpreterKind)
	}
	for _, name := range images {
		log.Info("guest image", "name", name, "dir", o.ImagesDir)
		if _, err := guestimage.Build(ctx, guestimage.Options{Name: name, Dir: o.ImagesDir, Envd: o.Envd, Init: o.Init, CodeInterpreter: o.CodeInterpreterBin, Progress: os.Stderr}); err != nil {
			return fmt.Errorf("build the %s image: %w", name, err)
		}
	}

	pgLog, err := os.OpenFile(filepath.Join(o.DataDir, "postgres.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer pgLog.Close()
	pg, err := pglocal.Start(ctx, pglocal.Options{DataDir: filepath.Join(o.DataDir, "pg"), Log: pgLog})
	if err != nil {
		return fmt.Errorf("PostgreSQL: %w (its log: %s)", err, pgLog.Name())
	}
	defer pg.Stop()
	log.Info("PostgreSQL running", "port", pg.Port, "data", pg.DataDir)
	if err := pg.CreateDatabase(ctx, "wrenn"); err != nil {
		return err
	}

	secret, err := readOrCreate(filepath.Join(o.DataDir, "cp.secret"), func() []byte {
		b := make([]byte, 32)
		rand.Read(b)
		return []byte(hex.EncodeToString(b))
	})
	if err != nil {
		return err
	}
	cfg := config.Defaults()
	cfg.Listen, cfg.ProxyListen, cfg.DatabaseURL, cfg.Secret = o.Listen, o.ProxyListen, pg.URL("wrenn"), secret
	cfg.HeartbeatTimeout = 15 * time.Second
	cfg.PlainHTTP = true // wrenn dev is for development
	cpOpts := []cpserver.Option{cpserver.WithLogger(log)}
	var tp *tlsProxy
	if o.ProxyTLSPort != 0 {
		if tp, err = listenTLSProxy(o.DataDir, o.SandboxDomain, o.ProxyTLSPort, log); err != nil {
			return err
		}
		defer tp.close()
		cfg.SandboxDomain = tp.domain
		cpOpts = append(cpOpts, cpserver.WithProxyTLSListeners(tp.config, tp.listeners...))
	}
	cpCtx, stopCP := context.WithCancel(context.WithoutCancel(ctx))
	cpDone := make(chan error, 1)
	cpReady := make(chan string, 1)
	go func() {
		cpDone <- cpserver.Run(cpCtx, append(cpOpts, cpserver.WithConfig(cfg), cpserver.WithReady(func(a string) { cpReady <- a }))...)
	}()
	defer func() {
		stopCP()
		if err := <-cpDone; err != nil {
			log.Error("control plane stopped", "err", err)
		}
	}()
	var apiAddr string
	select {
	case apiAddr = <-cpReady:
	case err := <-cpDone:
		cpDone <- nil
		return fmt.Errorf("control plane: %w", err)
	}
	api := cpclient.New("http://"+apiAddr, nil)

	creds, err := bootstrap(ctx, cfg, log, api, filepath.Join(o.DataDir, "credentials.json"))
	if err != nil {
		return err
	}
	session, err := login(ctx, api, creds)
	if err != nil {
		return err
	}
	agentState := filepath.Join(o.DataDir, "agent")
	if err := forgetStaleRegistration(ctx, api, session, agentState); err != nil {
		return err
	}
	var token struct{ Token string }
	if err := api.Call(ctx, "POST", "/v1/hosts/tokens", session, nil, &token); err != nil {
		return err
	}
	agentCtx, stopAgent := context.WithCancel(context.WithoutCancel(ctx))
	agentDone := make(chan error, 1)
	go func() {
		agentDone <- hostagent.Run(agentCtx, hostagent.Options{
			Listen: o.AgentListen, StateDir: agentState, ImagesDir: o.ImagesDir, Runtime: o.Runtime,
			ControlPlane: api.URL(), RegistrationToken: token.Token, ReadyTimeout: 3 * time.Minute, Log: log,
		})
	}()
	defer func() {
		stopAgent()
		if err := <-agentDone; err != nil {
			log.Error("agent stopped", "err", err)
		}
	}()
	if err := waitHostReady(ctx, api, session, agentDone); err != nil {
		return err
	}

	info := Info{APIURL: api.URL(), ProxyURL: "http://" + o.ProxyListen, AdminEmail: creds.AdminEmail, AdminPass: creds.AdminPassword, APIKey: creds.APIKey}
	info.E2BEnv = []string{"E2B_API_URL=" + api.URL() + "/e2b", "E2B_SANDBOX_URL=" + info.ProxyURL, "E2B_API_KEY=" + creds.APIKey}
	info.EnvFile = filepath.Join(o.DataDir, "e2b.env")
	if err := os.WriteFile(info.EnvFile, []byte(strings.Join(info.E2BEnv, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	if tp != nil {
		info.ProxyTLSURL = "https://<port>-<sandboxID>." + tp.domain
		info.E2BTLSEnv = []string{"E2B_API_URL=" + api.URL() + "/e2b", "E2B_DOMAIN=" + tp.domain, "E2B_API_KEY=" + creds.APIKey, "NODE_EXTRA_CA_CERTS=" + tp.caFile}
		info.TLSEnvFile = filepath.Join(o.DataDir, "e2b-tls.env")
		if err := os.WriteFile(info.TLSEnvFile, []byte(strings.Join(info.E2BTLSEnv, "\n")+"\n"), 0o600); err != nil {
			return err
		}
	}
	printUsage(o.Out, info, o.DataDir, o.CLI)
	if o.Ready != nil {
		o.Ready(info)
	}
	select {
	case <-ctx.Done():
		log.Info("stopping: agent (pauses its sandboxes, kept for the next run), control plane, PostgreSQL")
		return nil
	case err := <-agentDone:
		agentDone <- nil
		return fmt.Errorf("the agent stopped: %w", err)
	case err := <-cpDone:
		cpDone <- nil
		return fmt.Errorf("the control plane stopped: %w", err)
	}
}

func printUsage(out io.Writer, i Info, dataDir, cli string) {
	// One write, so that a reader sees the whole text at once.
	w := &strings.Builder{}
	fmt.Fprintf(w, `
Wrenn is running. Data in %[1]s; Ctrl-C stops everything.

  API         %[2]s/v1   (reference and console: %[2]s/docs)
  Dashboard   %[9]s
  Sandboxes   %[3]s   (sandbox proxy: E2b-Sandbox-Id / E2b-Sandbox-Port headers)%[10]s
  Admin       %[4]s   password %[5]s
  API key     %[6]s

For the E2B SDK, one per line (also in %[7]s; load it with: set -a; . %[7]s; set +a):

%[8]s
%[11]s
For Wrenn's own API, the Go SDK (pkg/sdk) and the wrenn CLI:

WRENN_API_URL=%[2]s
WRENN_API_KEY=%[6]s
WRENN_SANDBOX_URL=%[3]s

Try it:

`, dataDir, i.APIURL, i.ProxyURL, i.AdminEmail, i.AdminPass, i.APIKey, i.EnvFile, strings.Join(i.E2BEnv, "\n"), dashboardLine(i.APIURL), tlsProxyLine(i), tlsEnvBlock(i))
	for _, ex := range Examples(i, cli) {
		fmt.Fprintf(w, "  %s\n", ex)
	}
	fmt.Fprintln(w)
	io.WriteString(out, w.String())
}

func tlsProxyLine(i Info) string {
	if i.ProxyTLSURL == "" {
		return ""
	}
	return "\n              " + i.ProxyTLSURL + "   (the same proxy by host name, over TLS)"
}

func tlsEnvBlock(i Info) string {
	if i.TLSEnvFile == "" {
		return ""
	}
	return fmt.Sprintf(`
Or by host name over TLS, which getHost(port) and signed file URLs need (also in %s;
*.localhost names resolve to this machine; the CA is this stack's own):

%s
`, i.TLSEnvFile, strings.Join(i.E2BTLSEnv, "\n"))
}

// Examples are the commands printed under "Try it", each meant to work
// pasted as is into a shell on this machine: the API with curl, the CLI
// (logging in with the dev key), and the official E2B SDK with Node
// (and, with the TLS proxy, a sandbox's port by its host name).
func Examples(i Info, exe string) []string {
	cli := exe
	if exe == "" {
		cli = "wrenn"
	} else if p, err := exec.LookPath("wrenn"); err == nil && sameFile(p, exe) {
		cli = "wrenn"
	}
	js := `node -e "import('e2b').then(async ({Sandbox}) => { const s = await Sandbox.create(); console.log((await s.commands.run('uname -a')).stdout); await s.kill() })"`
	node := fmt.Sprintf("(set -a; . %s; set +a; %s && %s)", i.EnvFile, e2bDir(exe), js)
	examples := []string{
		fmt.Sprintf(`curl -s -X POST %s/v1/sandboxes -H "Authorization: Bearer %s" -H "Content-Type: application/json" -d '{"template":"minimal","timeout_seconds":60}'`, i.APIURL, i.APIKey),
		fmt.Sprintf("echo %s | %s login --api-url %s --sandbox-url %s --api-key-stdin", i.APIKey, cli, i.APIURL, i.ProxyURL),
		fmt.Sprintf("id=$(%[1]s sandbox create) && %[1]s exec $id -- uname -a; %[1]s sandbox kill $id", cli),
		node,
	}
	if i.TLSEnvFile != "" {
		js := `node -e "import('e2b').then(async ({Sandbox}) => { const s = await Sandbox.create(); const url = 'https://' + s.getHost(49983) + '/health'; console.log(url, (await fetch(url)).status); await s.kill() })"`
		examples = append(examples, fmt.Sprintf("(set -a; . %s; set +a; %s && %s)", i.TLSEnvFile, e2bDir(exe), js))
	}
	return examples
}

// e2bDir is a shell step that enters a directory where Node finds the
// e2b package: the repository's tests/e2b when wrenn runs from its bin/
// (scripts/setup installs the SDK there), else a scratch directory it is
// installed into.
func e2bDir(exe string) string {
	if exe != "" {
		dir := filepath.Join(filepath.Dir(filepath.Dir(exe)), "tests", "e2b")
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "e2b", "package.json")); err == nil {
			return "cd " + dir
		}
	}
	return "mkdir -p /tmp/wrenn-e2b && cd /tmp/wrenn-e2b && npm install --silent --no-audit --no-fund e2b@2"
}

func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// dashboardLine is the dashboard's URL, or how to build it when this
// binary was compiled without it.
func dashboardLine(apiURL string) string {
	if webui.Built() {
		return apiURL + "/   (sign in as the admin below)"
	}
	return "not built into this binary (make build builds it)"
}

func readOrCreate(path string, gen func() []byte) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return bytes.TrimSpace(b), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	b = gen()
	return b, os.WriteFile(path, b, 0o600)
}

// bootstrap creates the admin (on the host, as `control-plane
// create-admin` does: signing up never makes an admin), their team and an
// API key on the first run, and reads them back on later ones.
func bootstrap(ctx context.Context, cfg config.Config, log *slog.Logger, api *cpclient.Client, path string) (credentials, error) {
	var c credentials
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &c); err != nil {
			return c, fmt.Errorf("%s: %w (delete it and the database to start over)", path, err)
		}
		return c, nil
	}
	pw := make([]byte, 12)
	rand.Read(pw)
	c = credentials{AdminEmail: adminEmail, AdminPassword: hex.EncodeToString(pw)}
	_, created, err := cpserver.CreateAdmin(ctx, cfg, c.AdminEmail, c.AdminPassword, "admin", log)
	if err == nil && !created {
		err = fmt.Errorf("%s already exists but %s is gone", c.AdminEmail, path)
	}
	if err != nil {
		return c, fmt.Errorf("create the admin: %w (to start over, delete %s/pg)", err, filepath.Dir(path))
	}
	session, err := login(ctx, api, c)
	if err != nil {
		return c, err
	}
	var k struct{ Key string }
	if err := api.Call(ctx, "POST", "/v1/api-keys", session, map[string]string{"name": "wrenn dev"}, &k); err != nil {
		return c, fmt.Errorf("create an API key: %w", err)
	}
	c.APIKey = k.Key
	b, _ := json.MarshalIndent(c, "", "  ")
	return c, os.WriteFile(path, b, 0o600)
}

// login signs the admin in and returns the session token.
func login(ctx context.Context, api *cpclient.Client, c credentials) (string, error) {
	var s struct{ Token string }
	err := api.Call(ctx, "POST", "/v1/auth/login", "", map[string]string{"email": c.AdminEmail, "password": c.AdminPassword}, &s)
	return s.Token, err
}

// forgetStaleRegistration drops the agent's saved credentials when the
// control plane no longer knows its host (a wiped database).
func forgetStaleRegistration(ctx context.Context, api *cpclient.Client, session, agentState string) error {
	host, err := hostagent.RegisteredHost(agentState)
	switch {
	case err == nil && host == "":
		return nil // not registered yet
	case err == nil && api.Call(ctx, "GET", "/v1/hosts/"+host, session, nil, nil) == nil:
		return nil
	}
	return hostagent.ForgetRegistration(agentState)
}

func waitHostReady(ctx context.Context, api *cpclient.Client, session string, agentDone chan error) error {
	for {
		var hosts []struct {
			Status    string
			Templates []string
		}
		if err := api.Call(ctx, "GET", "/v1/hosts", session, nil, &hosts); err == nil {
			for _, h := range hosts {
				if h.Status == "ready" && len(h.Templates) > 0 {
					return nil
				}
			}
		}
		select {
		case err := <-agentDone:
			agentDone <- err
			return fmt.Errorf("the agent stopped before it was ready: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
