package hostagent

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"git.omukk.dev/wrenn/sandbox/internal/cpauth"
	"git.omukk.dev/wrenn/sandbox/internal/cpclient"
	"git.omukk.dev/wrenn/sandbox/internal/cptest"
	"git.omukk.dev/wrenn/sandbox/internal/hostca"
	"git.omukk.dev/wrenn/sandbox/internal/localca"
	"git.omukk.dev/wrenn/sandbox/internal/sandbox"
	"git.omukk.dev/wrenn/sandbox/internal/waitfor"
	"git.omukk.dev/wrenn/sandbox/pkg/config"
	"git.omukk.dev/wrenn/sandbox/pkg/hostapi"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
	pb "git.omukk.dev/wrenn/sandbox/proto/hostagent/v1"
)

// tlsCP is a real control plane serving HTTPS with a certificate from a
// test CA, as in production, with hosts' certificates valid for ttl.
func tlsCP(t *testing.T, pg *cptest.Postgres, ttl time.Duration) (*cptest.CP, *localca.CA) {
	t.Helper()
	ca, err := localca.New("wrenn test web root")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := ca.IssueFiles(t.TempDir(), "api", "api", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cp, err := pg.Start(context.Background(), cptest.Options{Tune: func(c *config.Config) {
		c.PlainHTTP = false
		c.TLSCertFile, c.TLSKeyFile, c.ProxyTLSCertFile, c.ProxyTLSKeyFile = certFile, keyFile, certFile, keyFile
		c.HostCertTTL = ttl
		c.HeartbeatTimeout, c.ReconcileInterval = 3*time.Second, 500*time.Millisecond
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	cp.HTTPClient = &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientConfig()}}
	return cp, ca
}

// testAgent is the agent's real API (agentHandler) on mutual TLS, with a
// manager that starts no guests, registered with a control plane, and
// heartbeating and renewing its certificate as Run does. seen records
// the identity of every caller that got through.
type testAgent struct {
	addr   string
	creds  credentials
	ident  *identity
	dir    string
	mu     sync.Mutex
	seen   map[string]int
	stream func(http.ResponseWriter, *http.Request)
}

func (a *testAgent) callers(who string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seen[who]
}

func startTestAgent(t *testing.T, cp *cptest.CP, webCA *localca.CA, admin string) *testAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.DiscardHandler)
	m, err := sandbox.NewManager(sandbox.Config{StateDir: t.TempDir(), ImagesDir: t.TempDir(), Driver: noGuests{}, Net: noSlots{},
		HostCPUs: 2, HostMemMiB: 2048, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &testAgent{addr: ln.Addr().String(), dir: t.TempDir(), seen: map[string]int{}}
	token := cp.Must(t, 201, "POST", "/v1/hosts/tokens", admin, nil).Map()["token"].(string)
	a.creds, a.ident, err = joinControlPlane(ctx, a.dir, cp.URL, token, "h-"+a.addr, a.addr, webCA.Pool())
	if err != nil {
		t.Fatal(err)
	}
	ready := &readiness{controlPlane: true}
	h := agentHandler(&Service{M: m, HostID: a.creds.HostID, Log: log}, a.ident, "", ready, newAgentMetrics(m, 0))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.seen[hostca.Identity(r.TLS.PeerCertificates[0])]++
		stream := a.stream
		a.mu.Unlock()
		if r.URL.Path == "/test/stream" && stream != nil {
			stream(w, r)
			return
		}
		h.ServeHTTP(w, r)
	}), ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}
	go srv.Serve(tls.NewListener(ln, a.ident.serverTLS()))
	var wg sync.WaitGroup
	wg.Go(func() { heartbeat(ctx, log, a.creds, a.ident, a.addr, m, ready) })
	wg.Go(func() {
		a.ident.keepRenewed(ctx, log, cpclient.New(a.creds.ControlPlane, a.ident.client(10*time.Second)), a.creds.Secret, "h")
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		srv.Close()
		m.Close()
	})
	waitfor.True(t, 20*time.Second, "host "+a.creds.HostID+" ready", func() bool {
		return cp.Must(t, 200, "GET", "/v1/hosts/"+a.creds.HostID, admin, nil).Map()["status"] == "ready"
	})
	return a
}

// TestRegistrationIssuesCertificate: registering sends a CSR (the key
// stays in the state directory, 0600) and yields a certificate from the
// control plane's CA naming the host ID and its address; over HTTPS no
// secret is handed out; the control plane then calls the agent over
// mutual TLS as wrenn://control-plane, and the agent's reports get in
// with the certificate.
func TestRegistrationIssuesCertificate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and a control plane")
	}
	pg := startPG(t)
	cp, webCA := tlsCP(t, pg, time.Hour)
	admin := cp.Admin(t, "admin@example.com").Token
	a := startTestAgent(t, cp, webCA, admin)

	if a.creds.Secret != "" {
		t.Error("a control plane serving HTTPS handed out a host secret")
	}
	fi, err := os.Stat(filepath.Join(a.dir, keyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("host key: %v %v", fi, err)
	}
	leaf := a.ident.cert.Load().Leaf
	if got := hostca.HostID(leaf); got != a.creds.HostID {
		t.Errorf("certificate names host %q, want %q", got, a.creds.HostID)
	}
	if len(leaf.IPAddresses) != 1 || leaf.IPAddresses[0].String() != "127.0.0.1" {
		t.Errorf("certificate IP SANs %v, want the advertised 127.0.0.1", leaf.IPAddresses)
	}
	if life := leaf.NotAfter.Sub(time.Now()); life < 55*time.Minute || life > time.Hour {
		t.Errorf("certificate valid for %s more, want the configured hour", life)
	}
	// The certificate verifies as a server certificate for its address
	// with ordinary tools' checks too.
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: a.ident.roots, DNSName: "127.0.0.1"}); err != nil {
		t.Errorf("verify for 127.0.0.1: %v", err)
	}
	// The reconciler calls the agent, as the control plane.
	waitfor.True(t, 20*time.Second, "the control plane to call the agent", func() bool { return a.callers(hostca.ControlPlaneURI) > 0 })
	// A restart reads the same identity back without a token.
	c2, id2, err := joinControlPlane(context.Background(), a.dir, cp.URL, "", "x", a.addr, webCA.Pool())
	if err != nil || c2.HostID != a.creds.HostID || !id2.cert.Load().Leaf.Equal(leaf) {
		t.Fatalf("saved identity: %+v %v", c2, err)
	}
	// A request without a CSR is refused, naming it.
	tok := cp.Must(t, 201, "POST", "/v1/hosts/tokens", admin, nil).Map()["token"].(string)
	if r := cp.Must(t, 400, "POST", "/v1/hosts/register", "", hostapi.RegisterRequest{Token: tok, Address: "127.0.0.1:1"}); !strings.Contains(r.String(), "csr") {
		t.Errorf("register without a csr: %s", r)
	}
	// Over HTTPS a host presents its certificate: a secret is not enough.
	if r := cp.Must(t, 401, "POST", "/v1/hosts/"+a.creds.HostID+"/heartbeat", "wrh_guess", hostapi.Heartbeat{}); !strings.Contains(r.String(), "certificate") {
		t.Errorf("heartbeat without a certificate: %s", r)
	}
}

// TestForeignCertificatesRefused: each side refuses certificates from
// another CA, and a certificate for the wrong identity from the right CA.
func TestForeignCertificatesRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and a control plane")
	}
	pg := startPG(t)
	cp, webCA := tlsCP(t, pg, time.Hour)
	admin := cp.Admin(t, "admin@example.com").Token
	a := startTestAgent(t, cp, webCA, admin)
	b := startTestAgent(t, cp, webCA, admin)
	ctx := context.Background()

	foreign, err := hostca.New()
	if err != nil {
		t.Fatal(err)
	}
	call := func(cert *tls.Certificate) error {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }}}}
		res, err := c.Get("https://" + a.addr + "/healthz")
		if err == nil {
			res.Body.Close()
			return fmt.Errorf("answered %d", res.StatusCode)
		}
		return nil
	}
	// To the agent: the control plane's identity from another CA; another
	// host's certificate from the right CA; no certificate.
	fcp, err := foreign.ControlPlaneCertificate()
	if err != nil {
		t.Fatal(err)
	}
	for name, cert := range map[string]*tls.Certificate{"a foreign control plane": fcp, "another host": b.ident.cert.Load(), "no certificate": {}} {
		if err := call(cert); err != nil {
			t.Errorf("the agent let in %s: %v", name, err)
		}
	}
	// The real control plane's certificate gets in.
	asCP, err := cp.AgentTransport(ctx, a.creds.HostID)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := (&http.Client{Transport: asCP}).Get("https://" + a.addr + "/healthz"); err != nil || res.StatusCode != 200 {
		t.Fatalf("the control plane's certificate: %v %v", res, err)
	}

	// To the control plane: host a's identity signed by another CA.
	keyPEM, csrPEM, err := newKeyAndCSR("forged")
	if err != nil {
		t.Fatal(err)
	}
	_, forgedPEM, err := foreign.SignHost(csrPEM, a.creds.HostID, a.addr, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := tls.X509KeyPair(forgedPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	fc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: webCA.Pool(),
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &forged, nil }}}}
	if _, err := cpclient.New(cp.URL, fc).Heartbeat(ctx, a.creds.HostID, "", hostapi.Heartbeat{}); err == nil {
		t.Error("the control plane took a heartbeat with a certificate from another CA")
	}
	// Host b's certificate is b's, not a's.
	var ce *cpclient.Error
	if _, err := cpclient.New(cp.URL, b.ident.client(5*time.Second)).Heartbeat(ctx, a.creds.HostID, "", hostapi.Heartbeat{}); !errors.As(err, &ce) || ce.Status != 401 {
		t.Errorf("host b's certificate for host a's heartbeat: %v", err)
	}

	// The control plane verifies the agent: calling a through b's address
	// (b's certificate, the right CA) fails, as does a server with a's
	// identity from another CA.
	asCPForA := &http.Client{Transport: asCP}
	if res, err := asCPForA.Get("https://" + b.addr + "/healthz"); err == nil {
		res.Body.Close()
		t.Error("the control plane took host b's certificate for host a")
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{forged}, ClientAuth: tls.RequestClientCert})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	quiet := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
	go quiet.Serve(ln)
	if res, err := asCPForA.Get("https://" + ln.Addr().String() + "/healthz"); err == nil {
		res.Body.Close()
		t.Error("the control plane took an agent certificate from another CA")
	}
}

// TestDeletedHostRefusedAtOnce: once a host is deleted, its next request
// is refused, on a connection it already had open too; so is a renewal.
func TestDeletedHostRefusedAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and a control plane")
	}
	pg := startPG(t)
	cp, webCA := tlsCP(t, pg, time.Hour)
	admin := cp.Admin(t, "admin@example.com").Token
	a := startTestAgent(t, cp, webCA, admin)
	ctx := context.Background()

	// One client, one kept-alive connection.
	var conns int
	hc := a.ident.client(5 * time.Second)
	tr := hc.Transport.(*http.Transport)
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, n, addr string) (net.Conn, error) { conns++; return dial(ctx, n, addr) }
	c := cpclient.New(cp.URL, hc)
	if _, err := c.Heartbeat(ctx, a.creds.HostID, "", hostapi.Heartbeat{Address: a.addr}); err != nil {
		t.Fatal(err)
	}
	cp.Must(t, 204, "DELETE", "/v1/hosts/"+a.creds.HostID+"?force=true", admin, nil)
	var ce *cpclient.Error
	if _, err := c.Heartbeat(ctx, a.creds.HostID, "", hostapi.Heartbeat{Address: a.addr}); !errors.As(err, &ce) || ce.Status != 401 {
		t.Fatalf("heartbeat of a deleted host: %v", err)
	}
	if conns != 1 {
		t.Errorf("%d connections: the refusal was meant on the open one", conns)
	}
	if err := a.ident.renew(ctx, c, "", "h"); !errors.As(err, &ce) || ce.Status != 401 {
		t.Errorf("renewal for a deleted host: %v", err)
	}
}

// TestRotationKeepsStreams: certificates valid for seconds are renewed
// by the agent before they expire, again and again; a stream the control
// plane opened before the first renewal runs on to its end; heartbeats go
// on past the first certificate's expiry; the new certificate is saved.
func TestRotationKeepsStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and a control plane")
	}
	pg := startPG(t)
	const ttl = 4 * time.Second
	cp, webCA := tlsCP(t, pg, ttl)
	admin := cp.Admin(t, "admin@example.com").Token
	a := startTestAgent(t, cp, webCA, admin)
	a.mu.Lock()
	a.stream = func(w http.ResponseWriter, r *http.Request) {
		for i := range 30 {
			if _, err := fmt.Fprintf(w, "tick %d\n", i); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(300 * time.Millisecond)
		}
	}
	a.mu.Unlock()
	first := a.ident.cert.Load().Leaf

	asCP, err := cp.AgentTransport(context.Background(), a.creds.HostID)
	if err != nil {
		t.Fatal(err)
	}
	res, err := (&http.Client{Transport: asCP}).Get("https://" + a.addr + "/test/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if got := hostca.SerialText(res.TLS.PeerCertificates[0]); got != hostca.SerialText(first) {
		t.Fatalf("the stream began on certificate %s, not the first %s", got, hostca.SerialText(first))
	}
	sc := bufio.NewScanner(res.Body)
	n := 0
	for sc.Scan() {
		if sc.Text() != fmt.Sprintf("tick %d", n) {
			t.Fatalf("line %d: %q", n, sc.Text())
		}
		n++
	}
	if err := sc.Err(); err != nil || n != 30 {
		t.Fatalf("the stream ended after %d lines: %v", n, err)
	}
	// 9 s: the first certificate expired meanwhile, renewed at least twice.
	now := a.ident.cert.Load().Leaf
	if now.Equal(first) || !time.Now().After(first.NotAfter) {
		t.Fatalf("certificate not renewed: first until %s, now %s until %s", first.NotAfter, hostca.SerialText(now), now.NotAfter)
	}
	saved, err := os.ReadFile(filepath.Join(a.dir, certFile))
	if err != nil {
		t.Fatal(err)
	}
	if c, err := hostca.ParseCertificate(saved); err != nil || c.NotAfter.Before(now.NotAfter.Add(-ttl)) {
		t.Errorf("saved certificate: %v %v", c, err)
	}
	// New connections get the new certificate, and the control plane
	// still calls the agent and takes its heartbeats.
	res.Body.Close()
	fresh, err := cp.AgentTransport(context.Background(), a.creds.HostID)
	if err != nil {
		t.Fatal(err)
	}
	res2, err := (&http.Client{Transport: fresh}).Get("https://" + a.addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res2.Body.Close()
	if hostca.SerialText(res2.TLS.PeerCertificates[0]) == hostca.SerialText(first) {
		t.Error("a new connection got the first certificate")
	}
	before := cp.Must(t, 200, "GET", "/v1/hosts/"+a.creds.HostID, admin, nil).Map()["last_heartbeat_at"]
	waitfor.True(t, 10*time.Second, "a heartbeat after the first certificate expired", func() bool {
		h := cp.Must(t, 200, "GET", "/v1/hosts/"+a.creds.HostID, admin, nil).Map()
		return h["status"] == "ready" && h["last_heartbeat_at"] != before
	})
	// The agent's API still serves the control plane.
	ac, err := cp.AgentClient(context.Background(), a.creds.HostID, a.addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ac.HostInfo(context.Background(), connect.NewRequest(&pb.HostInfoRequest{})); err != nil {
		t.Fatal(err)
	}
}

func startPG(t *testing.T) *cptest.Postgres {
	t.Helper()
	pg, err := cptest.StartPostgres()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Stop)
	return pg
}

// TestHostFromBeforeMutualTLS: a host registered before mutual TLS (a
// secret, no certificate) gets its first certificate with its secret when
// the upgraded agent starts, keeping its host ID (and so its sandboxes);
// after that its secret opens nothing.
func TestHostFromBeforeMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and a control plane")
	}
	pg := startPG(t)
	cp, webCA := tlsCP(t, pg, time.Hour)
	ctx := context.Background()
	hid := uuid.New()
	secret := "wrh_" + strings.Repeat("s", 40)
	conn, err := pgx.Connect(ctx, cp.Config.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO hosts (id, name, address, status, secret_hash) VALUES ($1, 'old', '127.0.0.1:7070', 'ready', $2)`, hid, cpauth.HashSecret(secret)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	old := credentials{ControlPlane: cp.URL, HostID: id.Format(id.Host, hid), Secret: secret}
	b, _ := json.Marshal(old)
	if err := os.WriteFile(credentialsPath(dir), b, 0o600); err != nil {
		t.Fatal(err)
	}
	c, ident, err := joinControlPlane(ctx, dir, cp.URL, "", "old", "127.0.0.1:7070", webCA.Pool())
	if err != nil {
		t.Fatal(err)
	}
	if c.HostID != old.HostID || hostca.HostID(ident.cert.Load().Leaf) != old.HostID {
		t.Fatalf("host %s, certificate for %s", c.HostID, hostca.HostID(ident.cert.Load().Leaf))
	}
	if _, err := cpclient.New(cp.URL, ident.client(5*time.Second)).Heartbeat(ctx, c.HostID, "", hostapi.Heartbeat{Address: "127.0.0.1:7070"}); err != nil {
		t.Fatalf("heartbeat with the first certificate: %v", err)
	}
	// The secret does not get a second certificate, nor a heartbeat in.
	if _, err := firstCertificate(ctx, t.TempDir(), old, "old", webCA.Pool()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("a second certificate by the secret: %v", err)
	}
	if r, _ := cp.Do("POST", "/v1/hosts/"+old.HostID+"/heartbeat", secret, hostapi.Heartbeat{}); r.Status != 401 {
		t.Errorf("heartbeat by the secret over HTTPS: %s", r)
	}
}
