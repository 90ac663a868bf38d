// Package cptest runs a real control plane for tests and benchmarks: a
// private PostgreSQL (pglocal) with a fresh database per control plane,
// and cpserver.Run in this process on a loopback port, driven through
// cpclient.
package cptest

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"git.omukk.dev/wrenn/sandbox/internal/agentclient"
	"git.omukk.dev/wrenn/sandbox/internal/cpauth"
	"git.omukk.dev/wrenn/sandbox/internal/cpclient"
	"git.omukk.dev/wrenn/sandbox/internal/hostca"
	"git.omukk.dev/wrenn/sandbox/internal/pglocal"
	"git.omukk.dev/wrenn/sandbox/pkg/config"
	"git.omukk.dev/wrenn/sandbox/pkg/cpextension"
	"git.omukk.dev/wrenn/sandbox/pkg/cpserver"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
	"git.omukk.dev/wrenn/sandbox/proto/hostagent/v1/hostagentv1connect"
)

// Postgres is one server shared by the control planes of a test binary.
type Postgres struct {
	*pglocal.Server
	stop func()
	n    atomic.Int64
}

// StartPostgres starts the shared server; Stop removes it.
func StartPostgres() (*Postgres, error) {
	s, stop, err := pglocal.StartTemp(context.Background(), nil)
	if err != nil {
		return nil, err
	}
	return &Postgres{Server: s, stop: stop}, nil
}

// Stop stops the server and removes its data.
func (p *Postgres) Stop() { p.stop() }

// NewDatabase creates an empty database and returns its URL.
func (p *Postgres) NewDatabase(ctx context.Context) (string, error) {
	name := fmt.Sprintf("wrenn_test_%d", p.n.Add(1))
	if err := p.CreateDatabase(ctx, name); err != nil {
		return "", err
	}
	return p.URL(name), nil
}

// CP is a running control plane.
type CP struct {
	URL string
	// ProxyURL is the sandbox proxy's (header routing: E2b-Sandbox-Id/Port).
	ProxyURL string
	// MetricsURL is the metrics listener's (/metrics, /healthz, /readyz).
	MetricsURL string
	Config     config.Config
	// HTTPClient calls the API (nil: http.DefaultClient); a test of a
	// control plane serving HTTPS sets one that trusts its CA.
	HTTPClient *http.Client
	cancel     context.CancelFunc
	done       chan error
}

// Options tune a control plane for a test.
type Options struct {
	// DatabaseURL reuses a database (a restart); empty makes a new one.
	DatabaseURL string
	Secret      []byte
	Listen      string
	ProxyListen string
	Extensions  []cpextension.Extension
	Tune        func(*config.Config)
	Log         *slog.Logger
}

// Start runs a control plane until Stop.
func (p *Postgres) Start(ctx context.Context, o Options) (*CP, error) {
	cfg := config.Defaults()
	cfg.DatabaseURL = o.DatabaseURL
	if cfg.DatabaseURL == "" {
		var err error
		if cfg.DatabaseURL, err = p.NewDatabase(ctx); err != nil {
			return nil, err
		}
	}
	cfg.Secret = o.Secret
	if cfg.Secret == nil {
		cfg.Secret = make([]byte, 32)
		rand.Read(cfg.Secret)
	}
	cfg.AuthRatePerMinute, cfg.AuthAccountRatePerMinute = 10000, 10000
	cfg.AllowSignup = true
	cfg.PlainHTTP = true
	if o.Tune != nil {
		o.Tune(&cfg)
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, err
	}
	if o.ProxyListen == "" {
		o.ProxyListen = "127.0.0.1:0"
	}
	pln, err := net.Listen("tcp", o.ProxyListen)
	if err != nil {
		ln.Close()
		return nil, err
	}
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ln.Close()
		pln.Close()
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cctx, cancel := context.WithCancel(ctx)
	scheme := "http://"
	if !cfg.PlainHTTP {
		scheme = "https://" // a Tune that gave it certificates
	}
	cp := &CP{URL: scheme + ln.Addr().String(), ProxyURL: scheme + pln.Addr().String(), MetricsURL: "http://" + mln.Addr().String(), Config: cfg, cancel: cancel, done: make(chan error, 1)}
	ready := make(chan struct{})
	go func() {
		cp.done <- cpserver.Run(cctx, cpserver.WithConfig(cfg), cpserver.WithListener(ln), cpserver.WithProxyListener(pln), cpserver.WithMetricsListener(mln), cpserver.WithLogger(o.Log),
			cpserver.WithExtensions(o.Extensions...), cpserver.WithReady(func(string) { close(ready) }))
	}()
	select {
	case <-ready:
		return cp, nil
	case err := <-cp.done:
		cancel()
		return nil, fmt.Errorf("control plane did not start: %w", err)
	}
}

// Stop shuts the control plane down and returns Run's result.
func (cp *CP) Stop() error {
	cp.cancel()
	select {
	case err := <-cp.done:
		return err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("control plane did not stop within 30 s")
	}
}

// Response is an API response.
type Response = cpclient.Response

// Do calls the API with token as the bearer credential (none if empty),
// with cpclient's body conventions: JSON unless body is a []byte or
// io.Reader (sent as is), or a json.RawMessage (sent as is, as JSON, even
// if malformed).
func (cp *CP) Do(method, path, token string, body any) (Response, error) {
	return cpclient.New(cp.URL, cp.HTTPClient).Do(context.Background(), method, path, token, body)
}

// Must is Do that fails the test on a transport error or a status other
// than want.
func (cp *CP) Must(t testing.TB, want int, method, path, token string, body any) Response {
	t.Helper()
	r, err := cp.Do(method, path, token, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if r.Status != want {
		t.Fatalf("%s %s: want %d, got %s", method, path, want, r)
	}
	return r
}

// Account is a signed-up user with their personal team.
type Account struct {
	Email, Token, UserID, TeamID string
}

// Signup creates an account.
func (cp *CP) Signup(t testing.TB, email string) Account {
	t.Helper()
	r := cp.Must(t, http.StatusCreated, "POST", "/v1/auth/signup", "", map[string]string{"email": email, "password": Password})
	var s struct {
		Token        string
		User         struct{ ID string }
		ActiveTeamID string `json:"active_team_id"`
	}
	if err := r.JSON(&s); err != nil {
		t.Fatal(err)
	}
	return Account{Email: email, Token: s.Token, UserID: s.User.ID, TeamID: s.ActiveTeamID}
}

// Admin creates a platform admin as an operator does, on the host
// (cpserver.CreateAdmin), and signs them in.
func (cp *CP) Admin(t testing.TB, email string) Account {
	t.Helper()
	a, err := cp.CreateAdmin(context.Background(), email)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// Password is every test account's password.
const Password = "correct horse battery"

// CreateAdmin is Admin for callers without a testing.TB (benchmarks).
func (cp *CP) CreateAdmin(ctx context.Context, email string) (Account, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, _, err := cpserver.CreateAdmin(ctx, cp.Config, email, Password, "", log); err != nil {
		return Account{}, err
	}
	return cp.Login(email)
}

// Login signs an account in.
func (cp *CP) Login(email string) (Account, error) {
	r, err := cp.Do("POST", "/v1/auth/login", "", map[string]string{"email": email, "password": Password})
	if err != nil {
		return Account{}, err
	}
	var s struct {
		Token        string
		User         struct{ ID string }
		ActiveTeamID string `json:"active_team_id"`
	}
	if r.Status != http.StatusOK || r.JSON(&s) != nil {
		return Account{}, fmt.Errorf("login %s: %s", email, r)
	}
	return Account{Email: email, Token: s.Token, UserID: s.User.ID, TeamID: s.ActiveTeamID}, nil
}

// APIKey creates a key in the account's active team.
func (cp *CP) APIKey(t testing.TB, a Account) string {
	t.Helper()
	r := cp.Must(t, http.StatusCreated, "POST", "/v1/api-keys", a.Token, map[string]string{"name": "test"})
	k, _ := r.Map()["key"].(string)
	return k
}

// AgentClient calls the agent of host hostID at addr as the control plane
// does, for tests and benchmarks that reach an agent directly.
func (cp *CP) AgentClient(ctx context.Context, hostID, addr string) (hostagentv1connect.HostAgentServiceClient, error) {
	t, err := cp.AgentTransport(ctx, hostID)
	if err != nil {
		return nil, err
	}
	return agentclient.NewTLS(addr, t), nil
}

// AgentTransport reaches host hostID's agent as the control plane does:
// mutual TLS, with the control plane's certificate from the host CA in
// its database.
func (cp *CP) AgentTransport(ctx context.Context, hostID string) (*http.Transport, error) {
	hid, err := id.Parse(id.Host, hostID)
	if err != nil {
		return nil, err
	}
	keys, err := cpauth.NewKeys(cp.Config.Secret)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, cp.Config.DatabaseURL)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	svc := service.New(pool, keys, cp.Config, slog.New(slog.DiscardHandler))
	if err := svc.LoadHostCA(ctx); err != nil {
		return nil, err
	}
	t := agentclient.Transport()
	t.TLSClientConfig = svc.AgentTLS(hid)
	return t, nil
}

// RegisterHost registers a host as an agent does (a fresh token, a
// certificate request for a fresh key) and returns what registration
// gave; on a control plane serving plain HTTP that includes the secret
// its reports authenticate with.
func (cp *CP) RegisterHost(t testing.TB, adminToken, name, address string) hostapi.RegisterResponse {
	t.Helper()
	tok := cp.Must(t, http.StatusCreated, "POST", "/v1/hosts/tokens", adminToken, nil).Map()["token"].(string)
	key, err := hostca.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := hostca.CSR(key, name)
	if err != nil {
		t.Fatal(err)
	}
	var reg hostapi.RegisterResponse
	if err := cp.Must(t, http.StatusCreated, "POST", "/v1/hosts/register", "", hostapi.RegisterRequest{Token: tok, Name: name, Address: address, CSR: string(csr)}).JSON(&reg); err != nil {
		t.Fatal(err)
	}
	return reg
}
