package tlsreload

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/localca"
)

// servedSubject connects to addr as serverName and returns the subject
// of the certificate the server presented, and the protocol negotiated.
func servedSubject(t *testing.T, ca *localca.CA, addr, serverName string) (string, string) {
	t.Helper()
	cfg := ca.ClientConfig()
	cfg.ServerName = serverName
	cfg.NextProtos = []string{"h2", "http/1.1"}
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatalf("handshake as %s: %v", serverName, err)
	}
	defer conn.Close()
	st := conn.ConnectionState()
	return st.PeerCertificates[0].Subject.CommonName, st.NegotiatedProtocol
}

// A renewed pair is served without a restart, a wildcard certificate
// covers every sandbox name, and a broken renewal leaves the old pair.
func TestReloadOnChange(t *testing.T) {
	ca, err := localca.New("test root")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile, err := ca.IssueFiles(dir, "tls", "first", "*.sb.test", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := Load(certFile, keyFile, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{TLSConfig: pair.ServerConfig(), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) })}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	if subj, proto := servedSubject(t, ca, addr, "49983-sb-1234.sb.test"); subj != "first" || proto != "h2" {
		t.Fatalf("served %q over %q, want first over h2", subj, proto)
	}
	// HTTP/2 end to end through net/http.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientConfig(), ForceAttemptHTTP2: true}}
	resp, err := client.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "HTTP/2.0" {
		t.Errorf("request arrived as %s", body)
	}

	if _, _, err := ca.IssueFiles(dir, "tls", "second", "*.sb.test", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { s, _ := servedSubject(t, ca, addr, "x.sb.test"); return s == "second" }, "the renewed certificate")

	// A key that does not match the certificate: the previous pair stays.
	other, _, err := ca.Issue("mismatch", "*.sb.test")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, other, 0o600); err != nil {
		t.Fatal(err)
	}
	// Make the next handshake look at the files, as it would a second on.
	pair.mu.Lock()
	pair.lastCheck = time.Time{}
	pair.mu.Unlock()
	if s, _ := servedSubject(t, ca, addr, "x.sb.test"); s != "second" {
		t.Fatalf("after a broken renewal the server presented %q", s)
	}
	pair.mu.Lock()
	seen := pair.lastErr
	pair.mu.Unlock()
	if seen == "" {
		t.Fatal("the broken pair was not looked at")
	}
	if _, _, err := ca.IssueFiles(dir, "tls", "third", "*.sb.test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { s, _ := servedSubject(t, ca, addr, "x.sb.test"); return s == "third" }, "the repaired certificate")
}

func TestCheck(t *testing.T) {
	ca, err := localca.New("test root")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := ca.IssueFiles(t.TempDir(), "tls", "api", "api.test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Check(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	if _, err := Check(keyFile, certFile); err == nil {
		t.Fatal("swapped files accepted")
	}
}

func waitFor(t *testing.T, ok func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s was not picked up within 10 s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
