package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/client"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/latch-dev/latch/views"
	"github.com/latch-dev/latch/web"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// server is a latch stack with its web server, for a device to enroll with.
type server struct {
	*latchtest.Stack
	URL string
}

// mustServer starts a server with a person of each of the names.
func mustServer(tb testing.TB, persons ...string) *server {
	tb.Helper()
	st := latchtest.MustStart(tb, latchtest.Options{Dir: tb.TempDir()})
	w, err := web.New(web.Config{PublicURL: "http://localhost", Servers: func() []string { return []string{st.Server.ClientURL()} }, Accounts: st.Service})
	if err != nil {
		tb.Fatal(err)
	}
	hs := httptest.NewServer(w)
	tb.Cleanup(hs.Close)
	for _, name := range persons {
		st.MustCreatePerson(tb, name)
	}
	return &server{Stack: st, URL: hs.URL}
}

// waitResult is what Wait returned, from a goroutine.
type waitResult struct {
	d   *client.Device
	err error
}

func wait(ctx context.Context, p *client.Pending) <-chan waitResult {
	ch := make(chan waitResult, 1)
	go func() {
		d, err := p.Wait(ctx)
		ch <- waitResult{d, err}
	}()
	return ch
}

func TestEnrollApproved(t *testing.T) {
	t.Parallel()
	s := mustServer(t)
	alice := s.MustCreatePerson(t, "alice")
	ctx := context.Background()
	home := filepath.Join(t.TempDir(), "home")

	p, err := client.StartEnroll(ctx, client.EnrollOptions{URL: s.URL + "/", Name: "laptop", Home: home})
	if err != nil {
		t.Fatal(err)
	}
	if !nkeys.IsValidPublicUserKey(p.PublicKey) {
		t.Errorf("public key %q, want a user key", p.PublicKey)
	}
	if p.Fingerprint != views.Fingerprint(p.PublicKey) {
		t.Errorf("fingerprint %q, but the web page shows %q", p.Fingerprint, views.Fingerprint(p.PublicKey))
	}
	if !strings.HasSuffix(p.VerificationURIComplete, "/enroll?code="+p.UserCode) || time.Until(p.Expires) < 9*time.Minute {
		t.Errorf("pending %+v: want the link with the code, and 10 minutes", p)
	}
	// Nothing is on disk but the folder until the enrollment is approved.
	if ents, _ := os.ReadDir(home); len(ents) != 0 {
		t.Errorf("home holds %v before approval, want nothing", ents)
	}
	e, err := s.Service.PendingEnrollment(ctx, p.UserCode)
	if err != nil || e.PublicKey != p.PublicKey || e.Platform == "" || !strings.HasPrefix(e.UserAgent, "latch-client") {
		t.Fatalf("pending enrollment %+v (%v): want this device's key, platform and user agent", e, err)
	}

	done := wait(ctx, p)
	if _, err := s.Service.ApproveEnrollment(ctx, p.UserCode, "alice"); err != nil {
		t.Fatal(err)
	}
	var r waitResult
	select {
	case r = <-done:
	case <-time.After(time.Minute):
		t.Fatal("Wait did not return within a minute of the approval")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	d := r.d
	if d.Account != alice.Account || d.Name != "laptop" || d.PublicKey != p.PublicKey || d.URL != s.URL ||
		len(d.Servers) != 1 || d.Servers[0] != s.Server.ClientURL() || d.Expires == nil {
		t.Errorf("device %+v: want laptop in alice's account, the server's URLs, an expiry", d)
	}
	for _, name := range []string{client.CredsFile, client.ConfigFile} {
		fi, err := os.Stat(filepath.Join(home, name))
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", name, perm)
		}
	}
	if fi, _ := os.Stat(home); fi.Mode().Perm() != 0o700 {
		t.Errorf("home has mode %04o, want 0700", fi.Mode().Perm())
	}
	var cfg map[string]any
	b, _ := os.ReadFile(filepath.Join(home, client.ConfigFile))
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"url", "servers", "account", "name", "public_key", "expires"} {
		if _, ok := cfg[k]; !ok {
			t.Errorf("client.json lacks %q: %s", k, b)
		}
	}

	// Open reads it back, and the creds connect and sync records.
	opened, err := client.Open(home)
	if err != nil {
		t.Fatal(err)
	}
	if opened.PublicKey != d.PublicKey || opened.CredsPath != filepath.Join(home, client.CredsFile) {
		t.Errorf("Open: %+v, want %+v", opened, d)
	}
	nc, err := opened.Connect()
	if err != nil {
		t.Fatalf("connect with the written creds: %v", err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(ctx, "records")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "from-laptop", []byte("hi")); err != nil {
		t.Fatalf("put a record: %v", err)
	}
	devs, err := s.Service.Devices(ctx, "alice")
	if err != nil || len(devs) != 1 || devs[0].PublicKey != d.PublicKey {
		t.Errorf("alice's devices %+v (%v), want the laptop", devs, err)
	}

	// A second enrollment into the same home is refused before anything
	// is asked of the server, unless forced.
	_, err = client.StartEnroll(ctx, client.EnrollOptions{URL: s.URL, Name: "laptop2", Home: home})
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("enroll again into the same home: %v, want a refusal naming --force", err)
	}
	p2, err := client.StartEnroll(ctx, client.EnrollOptions{URL: s.URL, Name: "laptop2", Home: home, Force: true})
	if err != nil {
		t.Fatalf("enroll again with Force: %v", err)
	}
	done = wait(ctx, p2)
	if _, err := s.Service.ApproveEnrollment(ctx, p2.UserCode, "alice"); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.err != nil {
		t.Fatalf("forced enrollment: %v", r.err)
	}
	if opened, err := client.Open(home); err != nil || opened.PublicKey != p2.PublicKey || opened.Name != "laptop2" {
		t.Errorf("after a forced enrollment Open gives %+v (%v), want laptop2", opened, err)
	}
}

func TestEnrollDenied(t *testing.T) {
	t.Parallel()
	s := mustServer(t, "alice")
	ctx := context.Background()
	home := t.TempDir()
	p, err := client.StartEnroll(ctx, client.EnrollOptions{URL: s.URL, Name: "laptop", Home: home})
	if err != nil {
		t.Fatal(err)
	}
	done := wait(ctx, p)
	if err := s.Service.DenyEnrollment(ctx, p.UserCode, "alice"); err != nil {
		t.Fatal(err)
	}
	if r := <-done; !errors.Is(r.err, client.ErrDenied) {
		t.Errorf("Wait after a deny: %v, want ErrDenied", r.err)
	}
	if ents, _ := os.ReadDir(home); len(ents) != 0 {
		t.Errorf("a denied enrollment left %v in home, want nothing", ents)
	}
	if _, err := client.Open(home); !errors.Is(err, client.ErrNotEnrolled) {
		t.Errorf("Open a home without an enrollment: %v, want ErrNotEnrolled", err)
	}
}

func TestEnrollCanceled(t *testing.T) {
	t.Parallel()
	s := mustServer(t)
	home := t.TempDir()
	p, err := client.StartEnroll(context.Background(), client.EnrollOptions{URL: s.URL, Name: "laptop", Home: home})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := p.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait with a context that ends: %v, want its error", err)
	}
	if _, err := p.Wait(context.Background()); err == nil {
		t.Errorf("Wait a second time: no error; the seed should be gone")
	}
	if ents, _ := os.ReadDir(home); len(ents) != 0 {
		t.Errorf("an interrupted enrollment left %v in home, want nothing", ents)
	}
}

func TestStartEnrollRefuses(t *testing.T) {
	t.Parallel()
	s := mustServer(t)
	ctx := context.Background()
	tests := []struct {
		name string
		o    client.EnrollOptions
		want string
	}{
		{"no URL", client.EnrollOptions{Name: "x"}, "--url"},
		{"not a web address", client.EnrollOptions{URL: "nats://127.0.0.1:4222", Name: "x"}, "not a web address"},
		{"not a latch server", client.EnrollOptions{URL: s.URL + "/nothing-here", Name: "x"}, "latch server"},
		{"bad name", client.EnrollOptions{URL: s.URL, Name: " spaced "}, "space"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Home = t.TempDir()
			_, err := client.StartEnroll(ctx, tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

func TestDefaultHome(t *testing.T) {
	got, err := client.DefaultHome(func(k string) string {
		if k == client.HomeEnv {
			return "/somewhere"
		}
		return ""
	})
	if err != nil || got != "/somewhere" {
		t.Errorf("with %s set: %q, %v", client.HomeEnv, got, err)
	}
}

// Enroll does StartEnroll and Wait in one call, in the default home.
func TestEnroll(t *testing.T) {
	s := mustServer(t, "bob")
	home := filepath.Join(t.TempDir(), "home")
	t.Setenv(client.HomeEnv, home)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	shown := make(chan string, 1)
	go func() {
		code := <-shown
		if _, err := s.Service.ApproveEnrollment(ctx, code, "bob"); err != nil {
			t.Errorf("approve: %v", err)
		}
	}()
	d, err := client.Enroll(ctx, s.URL, "phone", func(p *client.Pending) { shown <- p.UserCode })
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "phone" || d.Home != home {
		t.Errorf("device %+v: want phone in %s", d, home)
	}
	if _, err := client.Open(home); err != nil {
		t.Errorf("open the enrolled home: %v", err)
	}
}
