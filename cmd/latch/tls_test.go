package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/latch-dev/latch/client"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/nats-io/nats.go"
)

// latch serve with --tls-cert and --tls-key: NATS, the monitoring port
// and the web speak TLS only; devices are handed tls:// URLs and keep
// trusting the CA they enrolled with; the public nats CLI works with the
// creds and the CA; a new certificate is taken on SIGHUP.
func TestServeTLS(t *testing.T) {
	t.Parallel()
	certs := latchtest.MustCerts(t, 24*time.Hour)
	s := mustServeTLS(t, certs)
	if logs := s.logs.String(); !strings.Contains(logs, "TLS on NATS, the monitoring port and HTTP") || strings.Contains(logs, "plain text") {
		t.Errorf("the start's log:\n%s", logs)
	}
	s.mustAdmin(t, "account", "add", "alice")

	// Plain text is refused everywhere.
	natsAddr := strings.TrimPrefix(s.nats, "tls://")
	if nc, err := nats.Connect("nats://"+natsAddr, nats.Timeout(2*time.Second)); err == nil {
		nc.Close()
		t.Error("a plain NATS connection was taken")
	}
	if resp, err := http.Get("http://" + strings.TrimPrefix(s.http, "https://") + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP answered /healthz")
		}
	}
	noCA := map[string]string{"LATCH_DATA": s.env["LATCH_DATA"], "LATCH_SERVER": s.nats}
	if r := latch(t, noCA, "account", "ls"); r.err == nil || !strings.Contains(r.err.Error(), "certificate") {
		t.Errorf("an admin command without the CA: %v, want it to fail on the server's certificate", r.err)
	}
	resp, err := s.web.Get(s.monitor + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("the monitoring port over https: %v", err)
	} else {
		resp.Body.Close()
	}

	// A device enrolls over https with the CA and gets tls:// URLs.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	home := filepath.Join(t.TempDir(), "home")
	d := s.mustEnroll(t, ctx, "alice", client.EnrollOptions{URL: s.http, Name: "laptop", Home: home, CAFile: certs.CA})
	if len(d.Servers) == 0 || !strings.HasPrefix(d.Servers[0], "tls://") || d.CAFile != certs.CA {
		t.Fatalf("the enrolled device: servers %v, CA %q; want tls:// and the CA", d.Servers, d.CAFile)
	}
	env := map[string]string{client.HomeEnv: home}
	mustClient(t, env, "put", "note", "over tls")
	if got := mustClient(t, env, "get", "note").stdout; got != "over tls" {
		t.Errorf("get over tls: %q", got)
	}
	if err := d.Renew(ctx); err != nil {
		t.Errorf("renew over https with the CA: %v", err)
	}

	// The public nats CLI with the creds and the CA.
	n := natsRunner{bin: natsCLI(t), home: t.TempDir(), url: s.nats}
	creds := filepath.Join(home, client.CredsFile)
	if out := n.mustRun(t, creds, "--tlsca", certs.CA, "kv", "get", "records", "note", "--raw"); out != "over tls" {
		t.Errorf("nats kv get over tls: %q", out)
	}

	// A renewed certificate, taken on SIGHUP: new handshakes show it.
	first := peerNotAfter(t, s, certs)
	renewed, renewedKey := certs.MustServerCert(t, "renewed", 72*time.Hour)
	for from, to := range map[string]string{renewed: certs.Cert, renewedKey: certs.Key} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !peerNotAfter(t, s, certs).After(first.Add(24 * time.Hour)) {
		if time.Now().After(deadline) {
			t.Fatalf("the renewed certificate was not served after SIGHUP:\n%s", s.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(s.logs.String(), "SIGHUP: TLS certificate reloaded") && !strings.Contains(s.logs.String(), "TLS certificate reloaded") {
		t.Errorf("the reload is not in the log:\n%s", s.logs)
	}
	mustClient(t, env, "get", "note")
}

// peerNotAfter is when the certificate the web port shows expires.
func peerNotAfter(t *testing.T, s *served, certs *latchtest.Certs) time.Time {
	t.Helper()
	c, err := tls.Dial("tcp", strings.TrimPrefix(s.http, "https://"), &tls.Config{RootCAs: certs.Pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].NotAfter
}

// mustEnroll enrolls a device of account as `latch client enroll` does,
// approves its code as the admin, and returns it once it has its creds.
func (s *served) mustEnroll(t testing.TB, ctx context.Context, account string, opts client.EnrollOptions) *client.Device {
	t.Helper()
	p, err := client.StartEnroll(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	s.mustAdmin(t, "device", "approve", "--account", account, p.UserCode)
	d, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// With --tls-ca, NATS clients must show a certificate of that CA, admins
// and devices alike; the web asks browsers for none.
func TestServeTLSClientCerts(t *testing.T) {
	t.Parallel()
	certs := latchtest.MustCerts(t, 24*time.Hour)
	s := mustServeTLS(t, certs, "--tls-ca", certs.CA) // the web asks for no client certificate

	if r := s.admin(t, "account", "add", "alice"); r.err == nil {
		t.Fatal("an admin command without a client certificate was answered")
	}
	s.env["LATCH_CERT"], s.env["LATCH_KEY"] = certs.Client, certs.ClientKey
	s.mustAdmin(t, "account", "add", "alice")
	if r := s.admin(t, "account", "ls", "--key", ""); r.err == nil {
		t.Error("--cert without --key was taken")
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	home := filepath.Join(t.TempDir(), "home")
	d := s.mustEnroll(t, ctx, "alice", client.EnrollOptions{URL: s.http, Name: "laptop", Home: home,
		CAFile: certs.CA, CertFile: certs.Client, KeyFile: certs.ClientKey})
	env := map[string]string{client.HomeEnv: home}
	mustClient(t, env, "put", "note", "with a client certificate")

	// Creds alone, without the certificate, are refused.
	if nc, err := nats.Connect(s.nats, nats.UserCredentials(d.CredsPath), nats.RootCAs(certs.CA), nats.Timeout(2*time.Second)); err == nil {
		nc.Close()
		t.Error("a device's creds without a client certificate were taken")
	}
	nc, err := nats.Connect(s.nats, nats.UserCredentials(d.CredsPath), nats.RootCAs(certs.CA), nats.ClientCert(certs.Client, certs.ClientKey))
	if err != nil {
		t.Fatalf("creds with the client certificate: %v", err)
	}
	nc.Close()
}

// Without TLS, an address other machines reach gets a warning; bad TLS
// flags and files stop the start before anything is written.
func TestServeTLSMisuse(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "", "--nats", "0.0.0.0:0")
	if logs := s.logs.String(); !strings.Contains(logs, "serving plain text on an address other machines reach") || !strings.Contains(logs, "--nats") {
		t.Errorf("no warning for a plain NATS port on 0.0.0.0:\n%s", logs)
	}
	s.stop()

	certs := latchtest.MustCerts(t, 24*time.Hour)
	expired, expiredKey := certs.MustServerCert(t, "expired", -time.Minute)
	data := filepath.Join(t.TempDir(), "data")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--tls-cert", certs.Cert}, 2, "--tls-cert and --tls-key go together"},
		{[]string{"--tls-ca", certs.CA}, 2, "--tls-ca needs --tls-cert"},
		{[]string{"--tls-cert", expired, "--tls-key", expiredKey}, 1, "expired"},
		{[]string{"--tls-cert", certs.Cert, "--tls-key", certs.ClientKey}, 1, "--tls-key"},
	} {
		args := append([]string{"serve", "--data", data, "--nats", "127.0.0.1:0", "--http", "127.0.0.1:0", "--monitor", "127.0.0.1:0"}, c.args...)
		r := latchWithin(t, 30*time.Second, nil, args...)
		if exitCode(r.err) != c.code || r.err == nil || !strings.Contains(r.err.Error(), c.want) {
			t.Errorf("serve %v: exit %d, %v; want %d saying %q", c.args, exitCode(r.err), r.err, c.code, c.want)
		}
		if _, err := os.Stat(data); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("serve %v left a data folder: %v", c.args, err)
		}
	}
}
