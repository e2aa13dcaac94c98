package tlsfiles_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/latch-dev/latch/internal/tlsfiles"
)

func TestLoadAndReload(t *testing.T) {
	c := latchtest.MustCerts(t, 24*time.Hour)
	f, err := tlsfiles.Load(c.Cert, c.Key, c.CA)
	if err != nil {
		t.Fatal(err)
	}
	if !f.VerifiesClients() || f.NATS().ClientAuth != tls.RequireAndVerifyClientCert || f.HTTPS().ClientAuth != tls.NoClientCert {
		t.Error("with a CA, NATS must require client certificates and HTTPS must not")
	}
	first := f.NotAfter()

	// Bad files: a clear error, and the certificate in use stays.
	expired, expiredKey := c.MustServerCert(t, "expired", -30*time.Minute)
	for _, bad := range []struct {
		cert, key, ca, want string
	}{
		{c.Cert, c.Cert, "", "TLS certificate"},
		{c.Cert, "/nonexistent/key.pem", "", "no such file"},
		{expired, expiredKey, "", "expired"},
		{c.Cert, c.Key, c.Key, "holds no PEM certificate"},
		{"", c.Key, "", "give both"},
	} {
		if _, err := tlsfiles.Load(bad.cert, bad.key, bad.ca); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("load %v: %v, want an error saying %q", bad, err, bad.want)
		}
	}

	// A renewal written over the files is picked up by Watch.
	renewed, renewedKey := c.MustServerCert(t, "renewed", 48*time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.Watch(ctx, 20*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	copyFile(t, renewed, c.Cert)
	copyFile(t, renewedKey, c.Key)
	deadline := time.Now().Add(5 * time.Second)
	for !f.NotAfter().After(first.Add(time.Hour)) {
		if time.Now().After(deadline) {
			t.Fatalf("the renewed certificate was not picked up: expires %s, first %s", f.NotAfter(), first)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cert, err := f.HTTPS().GetCertificate(nil)
	if err != nil || cert.Leaf == nil && len(cert.Certificate) == 0 {
		t.Errorf("the certificate in use after the renewal: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	// A little later than the first write, so the modification time moves.
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
