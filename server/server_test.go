package server_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/operator"
	"github.com/latch-dev/latch/server"
	"github.com/nats-io/nats.go"
)

func config(t testing.TB) server.Config {
	return server.Config{
		Data: filepath.Join(t.TempDir(), "data"), NATS: "127.0.0.1:0", HTTP: "127.0.0.1:0", Monitor: "127.0.0.1:0",
		Name: "test", Signup: "invite", Limits: accounts.DefaultLimits(), DeviceTTL: time.Hour,
		MaxStore: 1 << 40, MaxMemory: 1 << 30, LameDuck: time.Second, Version: "0.0.0",
		Log: testLog(),
	}
}

// A server opened on port 0 says where it listens, serves there, and on
// Close stops everything it started.
func TestOpenAddrsClose(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg := config(t)
	var link string
	cfg.SetupLink = func(l string, ok bool) { link = l }
	s, err := server.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The web port answers from the first moment.
	a := s.Addrs()
	if !strings.HasPrefix(a.HTTP, "http://127.0.0.1:") || strings.HasSuffix(a.HTTP, ":0") {
		t.Fatalf("HTTP address %q, want the port picked", a.HTTP)
	}
	select {
	case <-s.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("not ready in 30s")
	}
	a = s.Addrs()
	if !strings.HasPrefix(a.NATS, "nats://127.0.0.1:") || a.Web != "http://localhost:"+a.HTTP[strings.LastIndexByte(a.HTTP, ':')+1:] {
		t.Errorf("addresses once ready: %+v", a)
	}
	if !strings.HasPrefix(link, a.Web+"/setup/") {
		t.Errorf("setup link %q, want one under %s", link, a.Web)
	}
	resp, err := http.Get(a.HTTP + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %d %s", resp.StatusCode, body)
	}
	nc, err := nats.Connect(a.NATS, nats.UserCredentials(filepath.Join(cfg.Data, operator.AdminCredsFile)))
	if err != nil {
		t.Fatalf("admin creds at %s: %v", a.NATS, err)
	}
	nc.Close()

	if err := s.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	select {
	case <-s.Done():
	default:
		t.Error("Done is open after Close")
	}
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(a.HTTP, "http://"), time.Second); err == nil {
		t.Error("the web port still takes connections after Close")
	}
	// Every goroutine it started was joined (nats-server's own wind down
	// a moment later).
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+5 {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Close, %d before", runtime.NumGoroutine(), before)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A configuration latch cannot run with is refused before anything is
// written.
func TestOpenRefuses(t *testing.T) {
	for _, c := range []struct {
		edit func(*server.Config)
		want string
	}{
		{func(c *server.Config) { c.TLSCert = "x.pem" }, "--tls-cert and --tls-key go together"},
		{func(c *server.Config) { c.PublicURL = "ftp://x" }, "--public-url"},
		{func(c *server.Config) { c.HTTP = "127.0.0.1:99999" }, "--http"},
	} {
		cfg := config(t)
		c.edit(&cfg)
		_, err := server.Open(context.Background(), cfg)
		var ce *server.ConfigError
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("open: %v, want %q", err, c.want)
		}
		if _, err := os.Stat(cfg.Data); !os.IsNotExist(err) {
			t.Errorf("a refused open left a data folder: %v", err)
		}
		if strings.Contains(c.want, "--tls") || strings.Contains(c.want, "public-url") {
			if !errors.As(err, &ce) {
				t.Errorf("open: %T, want a *server.ConfigError", err)
			}
		}
	}
}
