package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latch-dev/latch/client"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/latch-dev/latch/resolver"
	"github.com/nats-io/nats.go"
)

// tlsProxy is what fly.io's proxy is to a service with handlers ["tls"]:
// it ends TLS from the first byte with a certificate of its own and
// passes the plain bytes to the backend, both ways.
type tlsProxy struct {
	ln      net.Listener
	backend atomic.Pointer[string]
	conns   atomic.Int64
	wg      sync.WaitGroup
}

func startTLSProxy(t testing.TB, certs *latchtest.Certs) *tlsProxy {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certs.Cert, certs.Key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	p := &tlsProxy{ln: ln}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.conns.Add(1)
			p.wg.Go(func() { p.pass(c) })
		}
	})
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *tlsProxy) pass(c net.Conn) {
	defer c.Close()
	backend := p.backend.Load()
	if backend == nil {
		return
	}
	b, err := net.Dial("tcp", *backend)
	if err != nil {
		return
	}
	defer b.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(b, c); done <- struct{}{} }()
	go func() { io.Copy(c, b); done <- struct{}{} }()
	<-done
}

// port is the proxy's port.
func (p *tlsProxy) port() string {
	_, port, _ := net.SplitHostPort(p.ln.Addr().String())
	return port
}

// latch serve --nats-behind-tls-proxy, as on fly.io: devices reach NATS
// only through a proxy that ends TLS from the first byte. A device that
// enrolls is told the proxy's tls:// URL and to do the TLS handshake
// first, and `latch client` does; the official clients do too with
// their TLS-first option (natscli --tlsfirst, nats.js tls.handshakeFirst,
// nats.go TLSHandshakeFirst), with the creds unchanged. Latch's own
// connections and admins on the node itself stay plain.
func TestServeBehindTLSProxy(t *testing.T) {
	t.Parallel()
	certs := latchtest.MustCerts(t, 24*time.Hour)
	proxy := startTLSProxy(t, certs)
	public := "localhost:" + proxy.port()
	s := launchServe(t, "", nil, nil, "--nats-behind-tls-proxy", "--client-advertise", public)
	s.waitHealthy(t, 30*time.Second)
	if !strings.HasPrefix(s.nats, "nats://") {
		t.Fatalf("the node's own NATS URL is %q, want nats:// (it takes the proxy's plain text)", s.nats)
	}
	backend := strings.TrimPrefix(s.nats, "nats://")
	proxy.backend.Store(&backend)
	if logs := s.logs.String(); strings.Contains(logs, `flag=--nats`) {
		t.Errorf("the start warned of plain NATS, which only the proxy sees:\n%s", logs)
	}
	s.mustAdmin(t, "account", "add", "alice") // plain, on the node
	// The server pings every client twice a minute, so that a proxy that
	// drops quiet connections does not drop the devices'.
	resp, err := http.Get(s.monitor + "/varz")
	if err != nil {
		t.Fatal(err)
	}
	var varz struct {
		PingInterval time.Duration `json:"ping_interval"`
	}
	err = json.NewDecoder(resp.Body).Decode(&varz)
	resp.Body.Close()
	if err != nil || varz.PingInterval != resolver.ProxyPingInterval {
		t.Errorf("/varz ping_interval %v (%v), want %v", varz.PingInterval, err, resolver.ProxyPingInterval)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	home := filepath.Join(t.TempDir(), "home")
	d := s.mustEnroll(t, ctx, "alice", client.EnrollOptions{URL: s.http, Name: "laptop", Home: home, CAFile: certs.CA})
	if len(d.Servers) != 1 || d.Servers[0] != "tls://"+public || !d.TLSFirst {
		t.Fatalf("the enrolled device: servers %v, TLS first %v; want [tls://%s] and TLS first", d.Servers, d.TLSFirst, public)
	}
	env := map[string]string{client.HomeEnv: home}
	before := proxy.conns.Load()
	mustClient(t, env, "put", "note", "through the proxy")
	if got := mustClient(t, env, "get", "note").stdout; got != "through the proxy" {
		t.Errorf("get through the proxy: %q", got)
	}
	if status := mustClient(t, env, "status").stdout; !strings.Contains(status, "TLS handshake first") {
		t.Errorf("client status does not say TLS first:\n%s", status)
	}
	if proxy.conns.Load() == before {
		t.Error("latch client did not go through the proxy")
	}
	if err := d.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	if again, err := client.Open(home); err != nil || !again.TLSFirst || again.Servers[0] != "tls://"+public {
		t.Errorf("after a renewal: %+v, %v; want the proxy's URL with TLS first", again, err)
	}
	creds := filepath.Join(home, client.CredsFile)

	// Admin commands from afar, through the proxy: a tls:// server is
	// tried with the TLS handshake first.
	remote := map[string]string{"LATCH_DATA": s.data, "LATCH_SERVER": "tls://" + public, "LATCH_CA": certs.CA}
	if out := latch(t, remote, "account", "ls"); out.err != nil || !strings.Contains(out.stdout, "alice") {
		t.Errorf("latch account ls through the proxy: %v\n%s%s", out.err, out.stdout, out.stderr)
	}

	// nats.go: TLS first through the proxy works; without it, the
	// client waits for an INFO that the proxy's TLS hides, and fails.
	nc, err := nats.Connect("tls://"+public, nats.UserCredentials(creds), nats.RootCAs(certs.CA), nats.TLSHandshakeFirst())
	if err != nil {
		t.Fatalf("nats.go with TLS first: %v", err)
	}
	if _, err := nc.Request("$JS.API.INFO", nil, 5*time.Second); err != nil {
		t.Errorf("nats.go with TLS first: %v", err)
	}
	nc.Close()
	if nc, err := nats.Connect("tls://"+public, nats.UserCredentials(creds), nats.RootCAs(certs.CA), nats.Timeout(2*time.Second)); err == nil {
		nc.Close()
		t.Error("nats.go without TLS first connected through a proxy that ends TLS from the first byte")
	}

	// natscli with --tlsfirst and the proxy's CA.
	n := natsRunner{bin: natsCLI(t), home: t.TempDir(), url: "tls://" + public}
	if out := n.mustRun(t, creds, "--tlsfirst", "--tlsca", certs.CA, "kv", "get", "records", "note", "--raw"); out != "through the proxy" {
		t.Errorf("nats kv get with --tlsfirst: %q", out)
	}

	// nats.js v3 and v2 with tls.handshakeFirst, a person each.
	node := nodeModules(t)
	for person, script := range map[string]string{"bob": "kv3.mjs", "carol": "kv2.mjs"} {
		s.mustAdmin(t, "account", "add", person)
		creds := filepath.Join(t.TempDir(), person+".creds")
		s.mustAdmin(t, "device", "issue", "--account", person, "--name", "js", "--out", creds)
		mustDriveJS(t, node, script, "tls://"+public, creds, certs.CA)
	}
}
