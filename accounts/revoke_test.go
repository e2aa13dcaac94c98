package accounts_test

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/latch-dev/latch/keys"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestRevokeDevice(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	alice := s.MustCreatePerson(t, "alice")
	laptop := s.MustIssueDevice(t, "alice", "laptop")
	phone := s.MustIssueDevice(t, "alice", "phone")
	lc := s.MustConnect(t, laptop.CredsFile)
	pc := s.MustConnect(t, phone.CredsFile)
	phoneKV := mustRecords(t, pc.Conn)
	w, err := phoneKV.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if e := nextUpdate(t, w); e != nil {
		t.Fatalf("first update: got %v, want the nil marker", describe(e))
	}

	d, err := s.Service.RevokeDevice(ctx, "alice", "laptop")
	if err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if !d.Revoked() || d.PublicKey != laptop.PublicKey {
		t.Errorf("revoked device: got key %q revoked at %v, want %q and a time", d.PublicKey, d.RevokedAt, laptop.PublicKey)
	}

	// The live connection is closed at once, and says why.
	wantClosed(t, lc, "revoke")
	if errs := lc.Errors(); !slices.ContainsFunc(errs, func(err error) bool { return errors.Is(err, nats.ErrAuthRevoked) }) {
		t.Errorf("laptop's errors: got %q, want %q among them", errs, nats.ErrAuthRevoked)
	}
	if errs := lc.Errors(); !slices.ContainsFunc(errs, func(err error) bool { return strings.Contains(err.Error(), "revoked") }) {
		t.Errorf("laptop's errors: got %q, want one that mentions %q", errs, "revoked")
	}
	wantConnectRefused(t, s, laptop.CredsFile, nats.ErrAuthorization)

	// The other device stays connected and keeps syncing.
	wantOpen(t, pc, "revoking the laptop")
	mustPut(t, phoneKV, "after", "revoke")
	wantValue(t, phoneKV, "after", "revoke")
	if e := nextUpdate(t, w); e == nil || e.Key() != "after" {
		t.Errorf("phone's watcher after the revoke: got %v, want put after", describe(e))
	}
	wantNoViolations(t, pc)

	ac := accountClaims(t, s, alice.Account)
	if _, ok := ac.Revocations[laptop.PublicKey]; !ok {
		t.Errorf("revocations: got %v, want %s among them", slices.Collect(maps.Keys(ac.Revocations)), laptop.PublicKey)
	}
	if _, ok := ac.Revocations[phone.PublicKey]; ok {
		t.Errorf("revocations hold the phone %s; want only the laptop", phone.PublicKey)
	}
	detail, err := s.Service.Account(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if detail.Revocations != 1 || detail.DevicesRevoked != 1 || detail.DevicesActive != 1 {
		t.Errorf("account detail: got %d revocations, %d revoked, %d active; want 1, 1, 1", detail.Revocations, detail.DevicesRevoked, detail.DevicesActive)
	}

	// Revoking again changes nothing: same time, no new JWT, no new entry.
	again, err := s.Service.RevokeDevice(ctx, "alice", laptop.PublicKey)
	if err != nil {
		t.Fatalf("revoke again: %v", err)
	}
	if again.RevokedAt == nil || !again.RevokedAt.Equal(*d.RevokedAt) {
		t.Errorf("revoked at after a second revoke: got %v, want %v", again.RevokedAt, d.RevokedAt)
	}
	if got := accountClaims(t, s, alice.Account).IssuedAt; got != ac.IssuedAt {
		t.Errorf("JWT iat after a second revoke: got %d, want %d (nothing pushed)", got, ac.IssuedAt)
	}

	// A revoked key is never authorized again, under any name.
	_, tok, err := s.Service.AuthorizeDevice(ctx, accounts.NewDevice{Person: "alice", Name: "laptop-again", PublicKey: laptop.PublicKey})
	wantKind(t, "authorize a revoked key", err, accounts.ErrRevoked)
	if tok != "" {
		t.Error("got a JWT for a revoked key, want none")
	}

	// Its name is free again for a new key; the name now finds the new device.
	fresh := s.MustIssueDevice(t, "alice", "laptop")
	if fresh.PublicKey == laptop.PublicKey {
		t.Fatal("the new laptop has the revoked key")
	}
	got, err := s.Service.Device(ctx, "alice", "laptop")
	if err != nil || got.PublicKey != fresh.PublicKey || got.Revoked() {
		t.Errorf("Device(alice, laptop): got %q revoked=%v, %v; want the new %q", got.PublicKey, got.Revoked(), err, fresh.PublicKey)
	}
	got, err = s.Service.Device(ctx, "alice", laptop.PublicKey)
	if err != nil || !got.Revoked() {
		t.Errorf("Device(alice, old key): got revoked=%v, %v; want the revoked laptop", got.Revoked(), err)
	}
	wantValue(t, mustRecords(t, s.MustConnect(t, fresh.CredsFile).Conn), "after", "revoke")
	wantConnectRefused(t, s, laptop.CredsFile, nats.ErrAuthorization)

	// A revoked device found by name, with no active one of that name.
	if _, err := s.Service.RevokeDevice(ctx, "alice", "phone"); err != nil {
		t.Fatal(err)
	}
	wantClosed(t, pc, "revoking the phone")
	got, err = s.Service.Device(ctx, "alice", "phone")
	if err != nil || got.PublicKey != phone.PublicKey || !got.Revoked() {
		t.Errorf("Device(alice, phone): got %q revoked=%v, %v; want the revoked %q", got.PublicKey, got.Revoked(), err, phone.PublicKey)
	}

	_, err = s.Service.RevokeDevice(ctx, "alice", "tablet")
	wantKind(t, "revoke an unknown device", err, accounts.ErrNotFound)
	_, err = s.Service.RevokeDevice(ctx, "nobody", "laptop")
	wantKind(t, "revoke in an unknown account", err, accounts.ErrNotFound)

	want := []string{
		string(accounts.ActionAccountCreate),
		string(accounts.ActionDeviceIssue) + " laptop", string(accounts.ActionDeviceIssue) + " phone",
		string(accounts.ActionDeviceRevoke) + " laptop",
		string(accounts.ActionDeviceIssue) + " laptop",
		string(accounts.ActionDeviceRevoke) + " phone",
	}
	if got := actions(auditOf(t, s, alice.Account)); !slices.Equal(got, want) {
		t.Errorf("audit: got %q, want %q", got, want)
	}
}

// TestRevokeWithoutLiveConnection checks that a device revoked while it is
// offline cannot connect afterwards either.
func TestRevokeWithoutLiveConnection(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	s.MustCreatePerson(t, "alice")
	d := s.MustIssueDevice(t, "alice", "laptop")
	if _, err := s.Service.RevokeDevice(testCtx(t), "alice", "laptop"); err != nil {
		t.Fatal(err)
	}
	wantConnectRefused(t, s, d.CredsFile, nats.ErrAuthorization)
}

// TestSingleWriter fires revocations, issuances and disable/enable at one
// account from many goroutines at once. The account service is its only
// writer, so every revocation must survive every other change: each JWT
// it commits has a later iat than the one before and drops no revocation,
// and at the end every revoked device is out and every other one is in.
func TestSingleWriter(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	alice := s.MustCreatePerson(t, "alice")

	// Every JWT committed to the record, in the order it was committed
	// (the record's history of alice's key), each made the one in force.
	js, err := jetstream.New(s.App)
	if err != nil {
		t.Fatal(err)
	}
	record, err := js.KeyValue(ctx, accounts.JWTsBucket)
	if err != nil {
		t.Fatal(err)
	}
	watch, err := record.Watch(ctx, alice.Account, jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Stop()

	const (
		revoked   = 16 // devices revoked, each by two goroutines at once
		kept      = 4  // devices left alone
		newcomers = 8  // devices issued while the rest goes on
		toggles   = 3  // disable/enable rounds
	)
	var before []latchtest.Device
	for i := range revoked + kept {
		before = append(before, s.MustIssueDevice(t, "alice", fmt.Sprintf("dev-%02d", i)))
	}
	conns := make([]*latchtest.Conn, revoked)
	for i := range revoked {
		conns[i] = s.MustConnect(t, before[i].CredsFile)
	}

	var (
		wg     sync.WaitGroup
		issued = make([]latchtest.Device, newcomers)
	)
	for i := range revoked {
		for range 2 {
			wg.Go(func() {
				if _, err := s.Service.RevokeDevice(ctx, "alice", before[i].PublicKey); err != nil {
					t.Errorf("revoke %s: %v", before[i].Name, err)
				}
			})
		}
	}
	for i := range newcomers {
		wg.Go(func() {
			d, creds, err := s.Service.IssueDevice(ctx, accounts.NewDevice{Person: "alice", Name: fmt.Sprintf("new-%02d", i)})
			switch {
			case errors.Is(err, accounts.ErrDisabled):
				return // issued while the account was disabled: refused, rightly
			case err != nil:
				t.Errorf("issue new-%02d: %v", i, err)
				return
			}
			path := filepath.Join(t.TempDir(), "device.creds")
			if err := keys.WriteFileNew(path, creds); err != nil {
				t.Error(err)
				return
			}
			issued[i] = latchtest.Device{Device: d, CredsFile: path}
		})
	}
	wg.Go(func() {
		for range toggles {
			if _, err := s.Service.DisablePerson(ctx, "alice"); err != nil {
				t.Errorf("disable: %v", err)
			}
			if _, err := s.Service.EnablePerson(ctx, "alice"); err != nil {
				t.Errorf("enable: %v", err)
			}
		}
	})
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	ac := accountClaims(t, s, alice.Account)
	for _, d := range before[:revoked] {
		if _, ok := ac.Revocations[d.PublicKey]; !ok {
			t.Errorf("%s (%s) is not in the account's revocations", d.Name, d.PublicKey)
		}
	}
	for _, d := range slices.Concat(before[revoked:], issued) {
		if _, ok := ac.Revocations[d.PublicKey]; ok && d.CredsFile != "" {
			t.Errorf("%s (%s) is in the account's revocations; want it left alone", d.Name, d.PublicKey)
		}
	}
	if len(ac.Revocations) != revoked {
		t.Errorf("revocations: got %d, want %d", len(ac.Revocations), revoked)
	}
	if ac.Limits.Conn != accounts.DefaultLimits().Conns {
		t.Errorf("connection limit after the last enable: got %d, want %d", ac.Limits.Conn, accounts.DefaultLimits().Conns)
	}
	p, err := s.Service.Person(ctx, "alice")
	if err != nil || p.Status != accounts.StatusActive {
		t.Errorf("person after the last enable: got %q, %v, want %q", p.Status, err, accounts.StatusActive)
	}

	// The watch has every commit once the one in force is among them.
	var history []*jwt.AccountClaims
	for len(history) == 0 || history[len(history)-1].ID != ac.ID {
		select {
		case e := <-watch.Updates():
			if e == nil {
				continue
			}
			if c, err := jwt.DecodeAccountClaims(string(e.Value())); err == nil {
				history = append(history, c)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the record's history never reached the JWT in force (%d commits seen)", len(history))
		}
	}
	if len(history) < 2*toggles {
		t.Fatalf("commits seen: got %d, want at least %d (one per disable and enable)", len(history), 2*toggles)
	}
	for i := 1; i < len(history); i++ {
		prev, next := history[i-1], history[i]
		if next.IssuedAt <= prev.IssuedAt {
			t.Errorf("commit %d: iat %d is not after the previous commit's %d", i, next.IssuedAt, prev.IssuedAt)
		}
		for key := range prev.Revocations {
			if _, ok := next.Revocations[key]; !ok {
				t.Errorf("commit %d dropped the revocation of %s", i, key)
			}
		}
	}

	for i, c := range conns {
		wantClosed(t, c, "revoking "+before[i].Name)
	}
	for _, d := range before[:revoked] {
		wantConnectRefused(t, s, d.CredsFile, nats.ErrAuthorization)
	}
	for _, d := range slices.Concat(before[revoked:], issued) {
		if d.CredsFile == "" {
			continue // refused while disabled
		}
		kv := mustRecords(t, s.MustConnect(t, d.CredsFile).Conn)
		mustPut(t, kv, d.Name, "in")
	}
	devs, err := s.Service.Devices(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range devs {
		if d.Revoked() {
			n++
		}
	}
	if n != revoked {
		t.Errorf("devices marked revoked: got %d, want %d", n, revoked)
	}
}
