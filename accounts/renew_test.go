package accounts_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
)

// authorize enrolls a device key the test made, with a lifetime, and
// returns the device and its JWT.
func authorize(t testing.TB, s *latchtest.Stack, person, name string, k deviceKey, ttl time.Duration) (accounts.Device, string) {
	t.Helper()
	d, tok, err := s.Service.AuthorizeDevice(testCtx(t), accounts.NewDevice{Person: person, Name: name, PublicKey: k.pub, TTL: ttl})
	if err != nil {
		t.Fatalf("authorize %s: %v", name, err)
	}
	return d, tok
}

// connectAs connects over TCP as a device with a JWT and its seed.
func connectAs(s *latchtest.Stack, tok string, k deviceKey) (*nats.Conn, error) {
	return nats.Connect(s.Server.ClientURL(), nats.UserJWTAndSeed(tok, string(k.seed)), nats.NoReconnect(), nats.Timeout(waitFor))
}

// nextSecond sleeps into the next wall-clock second, so that a JWT signed
// now has a later iat than one signed before.
func nextSecond() {
	now := time.Now()
	time.Sleep(time.Unix(now.Unix()+1, 0).Add(10 * time.Millisecond).Sub(now))
}

func TestRenewDevice(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	alice := s.MustCreatePerson(t, "alice")
	k := newDeviceKey(t)
	_, oldTok := authorize(t, s, "alice", "laptop", k, 2*time.Hour)
	old, _ := jwt.DecodeUserClaims(oldTok)

	nextSecond()
	d, tok, err := s.Service.RenewDevice(ctx, alice.Account, k.pub)
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ field, got, want string }{
		{"subject", uc.Subject, k.pub},
		{"issuer account", uc.IssuerAccount, alice.Account},
		{"issuer", uc.Issuer, old.Issuer},
		{"name", uc.Name, "laptop"},
	} {
		if c.got != c.want {
			t.Errorf("renewed JWT %s: got %q, want %q", c.field, c.got, c.want)
		}
	}
	if uc.IssuedAt <= old.IssuedAt || uc.Expires <= old.Expires {
		t.Errorf("renewed JWT: iat %d, exp %d; want both later than the old JWT's %d, %d", uc.IssuedAt, uc.Expires, old.IssuedAt, old.Expires)
	}
	if got, want := time.Duration(uc.Expires-uc.IssuedAt)*time.Second, 2*time.Hour; got != want {
		t.Errorf("renewed JWT lifetime: got %v, want %v (the old JWT's)", got, want)
	}
	if d.Expires == nil || d.Expires.Unix() != uc.Expires {
		t.Errorf("device record expires: got %v, want %v", d.Expires, time.Unix(uc.Expires, 0))
	}
	if d.Renewed == nil || d.Renewed.Unix() != uc.IssuedAt {
		t.Errorf("device record renewed: got %v, want %v", d.Renewed, time.Unix(uc.IssuedAt, 0))
	}
	stored, err := s.Service.Device(ctx, "alice", k.pub)
	if err != nil || stored.Expires == nil || stored.Expires.Unix() != uc.Expires {
		t.Errorf("stored device: expires %v, %v; want %v", stored.Expires, err, time.Unix(uc.Expires, 0))
	}

	nc, err := connectAs(s, tok, k)
	if err != nil {
		t.Fatalf("connect with the renewed JWT: %v", err)
	}
	mustPut(t, mustRecords(t, nc), "note", "renewed")
	nc.Close()

	// A second renewal keeps the same lifetime.
	nextSecond()
	_, tok2, err := s.Service.RenewDevice(ctx, alice.Account, k.pub)
	if err != nil {
		t.Fatalf("renew again: %v", err)
	}
	uc2, _ := jwt.DecodeUserClaims(tok2)
	if got := time.Duration(uc2.Expires-uc2.IssuedAt) * time.Second; got != 2*time.Hour || uc2.Expires <= uc.Expires {
		t.Errorf("second renewal: lifetime %v, exp %d; want 2h0m0s and later than %d", got, uc2.Expires, uc.Expires)
	}

	es := auditOf(t, s, alice.Account)
	if got := actions(es[len(es)-2:]); got[0] != "device.renew laptop" || got[1] != "device.renew laptop" {
		t.Errorf("audit: got %q at the end, want two device.renew laptop", got)
	}
}

func TestRenewDeviceNeverExpiring(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	alice := s.MustCreatePerson(t, "alice")
	k := newDeviceKey(t)
	authorize(t, s, "alice", "server", k, -1)
	d, tok, err := s.Service.RenewDevice(testCtx(t), alice.Account, k.pub)
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	uc, _ := jwt.DecodeUserClaims(tok)
	if uc.Expires != 0 || d.Expires != nil {
		t.Errorf("renewal of a JWT that never expires: exp %d, record %v; want neither to expire", uc.Expires, d.Expires)
	}
}

func TestRenewDeviceRefuses(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	alice := s.MustCreatePerson(t, "alice")
	bob := s.MustCreatePerson(t, "bob")

	revoked := newDeviceKey(t)
	authorize(t, s, "alice", "lost", revoked, time.Hour)
	if _, err := s.Service.RevokeDevice(ctx, "alice", "lost"); err != nil {
		t.Fatal(err)
	}
	aliceKey := newDeviceKey(t)
	authorize(t, s, "alice", "laptop", aliceKey, time.Hour)
	carol := s.MustCreatePerson(t, "carol")
	carolKey := newDeviceKey(t)
	authorize(t, s, "carol", "phone", carolKey, time.Hour)
	if _, err := s.Service.DisablePerson(ctx, "carol"); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name            string
		account, device string
		kind            error
	}{
		{"revoked device", alice.Account, revoked.pub, accounts.ErrRevoked},
		{"unknown key", alice.Account, newDeviceKey(t).pub, accounts.ErrNotFound},
		{"another person's account", bob.Account, aliceKey.pub, accounts.ErrNotFound},
		{"not a user key", alice.Account, alice.Account, accounts.ErrNotFound},
		{"disabled person", carol.Account, carolKey.pub, accounts.ErrDisabled},
	} {
		_, tok, err := s.Service.RenewDevice(ctx, c.account, c.device)
		wantKind(t, c.name, err, c.kind)
		if tok != "" {
			t.Errorf("%s: got a JWT, want none", c.name)
		}
	}
}

// TestRenewRevokeRace renews and revokes a device at once, again and
// again: whichever wins, a JWT that renewal hands out never connects once
// the revocation is in, since revocation is by time and the renewal is
// signed in the account's writer.
func TestRenewRevokeRace(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	alice := s.MustCreatePerson(t, "alice")
	for i := range 4 {
		k := newDeviceKey(t)
		name := "dev" + string(rune('a'+i))
		authorize(t, s, "alice", name, k, time.Hour)
		var wg sync.WaitGroup
		var tok string
		var renewErr, revokeErr error
		wg.Go(func() { _, tok, renewErr = s.Service.RenewDevice(ctx, alice.Account, k.pub) })
		wg.Go(func() { _, revokeErr = s.Service.RevokeDevice(ctx, "alice", name) })
		wg.Wait()
		if revokeErr != nil {
			t.Fatalf("revoke %s: %v", name, revokeErr)
		}
		if renewErr != nil {
			t.Logf("%s: the revocation came first", name)
			wantKind(t, "renew "+name+" while it is revoked", renewErr, accounts.ErrRevoked)
			continue
		}
		t.Logf("%s: the renewal came first", name)
		nc, err := connectAs(s, tok, k)
		if err == nil {
			nc.Close()
			t.Errorf("%s: the JWT renewed during the revocation connects; want it refused", name)
		} else if !errors.Is(err, nats.ErrAuthorization) && !errors.Is(err, nats.ErrAuthRevoked) {
			t.Errorf("%s: connecting with the renewed JWT: got %v, want an authorization error", name, err)
		}
		if _, _, err := s.Service.RenewDevice(ctx, alice.Account, k.pub); !errors.Is(err, accounts.ErrRevoked) {
			t.Errorf("%s: renewing after the revocation: got %v, want ErrRevoked", name, err)
		}
	}
}
