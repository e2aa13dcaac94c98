package latchtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Certs are a CA made for a test and certificates it signed, as PEM files.
type Certs struct {
	CA        string // the CA's certificate
	Cert, Key string // a server certificate for localhost and 127.0.0.1
	Client    string // a client certificate
	ClientKey string
	Pool      *x509.CertPool // holds the CA
	caKey     *ecdsa.PrivateKey
	caCert    *x509.Certificate
	dir       string
	serial    int64
}

// MustCerts makes a CA and, signed by it, a server certificate valid for
// lifetime and a client certificate, in a folder of the test's.
func MustCerts(tb testing.TB, lifetime time.Duration) *Certs {
	tb.Helper()
	c := &Certs{dir: tb.TempDir()}
	var err error
	if c.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "latch test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &c.caKey.PublicKey, c.caKey)
	if err != nil {
		tb.Fatal(err)
	}
	if c.caCert, err = x509.ParseCertificate(der); err != nil {
		tb.Fatal(err)
	}
	c.CA = c.write(tb, "ca.pem", "CERTIFICATE", der)
	c.Pool = x509.NewCertPool()
	c.Pool.AddCert(c.caCert)
	c.serial = 1
	c.Cert, c.Key = c.MustServerCert(tb, "server", lifetime)
	c.Client, c.ClientKey = c.sign(tb, "client", &x509.Certificate{
		Subject: pkix.Name{CommonName: "a device"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, 24*time.Hour)
	return c
}

// MustServerCert signs another server certificate, as a renewal would,
// into files named after name.
func (c *Certs) MustServerCert(tb testing.TB, name string, lifetime time.Duration) (cert, key string) {
	tb.Helper()
	return c.sign(tb, name, &x509.Certificate{
		Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, lifetime)
}

func (c *Certs) sign(tb testing.TB, name string, tmpl *x509.Certificate, lifetime time.Duration) (cert, key string) {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	c.serial++
	tmpl.SerialNumber = big.NewInt(c.serial)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(lifetime)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.caCert, &k.PublicKey, c.caKey)
	if err != nil {
		tb.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		tb.Fatal(err)
	}
	return c.write(tb, name+".pem", "CERTIFICATE", der), c.write(tb, name+"-key.pem", "EC PRIVATE KEY", kb)
}

func (c *Certs) write(tb testing.TB, name, kind string, der []byte) string {
	tb.Helper()
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}
