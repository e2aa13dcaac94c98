package accounts_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/latchtest"
)

// webStack starts a latch stack for the tests of the web GUI's domain
// API: passkeys, enrollments and invites.
func webStack(t *testing.T) *latchtest.Stack {
	t.Helper()
	return latchtest.MustStart(t, latchtest.Options{Dir: t.TempDir()})
}

// webCtx is a context that ends with the test, naming a test actor.
func webCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return accounts.WithActor(ctx, accounts.Actor{Name: "tester", From: "test"})
}

// wantErrIs fails unless err is target.
func wantErrIs(t testing.TB, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

// auditActions returns the actions of the last n audit entries about an
// account ("" for entries about none), oldest first.
func auditActions(t testing.TB, s *latchtest.Stack, account string, n int) ([]accounts.Action, []accounts.AuditEvent) {
	t.Helper()
	es, err := s.Service.Audit(context.Background(), n)
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	var acts []accounts.Action
	var out []accounts.AuditEvent
	for _, e := range es {
		if e.Account == account {
			acts = append(acts, e.Action)
			out = append(out, e)
		}
	}
	return acts, out
}

// credentialID makes a credential id as an authenticator would.
func credentialID(n int) string {
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("credential-%d-%d", n, time.Now().UnixNano())))
}

func mustAddPasskey(t testing.TB, s *latchtest.Stack, person, name string) accounts.Passkey {
	t.Helper()
	pk, err := s.Service.AddPasskey(webCtx(t), accounts.Passkey{
		ID: credentialID(len(name)), Person: person, Name: name,
		Credential: json.RawMessage(`{"publicKey":"pQECAyYgASFYIA"}`), BackupEligible: true,
	})
	if err != nil {
		t.Fatalf("add passkey %q to %s: %v", name, person, err)
	}
	return pk
}

func TestPasskeys(t *testing.T) {
	s := webStack(t)
	ctx := webCtx(t)
	alice := s.MustCreatePerson(t, "alice")
	bob := s.MustCreatePerson(t, "bob")

	if b, err := base64.RawURLEncoding.DecodeString(alice.Handle); err != nil || len(b) != 32 {
		t.Fatalf("alice's handle %q: want base64url of 32 bytes (err %v)", alice.Handle, err)
	}
	if alice.Handle == bob.Handle {
		t.Fatal("alice and bob have the same user handle")
	}

	id := credentialID(1)
	cred := json.RawMessage(`{"publicKey":"pQECAyYgASFYIA","authenticator":{"signCount":0}}`)
	before := time.Now().UTC()
	first, err := s.Service.AddPasskey(ctx, accounts.Passkey{ID: id, Person: "alice", Credential: cred, BackupEligible: true, BackupState: true})
	if err != nil {
		t.Fatalf("add passkey: %v", err)
	}
	if first.Name != accounts.DefaultPasskeyName {
		t.Errorf("name of a passkey added without one: got %q, want %q", first.Name, accounts.DefaultPasskeyName)
	}
	if first.Created.Before(before) || first.Person != "alice" {
		t.Errorf("added passkey: got %+v, want person alice created after %s", first, before)
	}

	_, err = s.Service.AddPasskey(ctx, accounts.Passkey{ID: id, Person: "bob", Credential: cred})
	wantErrIs(t, "add a credential id registered to alice to bob", err, accounts.ErrExists)
	_, err = s.Service.AddPasskey(ctx, accounts.Passkey{ID: id, Person: "alice", Credential: cred})
	wantErrIs(t, "add a credential id twice", err, accounts.ErrExists)

	got, err := s.Service.Passkey(ctx, id)
	if err != nil {
		t.Fatalf("passkey by id: %v", err)
	}
	if got.Person != "alice" || got.ID != id || string(got.Credential) != string(cred) || !got.BackupEligible || !got.BackupState {
		t.Errorf("passkey by id: got %+v", got)
	}
	_, err = s.Service.Passkey(ctx, credentialID(99))
	wantErrIs(t, "passkey with an unknown id", err, accounts.ErrNotFound)
	_, err = s.Service.Passkey(ctx, "not base64url!")
	wantErrIs(t, "passkey with a malformed id", err, accounts.ErrNotFound)

	p, err := s.Service.PersonByHandle(ctx, alice.Handle)
	if err != nil || p.Name != "alice" {
		t.Errorf("person by alice's handle: got %q, %v; want alice", p.Name, err)
	}
	_, err = s.Service.PersonByHandle(ctx, bob.Handle)
	wantErrIs(t, "person by the handle of bob, who has no passkey", err, accounts.ErrNotFound)

	second := mustAddPasskey(t, s, "alice", "YubiKey 5")
	pks, err := s.Service.Passkeys(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(pks) != 2 || pks[0].ID != first.ID || pks[1].ID != second.ID {
		t.Fatalf("alice's passkeys: got %v, want the first then the YubiKey", pks)
	}
	if pks, err := s.Service.Passkeys(ctx, "bob"); err != nil || len(pks) != 0 {
		t.Errorf("bob's passkeys: got %v, %v; want none", pks, err)
	}
	_, err = s.Service.Passkeys(ctx, "carol")
	wantErrIs(t, "passkeys of nobody", err, accounts.ErrNotFound)

	renamed, err := s.Service.RenamePasskey(ctx, "alice", id, "MacBook Touch ID")
	if err != nil || renamed.Name != "MacBook Touch ID" {
		t.Fatalf("rename: got %q, %v", renamed.Name, err)
	}
	_, err = s.Service.RenamePasskey(ctx, "bob", id, "mine now")
	wantErrIs(t, "bob renames alice's passkey", err, accounts.ErrNotFound)
	_, err = s.Service.RenamePasskey(ctx, "alice", id, "bad\nname")
	wantErrIs(t, "rename to a name with a newline", err, accounts.ErrInvalid)

	// A login stores what the web layer hands over.
	cred2 := json.RawMessage(`{"publicKey":"pQECAyYgASFYIA","authenticator":{"signCount":7}}`)
	used, err := s.Service.UsePasskey(ctx, id, cred2, 7, false, false)
	if err != nil {
		t.Fatalf("use passkey: %v", err)
	}
	if used.SignCount != 7 || used.LastUsed == nil || used.BackupState || used.CloneWarning || string(used.Credential) != string(cred2) || used.Name != "MacBook Touch ID" {
		t.Errorf("after a login: got %+v", used)
	}
	// A sign count that did not grow is refused (a copy of the key, or a
	// replayed assertion) and marks the passkey; the mark sticks and is
	// each refused use is audited.
	for _, count := range []uint32{3, 7} {
		_, err := s.Service.UsePasskey(ctx, id, cred2, count, true, false)
		wantErrIs(t, fmt.Sprintf("login with sign count %d after 7", count), err, accounts.ErrForbidden)
	}
	if pk, err := s.Service.Passkey(ctx, id); err != nil || !pk.CloneWarning || pk.SignCount != 7 {
		t.Fatalf("after refused logins: got %+v, %v; want the warning and the count kept at 7", pk, err)
	}
	if pk, err := s.Service.UsePasskey(ctx, id, cred2, 9, false, false); err != nil || !pk.CloneWarning || pk.SignCount != 9 {
		t.Fatalf("login after a clone warning: got %+v, %v; want the warning kept", pk, err)
	}
	// An authenticator that does not count (always 0) is never refused.
	zero := s.MustCreatePerson(t, "zed")
	zid := credentialID(77)
	if _, err := s.Service.AddPasskey(ctx, accounts.Passkey{ID: zid, Person: zero.Name, Name: "synced", Credential: cred2}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := s.Service.UsePasskey(ctx, zid, cred2, 0, false, true); err != nil {
			t.Errorf("login with a passkey that does not count: %v", err)
		}
	}
	_, err = s.Service.UsePasskey(ctx, credentialID(98), cred2, 1, false, false)
	wantErrIs(t, "login with an unknown passkey", err, accounts.ErrNotFound)

	acts, events := auditActions(t, s, alice.Account, 100)
	want := []accounts.Action{"account.create", "passkey.add", "passkey.add", "passkey.rename", "person.login", "passkey.clone_warning", "passkey.clone_warning", "person.login"}
	if !slices.Equal(acts, want) {
		t.Errorf("alice's audit trail: got %v, want %v", acts, want)
	}
	for _, e := range events {
		if e.Action == accounts.ActionPersonLogin && e.Detail != "passkey MacBook Touch ID" {
			t.Errorf("login audit detail: got %q, want the passkey's name", e.Detail)
		}
	}

	// Removing: never another person's, never the last.
	err = s.Service.RemovePasskey(ctx, "bob", second.ID)
	wantErrIs(t, "bob removes alice's passkey", err, accounts.ErrNotFound)
	if err := s.Service.RemovePasskey(ctx, "alice", second.ID); err != nil {
		t.Fatalf("remove the YubiKey: %v", err)
	}
	_, err = s.Service.Passkey(ctx, second.ID)
	wantErrIs(t, "a removed passkey by id", err, accounts.ErrNotFound)
	err = s.Service.RemovePasskey(ctx, "alice", id)
	wantErrIs(t, "remove the last passkey", err, accounts.ErrInvalid)
	if !strings.Contains(err.Error(), "the last passkey cannot be removed; add another first") {
		t.Errorf("last passkey refusal: got %q", err)
	}
	if _, err := s.Service.Passkey(ctx, id); err != nil {
		t.Errorf("the last passkey after the refusal: %v", err)
	}
	// The removed id may be registered anew.
	if _, err := s.Service.AddPasskey(ctx, accounts.Passkey{ID: second.ID, Person: "bob", Credential: cred}); err != nil {
		t.Errorf("register a removed credential id again: %v", err)
	}
}

func TestAddPasskeyRefuses(t *testing.T) {
	s := webStack(t)
	ctx := webCtx(t)
	s.MustCreatePerson(t, "alice")
	cred := json.RawMessage(`{}`)
	tests := []struct {
		name string
		pk   accounts.Passkey
		want error
	}{
		{"no id", accounts.Passkey{Person: "alice", Credential: cred}, accounts.ErrInvalid},
		{"padded id", accounts.Passkey{ID: "YWJj==", Person: "alice", Credential: cred}, accounts.ErrInvalid},
		{"id with a dot", accounts.Passkey{ID: "ab.cd", Person: "alice", Credential: cred}, accounts.ErrInvalid},
		{"name too long", accounts.Passkey{ID: credentialID(1), Person: "alice", Name: strings.Repeat("k", 65), Credential: cred}, accounts.ErrInvalid},
		{"name with a tab", accounts.Passkey{ID: credentialID(2), Person: "alice", Name: "a\tb", Credential: cred}, accounts.ErrInvalid},
		{"name with a leading space", accounts.Passkey{ID: credentialID(3), Person: "alice", Name: " key", Credential: cred}, accounts.ErrInvalid},
		{"no credential", accounts.Passkey{ID: credentialID(4), Person: "alice"}, accounts.ErrInvalid},
		{"credential not JSON", accounts.Passkey{ID: credentialID(5), Person: "alice", Credential: json.RawMessage("{")}, accounts.ErrInvalid},
		{"nobody", accounts.Passkey{ID: credentialID(6), Person: "carol", Credential: cred}, accounts.ErrNotFound},
	}
	for _, tt := range tests {
		_, err := s.Service.AddPasskey(ctx, tt.pk)
		wantErrIs(t, tt.name, err, tt.want)
	}
	if pk, err := s.Service.AddPasskey(ctx, accounts.Passkey{ID: credentialID(7), Person: "alice", Name: strings.Repeat("ü", 64), Credential: cred}); err != nil {
		t.Errorf("64-character name: %v", err)
	} else if pk.Name != strings.Repeat("ü", 64) {
		t.Errorf("64-character name: got %q", pk.Name)
	}
}

// Two removals at once, each of one of a person's two passkeys: one at
// most succeeds, and a passkey is always left.
func TestRemovePasskeyRace(t *testing.T) {
	s := webStack(t)
	ctx := webCtx(t)
	for round := range 5 {
		person := fmt.Sprintf("p%d", round)
		s.MustCreatePerson(t, person)
		pks := []accounts.Passkey{mustAddPasskey(t, s, person, "a"), mustAddPasskey(t, s, person, "bb")}
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() { errs[i] = s.Service.RemovePasskey(ctx, person, pks[i].ID) })
		}
		wg.Wait()
		left, err := s.Service.Passkeys(ctx, person)
		if err != nil {
			t.Fatal(err)
		}
		ok := 0
		for _, err := range errs {
			if err == nil {
				ok++
			} else if !errors.Is(err, accounts.ErrInvalid) {
				t.Fatalf("round %d: racing removal: %v", round, err)
			}
		}
		if len(left) == 0 || ok > 1 || len(left) != 2-ok {
			t.Fatalf("round %d: %d removals succeeded and %d passkeys are left; want one at most and the rest left", round, ok, len(left))
		}
		for _, pk := range left {
			if _, err := s.Service.Passkey(ctx, pk.ID); err != nil {
				t.Fatalf("round %d: passkey left by id: %v", round, err)
			}
		}
	}
}

func TestDeletePersonRemovesPasskeys(t *testing.T) {
	s := webStack(t)
	ctx := webCtx(t)
	alice := s.MustCreatePerson(t, "alice")
	pk := mustAddPasskey(t, s, "alice", "laptop")
	if _, err := s.Service.DeletePerson(ctx, "alice"); err != nil {
		t.Fatalf("delete alice: %v", err)
	}
	_, err := s.Service.Passkey(ctx, pk.ID)
	wantErrIs(t, "passkey of a deleted person", err, accounts.ErrNotFound)
	_, err = s.Service.PersonByHandle(ctx, alice.Handle)
	wantErrIs(t, "deleted person by handle", err, accounts.ErrNotFound)

	again := s.MustCreatePerson(t, "alice")
	if again.Handle == alice.Handle {
		t.Error("a new person of the same name got the old user handle")
	}
	if pks, err := s.Service.Passkeys(ctx, "alice"); err != nil || len(pks) != 0 {
		t.Errorf("passkeys of the new alice: got %v, %v; want none", pks, err)
	}
}

func TestCreatePersonFromDisplayName(t *testing.T) {
	s := webStack(t)
	ctx := webCtx(t)
	if n, err := s.Service.PersonCount(ctx); err != nil || n != 0 {
		t.Fatalf("person count of a new server: got %d, %v; want 0", n, err)
	}
	tests := []struct {
		display, want string
	}{
		{"Ann Lee", "ann-lee"},
		{"Ann Lee", "ann-lee-2"},
		{"ann.lee", "ann-lee-3"},
		{"  José  Ñúñez! ", "jos-ez"},
		{"LATCH", "latch-2"},
		{"_-Sys-_", "sys-2"},
		{"李小龍", "person"},
		{"李小龍", "person-2"},
		{"Bob_Smith 3rd", "bob_smith-3rd"},
		{strings.Repeat("x", 40), strings.Repeat("x", 32)},
		{strings.Repeat("x", 40), strings.Repeat("x", 30) + "-2"},
	}
	for i, tt := range tests {
		p, err := s.Service.CreatePerson(ctx, accounts.NewPerson{DisplayName: tt.display})
		if err != nil {
			t.Fatalf("create %q: %v", tt.display, err)
		}
		if p.Name != tt.want || p.DisplayName != tt.display {
			t.Errorf("create %q: got name %q (display %q), want %q", tt.display, p.Name, p.DisplayName, tt.want)
		}
		if n, err := s.Service.PersonCount(ctx); err != nil || n != i+1 {
			t.Errorf("person count: got %d, %v; want %d", n, err, i+1)
		}
	}
	// A handle made by the web layer during sign-up is kept; a bad one
	// is refused.
	h := accounts.NewHandle()
	p, err := s.Service.CreatePerson(ctx, accounts.NewPerson{Name: "carol", Handle: h})
	if err != nil || p.Handle != h {
		t.Errorf("create with a handle: got %q, %v; want %q", p.Handle, err, h)
	}
	_, err = s.Service.CreatePerson(ctx, accounts.NewPerson{Name: "dave", Handle: "short"})
	wantErrIs(t, "create with a bad handle", err, accounts.ErrInvalid)
	_, err = s.Service.CreatePerson(ctx, accounts.NewPerson{})
	wantErrIs(t, "create with neither name nor display name", err, accounts.ErrInvalid)
}
