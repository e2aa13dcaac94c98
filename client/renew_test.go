package client_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/client"
	"github.com/latch-dev/latch/keys"
	"github.com/nats-io/jwt/v2"
)

// credsClaims reads the claims of the JWT in a device's creds file.
func credsClaims(tb testing.TB, d *client.Device) *jwt.UserClaims {
	tb.Helper()
	c, err := keys.ReadCreds(d.CredsPath)
	if err != nil {
		tb.Fatal(err)
	}
	uc, err := jwt.DecodeUserClaims(c.JWT)
	if err != nil {
		tb.Fatal(err)
	}
	return uc
}

// waitNextSecond waits until the clock has passed the second of unix time
// t, so a JWT issued now differs from one issued at t.
func waitNextSecond(t int64) {
	for time.Now().Unix() <= t {
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRenew(t *testing.T) {
	t.Parallel()
	s := mustServer(t, "alice")
	ctx := context.Background()
	dev := s.mustHome(t, "alice", "laptop", 10*time.Minute)
	other := mustRecords(t, s.mustHome(t, "alice", "phone", 0))
	r := mustRecords(t, dev)
	ch := mustWatch(t, ctx, r, "")
	before := credsClaims(t, dev)
	waitNextSecond(before.IssuedAt)

	if err := dev.Renew(ctx); err != nil {
		t.Fatalf("renew: %v", err)
	}
	after := credsClaims(t, dev)
	if after.Subject != before.Subject || after.Expires <= before.Expires {
		t.Errorf("renewed JWT is for %s expiring %d, want %s expiring after %d", after.Subject, after.Expires, before.Subject, before.Expires)
	}
	if dev.Expires == nil || dev.Expires.Unix() != after.Expires {
		t.Errorf("the device says it expires %v, the JWT %d", dev.Expires, after.Expires)
	}
	if fi, err := os.Stat(dev.CredsPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("creds after renewal: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	reopened, err := client.Open(dev.Home)
	if err != nil || reopened.Expires == nil || reopened.Expires.Unix() != after.Expires {
		t.Errorf("client.json after renewal: %+v (%v), want the new expiry", reopened, err)
	}

	// The connection opened before goes on working, and a new one connects
	// with the renewed creds.
	if _, err := other.Put(ctx, "after-renew", []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if c := next(t, ch); c.Key != "after-renew" {
		t.Errorf("the watch saw %+v, want after-renew", c)
	}
	if _, err := r.Put(ctx, "from-laptop", []byte("x")); err != nil {
		t.Errorf("put after the renewal: %v", err)
	}
	if _, err := mustRecords(t, reopened).Get(ctx, "from-laptop"); err != nil {
		t.Errorf("a new connection with the renewed creds: %v", err)
	}
}

// TestRenewAutomatically gives a device a JWT of a few seconds: Records
// renews it when a third of its life is left and stays connected past
// the old JWT's expiry.
func TestRenewAutomatically(t *testing.T) {
	t.Parallel()
	s := mustServer(t, "alice")
	ctx := context.Background()
	dev := s.mustHome(t, "alice", "laptop", 6*time.Second)
	other := mustRecords(t, s.mustHome(t, "alice", "phone", 0))
	r := mustRecords(t, dev)
	ch := mustWatch(t, ctx, r, "")
	old := credsClaims(t, dev).Expires

	deadline := time.Now().Add(30 * time.Second)
	for r.Expires() == nil || r.Expires().Unix() <= old {
		if time.Now().After(deadline) {
			t.Fatalf("the JWT expiring at %d was not renewed within 30s (now %v): %v", old, r.Expires(), r.Err())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := credsClaims(t, dev).Expires; got != r.Expires().Unix() {
		t.Errorf("the creds file expires at %d, the connection's JWT at %d", got, r.Expires().Unix())
	}
	waitNextSecond(old + 1) // the server would have closed a connection still on the old JWT
	if _, err := other.Put(ctx, "later", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if c := next(t, ch); c.Key != "later" {
		t.Errorf("the watch saw %+v, want later", c)
	}
	if _, err := r.Put(ctx, "mine", []byte("v")); err != nil {
		t.Errorf("put past the old JWT's expiry: %v", err)
	}
	if err := r.Err(); err != nil {
		t.Errorf("the connection failed: %v", err)
	}
}

func TestRenewRevoked(t *testing.T) {
	t.Parallel()
	s := mustServer(t, "alice")
	ctx := context.Background()
	dev := s.mustHome(t, "alice", "laptop", 0)
	r := mustRecords(t, dev)
	ch := mustWatch(t, ctx, r, "")
	before, _ := os.ReadFile(dev.CredsPath)

	if _, err := s.Service.RevokeDevice(ctx, "alice", "laptop"); err != nil {
		t.Fatal(err)
	}
	err := dev.Renew(ctx)
	if !errors.Is(err, client.ErrRevoked) || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("renew a revoked device: %v, want ErrRevoked", err)
	}
	if after, _ := os.ReadFile(dev.CredsPath); string(after) != string(before) {
		t.Error("a refused renewal changed the creds file")
	}

	// The server closed the device's connection: the watch ends and the
	// records say why.
	select {
	case _, ok := <-ch:
		for ok {
			_, ok = <-ch
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the watch of a revoked device did not end within 30s")
	}
	deadline := time.Now().Add(30 * time.Second)
	for r.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !errors.Is(r.Err(), client.ErrRevoked) {
		t.Errorf("after revocation the records say %v, want ErrRevoked", r.Err())
	}
	if _, err := dev.Records(ctx); !errors.Is(err, client.ErrRevoked) {
		t.Errorf("connect a revoked device: %v, want ErrRevoked", err)
	}
}

func TestRenewWithoutURL(t *testing.T) {
	t.Parallel()
	s := mustServer(t, "alice")
	dev := s.mustHome(t, "alice", "laptop", 0)
	dev.URL = ""
	if err := dev.Renew(context.Background()); err == nil || !strings.Contains(err.Error(), filepath.Base(client.ConfigFile)) {
		t.Errorf("renew without a server URL: %v, want an error naming client.json", err)
	}
}
