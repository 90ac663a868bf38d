package cpserver_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/cptest"
	"git.omukk.dev/wrenn/sandbox/internal/localca"
	"git.omukk.dev/wrenn/sandbox/pkg/config"
	"git.omukk.dev/wrenn/sandbox/pkg/cpserver"
)

// The API and the sandbox proxy serve HTTPS and HTTP/2 from certificate
// files: the proxy with a wildcard certificate of its own for every
// <port>-<sandbox>.<domain> name, and a renewed certificate is served
// without a restart.
func TestTLS(t *testing.T) {
	ca, err := localca.New("wrenn test root")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	apiCert, apiKey, err := ca.IssueFiles(dir, "api", "api-1", "127.0.0.1", "api.wrenn.test")
	if err != nil {
		t.Fatal(err)
	}
	proxyCert, proxyKey, err := ca.IssueFiles(dir, "proxy", "proxy-1", "*.sb.wrenn.test")
	if err != nil {
		t.Fatal(err)
	}
	cp, err := pg.Start(context.Background(), cptest.Options{Tune: func(c *config.Config) {
		c.PlainHTTP = false
		c.TLSCertFile, c.TLSKeyFile = apiCert, apiKey
		c.ProxyTLSCertFile, c.ProxyTLSKeyFile = proxyCert, proxyKey
		c.SandboxDomain = "sb.wrenn.test"
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()
	if !strings.HasPrefix(cp.URL, "https://") {
		t.Fatalf("URL %s", cp.URL)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientConfig(), ForceAttemptHTTP2: true}}
	resp, err := client.Get(cp.URL + "/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" {
		t.Fatalf("GET /openapi.yaml: %d over %s", resp.StatusCode, resp.Proto)
	}
	// Plain HTTP to the TLS port is refused.
	plainURL := "http://" + strings.TrimPrefix(cp.URL, "https://") + "/openapi.yaml"
	if resp, err := http.Get(plainURL); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the API: %d", resp.StatusCode)
		}
	}
	// A client that does not trust the CA is refused.
	if _, err := http.Get(cp.URL + "/openapi.yaml"); err == nil {
		t.Error("a client without the test CA accepted the certificate")
	}

	// The proxy, by Host, over HTTP/2: the wildcard certificate matches
	// and the request is routed (to a sandbox that does not exist).
	proxyAddr := strings.TrimPrefix(cp.ProxyURL, "https://")
	sandboxHost := "49983-sb-00000000000000000000000000000000.sb.wrenn.test"
	proxyClient := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: ca.Pool(), ServerName: sandboxHost},
		ForceAttemptHTTP2: true,
	}}
	req, _ := http.NewRequest("GET", "https://"+proxyAddr+"/health", nil)
	req.Host = sandboxHost
	resp, err = proxyClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var perr struct {
		Code string `json:"error_code"`
	}
	_ = json.Unmarshal(body, &perr)
	if resp.StatusCode != http.StatusBadGateway || resp.Proto != "HTTP/2.0" || resp.TLS.PeerCertificates[0].Subject.CommonName != "proxy-1" {
		t.Fatalf("proxy: %d over %s from %s: %s", resp.StatusCode, resp.Proto, resp.TLS.PeerCertificates[0].Subject.CommonName, body)
	}
	if perr.Code == "" || perr.Code == "no_route" {
		t.Errorf("the proxy did not route by Host: %s", body)
	}

	// Renew both; new connections get the new certificates.
	if _, _, err := ca.IssueFiles(dir, "api", "api-2", "127.0.0.1", "api.wrenn.test"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.IssueFiles(dir, "proxy", "proxy-2", "*.sb.wrenn.test"); err != nil {
		t.Fatal(err)
	}
	subject := func(addr, serverName string) string {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: serverName})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	deadline := time.Now().Add(10 * time.Second)
	for subject(strings.TrimPrefix(cp.URL, "https://"), "127.0.0.1") != "api-2" || subject(proxyAddr, sandboxHost) != "proxy-2" {
		if time.Now().After(deadline) {
			t.Fatal("renewed certificates not served within 10 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// check-config reads the file as a start would and checks the files it
// names; a bad value fails with the key and the reason.
func TestCheckConfig(t *testing.T) {
	ca, err := localca.New("wrenn test root")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile, err := ca.IssueFiles(dir, "api", "api", "api.wrenn.test")
	if err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, bytes.Repeat([]byte("s"), 32), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "cp.toml")
	write := func(body string) {
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	good := "database_url = \"postgres://db/wrenn\"\nsecret_file = \"" + secretFile + "\"\ntls_cert_file = \"" + certFile + "\"\ntls_key_file = \"" + keyFile + "\"\n"
	write(good)
	var out bytes.Buffer
	if err := cpserver.CheckConfig(file, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), file+": ok") || !strings.Contains(out.String(), "api.wrenn.test") {
		t.Errorf("output:\n%s", out.String())
	}
	for body, want := range map[string]string{
		good + "session_ttl = \"1 day\"\n":              `key "session_ttl"`,
		good + "listen_address = \":443\"\n":            `key "listen_address": unknown key`,
		strings.Replace(good, keyFile, certFile, 1):     "tls: ",
		strings.Replace(good, secretFile, dir+"/no", 1): `key "secret_file": read the secret`,
		"database_url = \"postgres://db/wrenn\"\n":      "secret",
		good + "plain_http = true\n":                    "plain_http and a TLS certificate",
		good + "heartbeat_timeout = \"-1s\"\n":          "heartbeat_timeout must be positive",
		good + "auth_rate_per_minute = \"twenty\"\n":    `key "auth_rate_per_minute": want an integer`,
		good + "proxy_tls_cert_file = \"/x.pem\"\n":     "proxy_tls_key_file",
	} {
		write(body)
		err := cpserver.CheckConfig(file, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", body, err, want)
		}
	}
}
