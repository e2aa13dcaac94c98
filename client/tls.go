package client

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
)

// A device trusts the certificates the system trusts, or, when its
// enrollment named one (EnrollOptions.CAFile, `latch client enroll --ca`),
// the CA in that file alone: a server with a certificate of its own CA.

// caPool reads the CA certificates of a PEM file.
func caPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("the server's CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("the server's CA %s holds no PEM certificate", file)
	}
	return pool, nil
}

// httpClientFor is hc when given, else a client with a 30 s timeout that
// trusts caFile when it is set.
func httpClientFor(hc *http.Client, caFile string) (*http.Client, error) {
	if hc != nil {
		return hc, nil
	}
	hc = &http.Client{Timeout: 30 * time.Second}
	if caFile == "" {
		return hc, nil
	}
	pool, err := caPool(caFile)
	if err != nil {
		return nil, err
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	hc.Transport = t
	return hc, nil
}

// natsTLS are the device's TLS connection options: the CA it trusts, its
// client certificate, and the handshake first, those that are set.
func (d *Device) natsTLS() []nats.Option {
	var opts []nats.Option
	if d.CAFile != "" {
		opts = append(opts, nats.RootCAs(d.CAFile))
	}
	if d.CertFile != "" {
		opts = append(opts, nats.ClientCert(d.CertFile, d.KeyFile))
	}
	if d.TLSFirst {
		opts = append(opts, nats.TLSHandshakeFirst())
	}
	return opts
}

// absCA is caFile as an absolute path, checked to hold a CA.
func absCA(caFile string) (string, error) {
	if caFile == "" {
		return "", nil
	}
	abs, err := filepath.Abs(caFile)
	if err != nil {
		return "", err
	}
	if _, err := caPool(abs); err != nil {
		return "", err
	}
	return abs, nil
}

// absPair is a client certificate and its key as absolute paths, checked
// to go together.
func absPair(cert, key string) (string, string, error) {
	if cert == "" && key == "" {
		return "", "", nil
	}
	if cert == "" || key == "" {
		return "", "", fmt.Errorf("a client certificate needs its key, and a key its certificate")
	}
	if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
		return "", "", fmt.Errorf("client certificate: %w", err)
	}
	ac, err := filepath.Abs(cert)
	if err != nil {
		return "", "", err
	}
	ak, err := filepath.Abs(key)
	return ac, ak, err
}
