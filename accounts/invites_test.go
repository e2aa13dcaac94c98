package accounts_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/nats-io/nats.go/jetstream"
)

func TestInviteIsUsedOnce(t *testing.T) {
	s := webStack(t)
	ctx := webCtx(t)
	before := time.Now()
	token, inv, err := s.Service.CreateInvite(ctx, true)
	if err != nil {
		t.Fatalf("create invite: %v", err)
	}
	h := sha256.Sum256([]byte(token))
	if len(token) != 43 || inv.ID != hex.EncodeToString(h[:])[:8] || !inv.Admin || inv.Setup || inv.CreatedBy != "tester" ||
		inv.Expires.Before(before.Add(accounts.InviteTTL)) || inv.Expires.After(time.Now().Add(accounts.InviteTTL)) {
		t.Errorf("new invite: got token %q, %+v", token, inv)
	}
	got, err := s.Service.Invite(ctx, token)
	if err != nil || got != inv {
		t.Fatalf("invite by token: got %+v, %v; want %+v", got, err, inv)
	}
	if invs, err := s.Service.Invites(ctx); err != nil || len(invs) != 1 || invs[0] != inv {
		t.Errorf("invites: got %v, %v", invs, err)
	}

	if used, err := s.Service.ConsumeInvite(ctx, token); err != nil || used != inv {
		t.Fatalf("consume: got %+v, %v", used, err)
	}
	_, err = s.Service.ConsumeInvite(ctx, token)
	wantErrIs(t, "consume twice", err, accounts.ErrNotFound)
	want := "this invite link is not valid: it was used, it expired, or it was never made; ask an admin for a new one"
	if err.Error() != want {
		t.Errorf("used invite: got %q, want %q", err, want)
	}
	_, err = s.Service.Invite(ctx, token)
	wantErrIs(t, "look at a used invite", err, accounts.ErrNotFound)
	if invs, _ := s.Service.Invites(ctx); len(invs) != 0 {
		t.Errorf("invites after use: got %v, want none", invs)
	}
	for _, bad := range []string{"", "nope", token + "x"} {
		_, err := s.Service.Invite(ctx, bad)
		wantErrIs(t, "invite "+bad, err, accounts.ErrNotFound)
	}

	// The audit trail names the invite, never its token.
	es, err := s.Service.Audit(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	var acts []string
	for _, e := range es {
		acts = append(acts, string(e.Action))
		b, _ := json.Marshal(e)
		if strings.Contains(string(b), token) {
			t.Errorf("audit entry %s holds the invite token", e.Action)
		}
	}
	if strings.Join(acts, " ") != "invite.create invite.consume" {
		t.Errorf("audit trail: got %v", acts)
	}
}

func TestConsumeInviteRace(t *testing.T) {
	s := webStack(t)
	ctx := webCtx(t)
	token, _, err := s.Service.CreateInvite(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = s.Service.ConsumeInvite(ctx, token)
		})
	}
	close(start)
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
		} else {
			wantErrIs(t, "a losing consumer", err, accounts.ErrNotFound)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d racing consumers used the invite, want exactly 1", won, n)
	}
}

func TestRevokeAndExpireInvites(t *testing.T) {
	s := webStack(t)
	ctx := webCtx(t)
	t1, i1, err := s.Service.CreateInvite(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	t2, i2, err := s.Service.CreateInvite(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	t3, _, err := s.Service.CreateInvite(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if invs, _ := s.Service.Invites(ctx); len(invs) != 3 || invs[0].ID != i1.ID || invs[1].ID != i2.ID {
		t.Fatalf("invites: got %v, want three, oldest first", invs)
	}
	if err := s.Service.RevokeInvite(ctx, i1.ID); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	_, err = s.Service.Invite(ctx, t1)
	wantErrIs(t, "a revoked invite", err, accounts.ErrNotFound)
	_, err = s.Service.ConsumeInvite(ctx, t1)
	wantErrIs(t, "use a revoked invite", err, accounts.ErrNotFound)
	err = s.Service.RevokeInvite(ctx, i1.ID)
	wantErrIs(t, "revoke twice", err, accounts.ErrNotFound)
	err = s.Service.RevokeInvite(ctx, "00000000")
	wantErrIs(t, "revoke an unknown invite", err, accounts.ErrNotFound)

	// Age the second invite past its expiry, as time would.
	js, err := jetstream.New(s.App)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, accounts.InvitesBucket)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte(t2))
	key := hex.EncodeToString(h[:])
	i2.Expires = time.Now().Add(-time.Second)
	b, _ := json.Marshal(i2)
	if _, err := kv.Put(ctx, key, b); err != nil {
		t.Fatal(err)
	}
	_, err = s.Service.Invite(ctx, t2)
	wantErrIs(t, "an expired invite", err, accounts.ErrNotFound)
	_, err = s.Service.ConsumeInvite(ctx, t2)
	wantErrIs(t, "use an expired invite", err, accounts.ErrNotFound)
	if invs, _ := s.Service.Invites(ctx); len(invs) != 1 {
		t.Errorf("invites: got %v, want only the third", invs)
	}
	if _, err := s.Service.ConsumeInvite(ctx, t3); err != nil {
		t.Errorf("use the third invite: %v", err)
	}
}

func TestSetupInvite(t *testing.T) {
	s := webStack(t)
	ctx := webCtx(t)
	first, ok, err := s.Service.SetupInvite(ctx)
	if err != nil || !ok || first == "" {
		t.Fatalf("setup invite on a new server: got %q, %v, %v", first, ok, err)
	}
	inv, err := s.Service.Invite(ctx, first)
	if err != nil || !inv.Setup || !inv.Admin {
		t.Fatalf("the setup invite: got %+v, %v; want an admin setup invite", inv, err)
	}
	// Each start prints a new link; only the last one works.
	second, ok, err := s.Service.SetupInvite(ctx)
	if err != nil || !ok || second == first {
		t.Fatalf("second setup invite: got %q, %v, %v", second, ok, err)
	}
	_, err = s.Service.Invite(ctx, first)
	wantErrIs(t, "the earlier setup invite", err, accounts.ErrNotFound)
	if _, err := s.Service.Invite(ctx, second); err != nil {
		t.Fatalf("the last setup invite: %v", err)
	}
	// Another node of a cluster prints its own link, and leaves this
	// node's working; each node's next start replaces only its own.
	other := s.OtherService(t)
	otherLink, ok, err := other.SetupInvite(ctx)
	if err != nil || !ok || otherLink == "" {
		t.Fatalf("another node's setup invite: got %q, %v, %v", otherLink, ok, err)
	}
	for _, tok := range []string{second, otherLink} {
		if _, err := s.Service.Invite(ctx, tok); err != nil {
			t.Fatalf("each node's last setup invite works: %v", err)
		}
	}

	// A member and an admin made on the command line, neither with a
	// passkey: nobody can log in yet, so each start still makes a link.
	s.MustCreatePerson(t, "alice")
	if _, err := s.Service.CreatePerson(ctx, accounts.NewPerson{Name: "root", Role: accounts.RoleAdmin}); err != nil {
		t.Fatal(err)
	}
	third, ok, err := s.Service.SetupInvite(ctx)
	if err != nil || !ok || third == "" {
		t.Fatalf("setup invite while no admin has a passkey: got %q, %v, %v; want a new one", third, ok, err)
	}
	_, err = s.Service.Invite(ctx, second)
	wantErrIs(t, "the earlier setup invite", err, accounts.ErrNotFound)
	if _, err := other.Invite(ctx, otherLink); err != nil {
		t.Fatalf("the other node's setup invite after this node made a new one: %v", err)
	}

	// A member's passkey changes nothing; an admin's ends the setup.
	cred := json.RawMessage(`{"publicKey":"pQECAyYgASFYIA","authenticator":{"signCount":0}}`)
	if _, err := s.Service.AddPasskey(ctx, accounts.Passkey{ID: credentialID(7), Person: "alice", Credential: cred}); err != nil {
		t.Fatal(err)
	}
	if need, err := s.Service.NeedsSetup(ctx); err != nil || !need {
		t.Errorf("needs setup with a member's passkey: %v, %v; want true", need, err)
	}
	if _, err := s.Service.AddPasskey(ctx, accounts.Passkey{ID: credentialID(8), Person: "root", Credential: cred}); err != nil {
		t.Fatal(err)
	}
	if need, err := s.Service.NeedsSetup(ctx); err != nil || need {
		t.Errorf("needs setup with an admin's passkey: %v, %v; want false", need, err)
	}
	token, ok, err := s.Service.SetupInvite(ctx)
	if err != nil || ok || token != "" {
		t.Errorf("setup invite once an admin has a passkey: got %q, %v, %v; want none", token, ok, err)
	}
	_, err = s.Service.Invite(ctx, third)
	wantErrIs(t, "a setup invite once an admin has a passkey", err, accounts.ErrNotFound)
	_, err = s.Service.Invite(ctx, otherLink)
	wantErrIs(t, "the other node's setup invite once an admin has a passkey", err, accounts.ErrNotFound)

	// Used up for good: with the admin deleted again, the old link still
	// does not work; the next start makes a new one.
	if _, err := s.Service.DeletePerson(ctx, "root"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Service.Invite(ctx, third)
	wantErrIs(t, "the setup invite after the admin was deleted", err, accounts.ErrNotFound)
	_, err = s.Service.ConsumeInvite(ctx, third)
	wantErrIs(t, "consuming the setup invite after the admin was deleted", err, accounts.ErrNotFound)
	if invs, err := s.Service.Invites(ctx); err != nil || len(invs) != 0 {
		t.Errorf("invites after the setup: got %+v, %v; want none", invs, err)
	}
	if fourth, ok, err := s.Service.SetupInvite(ctx); err != nil || !ok || fourth == "" {
		t.Errorf("setup invite with no admin left: got %q, %v, %v; want a new one", fourth, ok, err)
	}
}

// An invite for an existing person: refused for someone who has a
// passkey unless it is a recovery, and for nobody; not valid once the
// person is disabled.
func TestInviteFor(t *testing.T) {
	s := webStack(t)
	ctx := webCtx(t)
	s.MustCreatePerson(t, "alice")
	tok, inv, err := s.Service.CreateInviteFor(ctx, "alice", false)
	if err != nil || inv.For != "alice" || inv.Recover || inv.Admin {
		t.Fatalf("invite for alice: %+v, %v", inv, err)
	}
	if got, err := s.Service.Invite(ctx, tok); err != nil || got.For != "alice" {
		t.Errorf("the invite for alice: %+v, %v", got, err)
	}
	cred := json.RawMessage(`{"publicKey":"pQECAyYgASFYIA","authenticator":{"signCount":0}}`)
	if _, err := s.Service.AddPasskey(ctx, accounts.Passkey{ID: credentialID(9), Person: "alice", Credential: cred}); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Service.CreateInviteFor(ctx, "alice", false)
	if !errors.Is(err, accounts.ErrExists) || !strings.Contains(err.Error(), "--recover") {
		t.Errorf("invite for alice, who has a passkey: %v; want refused, naming --recover", err)
	}
	rtok, rinv, err := s.Service.CreateInviteFor(ctx, "alice", true)
	if err != nil || !rinv.Recover {
		t.Fatalf("recovery invite for alice: %+v, %v", rinv, err)
	}
	if _, _, err := s.Service.CreateInviteFor(ctx, "nobody", false); !errors.Is(err, accounts.ErrNotFound) {
		t.Errorf("invite for nobody: %v, want not found", err)
	}
	if _, err := s.Service.DisablePerson(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Service.Invite(ctx, rtok)
	wantErrIs(t, "an invite for a disabled person", err, accounts.ErrNotFound)
	_, evs := auditActions(t, s, "", 50)
	found := false
	for _, e := range evs {
		found = found || e.Action == accounts.ActionInviteCreate && strings.Contains(e.Detail, "passkey for alice, who had one")
	}
	if !found {
		t.Errorf("no audit entry names the recovery invite for alice: %+v", evs)
	}
}

// The admin service makes invites for the CLI, with links under the
// service's public URL.
func TestAdminCreateInvite(t *testing.T) {
	s := webStack(t)
	ctx := webCtx(t)
	signer, err := s.Operator.Signer()
	if err != nil {
		t.Fatal(err)
	}
	// A second service over the same buckets, as a node of its own with a
	// public URL; it alone serves the admin API here.
	svc, err := accounts.Open(ctx, accounts.Config{
		Signer: signer, Directory: s.Claims, App: s.App, PublicURL: "https://latch.example.com/",
		AdminAccount: s.Operator.AdminAccount.PublicKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := svc.ServeAdmin(s.App, "0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Stop()
	admin := accounts.NewAdminClient(s.MustAdminConn(t))

	r, err := accounts.EndpointInviteCreate.Call(ctx, admin, accounts.InviteCreateRequest{Admin: true})
	if err != nil {
		t.Fatalf("create invite through the admin service: %v", err)
	}
	if r.Link != "https://latch.example.com/invite/"+r.Token || !r.Invite.Admin || r.Invite.CreatedBy != "admin:admin" {
		t.Errorf("invite reply: got %+v", r)
	}
	if inv, err := s.Service.Invite(ctx, r.Token); err != nil || inv.ID != r.Invite.ID {
		t.Errorf("the invite, seen by the other service: got %+v, %v", inv, err)
	}
	if link := s.Service.InviteLink(r.Token); link != "" {
		t.Errorf("link of a service without a public URL: got %q, want none", link)
	}
}
