// Package tlsfiles serves TLS from a certificate and key in files, and a
// CA for client certificates, and takes new files without a restart:
// Reload reads them again (latch serve calls it on SIGHUP), and Watch
// does when they change on disk, as a certificate renewal leaves them.
package tlsfiles

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Files is a certificate, its key and optionally a CA, as read last.
type Files struct {
	cert, key, ca string

	current atomic.Pointer[tls.Certificate]
	pool    atomic.Pointer[x509.CertPool]
	// NotAfter is when the certificate in use expires.
	notAfter atomic.Pointer[time.Time]

	mu    sync.Mutex
	stamp string // the files' sizes and times when read
}

// Load reads the certificate and key (PEM) and, when ca is not empty, the
// CA certificates (PEM) that client certificates must chain to.
func Load(cert, key, ca string) (*Files, error) {
	if cert == "" || key == "" {
		return nil, errors.New("give both a certificate and its key")
	}
	f := &Files{cert: cert, key: key, ca: ca}
	if err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Reload reads the files again. When they cannot be read, or do not make
// a certificate, the one in use stays and the error says why.
func (f *Files) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	stamp := f.stampNow()
	pair, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		return fmt.Errorf("TLS certificate %s with key %s: %w", f.cert, f.key, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return fmt.Errorf("TLS certificate %s: %w", f.cert, err)
		}
	}
	if time.Now().After(leaf.NotAfter) {
		return fmt.Errorf("TLS certificate %s expired at %s; renew it", f.cert, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	var pool *x509.CertPool
	if f.ca != "" {
		b, err := os.ReadFile(f.ca)
		if err != nil {
			return fmt.Errorf("TLS client CA: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return fmt.Errorf("TLS client CA %s holds no PEM certificate", f.ca)
		}
	}
	f.current.Store(&pair)
	f.pool.Store(pool)
	na := leaf.NotAfter
	f.notAfter.Store(&na)
	f.stamp = stamp
	return nil
}

// NotAfter is when the certificate in use expires.
func (f *Files) NotAfter() time.Time { return *f.notAfter.Load() }

// VerifiesClients reports whether clients must present a certificate
// that chains to the CA.
func (f *Files) VerifiesClients() bool { return f.ca != "" }

func (f *Files) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.current.Load(), nil
}

// HTTPS is the configuration of the web server: the certificate in use,
// and no client certificates (browsers have none).
func (f *Files) HTTPS() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: f.getCertificate, NextProtos: []string{"h2", "http/1.1"}}
}

// NATS is the configuration of NATS client connections and the
// monitoring port: the certificate in use and, with a CA, a client
// certificate that chains to it, required.
func (f *Files) NATS() *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: f.getCertificate}
	if f.ca != "" {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = f.pool.Load()
		// Each handshake takes the CA in use, so a reload reaches it.
		c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cc := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: f.getCertificate,
				ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: f.pool.Load()}
			return cc, nil
		}
	}
	return c
}

// Watch reloads the files whenever they change on disk, looking every
// interval, until ctx ends. What it did goes to log.
func (f *Files) Watch(ctx context.Context, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f.mu.Lock()
		changed := f.stampNow() != f.stamp
		f.mu.Unlock()
		if !changed {
			continue
		}
		if err := f.Reload(); err != nil {
			log.Warn("TLS files changed but cannot be used; the certificate in use stays", "err", err)
			continue
		}
		log.Info("TLS certificate reloaded", "expires", f.NotAfter().UTC().Format(time.RFC3339))
	}
}

// stampNow is the files' sizes and modification times.
func (f *Files) stampNow() string {
	s := ""
	for _, p := range []string{f.cert, f.key, f.ca} {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			s += fmt.Sprintf("%s:%d:%d;", p, fi.Size(), fi.ModTime().UnixNano())
		} else {
			s += p + ":missing;"
		}
	}
	return s
}
