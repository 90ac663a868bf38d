// Package tlsreload serves a certificate and key from files and picks up a
// replaced pair without a restart: every handshake (at most once a
// second) compares the files' identity and modification time with the
// ones loaded, and loads the pair again when either changed. A pair that
// does not load (half-written, a key that does not match) leaves the
// previous one serving, so a certificate renewal never takes TLS down.
package tlsreload

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"
)

// CheckInterval is how often the files are looked at, at most.
const CheckInterval = time.Second

// Pair is a certificate chain and key read from files.
type Pair struct {
	certFile, keyFile string
	log               *slog.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	stamp     [2]stamp
	lastCheck time.Time
	lastErr   string
}

// stamp identifies one version of a file: a renewal that writes a new
// file and renames it over the old (or repoints a symlink, as certbot
// does) changes the inode; one that rewrites in place changes the
// modification time or size.
type stamp struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
}

// Load reads the pair; it must load now (a server does not start without
// its certificate).
func Load(certFile, keyFile string, log *slog.Logger) (*Pair, error) {
	p := &Pair{certFile: certFile, keyFile: keyFile, log: log}
	st, err := p.stamps()
	if err != nil {
		return nil, err
	}
	cert, err := load(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	p.cert, p.stamp, p.lastCheck = cert, st, time.Now()
	return p, nil
}

// Files are the certificate and key files.
func (p *Pair) Files() (certFile, keyFile string) { return p.certFile, p.keyFile }

// Certificate is the pair serving now, reloaded first if the files
// changed.
func (p *Pair) Certificate() *tls.Certificate {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.lastCheck) < CheckInterval {
		return p.cert
	}
	p.lastCheck = time.Now()
	st, err := p.stamps()
	if err == nil && st == p.stamp {
		return p.cert
	}
	var cert *tls.Certificate
	if err == nil {
		cert, err = load(p.certFile, p.keyFile)
	}
	if err != nil {
		// Logged once per distinct failure; tried again at the next check.
		if msg := err.Error(); msg != p.lastErr {
			p.lastErr = msg
			p.log.Warn("TLS certificate changed but does not load; still serving the previous one", "cert", p.certFile, "key", p.keyFile, "err", err)
		}
		return p.cert
	}
	p.cert, p.stamp, p.lastErr = cert, st, ""
	p.log.Info("TLS certificate reloaded", "cert", p.certFile, "subject", cert.Leaf.Subject.String(), "names", cert.Leaf.DNSNames, "not_after", cert.Leaf.NotAfter)
	return p.cert
}

// GetCertificate is for tls.Config.
func (p *Pair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return p.Certificate(), nil
}

// ServerConfig is a TLS configuration for an HTTP server that serves this
// pair over HTTP/2 and HTTP/1.1.
func (p *Pair) ServerConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: p.GetCertificate, NextProtos: []string{"h2", "http/1.1"}}
}

func (p *Pair) stamps() ([2]stamp, error) {
	var out [2]stamp
	for i, f := range []string{p.certFile, p.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return out, err
		}
		out[i] = stamp{size: fi.Size(), mtime: fi.ModTime()}
		if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
			out[i].dev, out[i].ino = uint64(sys.Dev), sys.Ino
		}
	}
	return out, nil
}

func load(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("certificate %s with key %s: %w", certFile, keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("certificate %s: %w", certFile, err)
		}
	}
	return &cert, nil
}

// Check loads a pair once and describes it, for check-config: a pair
// already expired is an error.
func Check(certFile, keyFile string) (string, error) {
	cert, err := load(certFile, keyFile)
	if err != nil {
		return "", err
	}
	leaf := cert.Leaf
	if time.Now().After(leaf.NotAfter) {
		return "", errors.New("certificate " + certFile + " expired on " + leaf.NotAfter.Format(time.RFC3339))
	}
	return fmt.Sprintf("%s: names %v, valid until %s", certFile, leaf.DNSNames, leaf.NotAfter.Format(time.RFC3339)), nil
}
