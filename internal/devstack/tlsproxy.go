package devstack

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"syscall"

	"git.omukk.dev/wrenn/sandbox/internal/localca"
)

// tlsProxy is the sandbox proxy's TLS side in `wrenn dev`: what E2B's
// SDKs need for getHost(port) and signed file URLs, which name a sandbox
// in the host name (https://<port>-<sandboxID>.<domain>) rather than in
// headers. Names under localhost resolve to loopback without any DNS
// (libnss-myhostname, which scripts/setup installs, or systemd-resolved),
// and the certificate comes from a CA of the stack's own that a client
// trusts through one file.
type tlsProxy struct {
	domain    string // as clients build URLs from it: name:port
	caFile    string
	config    *tls.Config
	listeners []net.Listener
}

func listenTLSProxy(dataDir, name string, port int, log *slog.Logger) (*tlsProxy, error) {
	if name == "" {
		return nil, errors.New("--sandbox-domain is empty: the TLS proxy needs a name (wrenn.localhost), or --proxy-tls-port 0 turns it off")
	}
	dir := filepath.Join(dataDir, "tls")
	ca, err := localca.Open(dir, "Wrenn dev CA")
	if err != nil {
		return nil, fmt.Errorf("the TLS proxy's CA: %w", err)
	}
	// A fresh certificate at every start: one for a changed name, and
	// never an expired one.
	certFile, keyFile, err := ca.IssueFiles(dir, "proxy", "wrenn dev sandbox proxy", "*."+name, name)
	if err != nil {
		return nil, fmt.Errorf("the TLS proxy's certificate: %w", err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	tp := &tlsProxy{domain: name, caFile: filepath.Join(dir, "ca.pem"),
		config: &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}}
	if port != 443 {
		tp.domain = net.JoinHostPort(name, strconv.Itoa(port))
	}
	// A name under localhost may resolve to either loopback address first
	// (::1, with glibc's defaults): listen on both.
	for _, host := range []string{"127.0.0.1", "::1"} {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if host == "::1" && errors.Is(err, syscall.EADDRNOTAVAIL) {
			log.Info("no IPv6 loopback: the TLS proxy listens on 127.0.0.1 only")
			continue
		}
		if err != nil {
			tp.close()
			return nil, fmt.Errorf("the TLS sandbox proxy: %w (--proxy-tls-port picks another port, 0 turns it off)", err)
		}
		tp.listeners = append(tp.listeners, ln)
	}
	return tp, nil
}

// close closes the listeners the control plane has not taken (closing
// one it serves on is harmless: it has stopped by then).
func (tp *tlsProxy) close() {
	for _, ln := range tp.listeners {
		ln.Close()
	}
}
