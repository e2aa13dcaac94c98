package accounts_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/keys"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

func TestIssueDevice(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	alice := s.MustCreatePerson(t, "alice")
	issued := time.Now()
	d := s.MustIssueDevice(t, "alice", "laptop")

	for _, c := range []struct{ field, got, want string }{
		{"account", d.Account, alice.Account},
		{"account name", d.AccountName, "alice"},
		{"name", d.Name, "laptop"},
		{"enrolled", d.Enrolled, accounts.EnrolledIssued},
	} {
		if c.got != c.want {
			t.Errorf("device %s: got %q, want %q", c.field, c.got, c.want)
		}
	}
	if !nkeys.IsValidPublicUserKey(d.PublicKey) {
		t.Errorf("device key: got %q, want a user public key", d.PublicKey)
	}
	if d.Revoked() {
		t.Error("a new device is revoked")
	}
	// The stack's service issues JWTs for an hour.
	if d.Expires == nil || d.Expires.Before(issued.Add(59*time.Minute)) || d.Expires.After(issued.Add(61*time.Minute)) {
		t.Errorf("expires: got %v, want about an hour after %v", d.Expires, issued)
	}

	// The creds are a device user signed by the scoped device key, with no
	// permissions of its own.
	c, err := keys.ReadCreds(d.CredsFile)
	if err != nil {
		t.Fatalf("read the creds file: %v", err)
	}
	uc, err := jwt.DecodeUserClaims(c.JWT)
	if err != nil {
		t.Fatal(err)
	}
	if uc.Subject != d.PublicKey {
		t.Errorf("JWT subject: got %q, want %q", uc.Subject, d.PublicKey)
	}
	if uc.IssuerAccount != alice.Account {
		t.Errorf("JWT issuer account: got %q, want %q", uc.IssuerAccount, alice.Account)
	}
	if uc.Name != "laptop" {
		t.Errorf("JWT name: got %q, want %q", uc.Name, "laptop")
	}
	if uc.Expires != d.Expires.Unix() {
		t.Errorf("JWT expires: got %d, want %d", uc.Expires, d.Expires.Unix())
	}
	scope, ok := accountClaims(t, s, alice.Account).SigningKeys.GetScope(uc.Issuer)
	if !ok || scope == nil || scope.(*jwt.UserScope).Role != accounts.DeviceRole {
		t.Errorf("JWT issuer %s: got scope %+v, want the account's %q scoped key", uc.Issuer, scope, accounts.DeviceRole)
	}
	if len(uc.Pub.Allow)+len(uc.Pub.Deny)+len(uc.Sub.Allow)+len(uc.Sub.Deny) != 0 || uc.Resp != nil {
		t.Errorf("user permissions: got %+v, want none (the scope decides)", uc.Permissions)
	}

	got, err := s.Service.Device(testCtx(t), "alice", "laptop")
	if err != nil || got.PublicKey != d.PublicKey {
		t.Errorf("Device(alice, laptop): got %q, %v, want %q", got.PublicKey, err, d.PublicKey)
	}
	got, err = s.Service.Device(testCtx(t), "alice", "LAPTOP")
	if err != nil || got.PublicKey != d.PublicKey {
		t.Errorf("Device(alice, LAPTOP): got %q, %v, want %q (names ignore case)", got.PublicKey, err, d.PublicKey)
	}
	got, err = s.Service.Device(testCtx(t), "alice", d.PublicKey)
	if err != nil || got.Name != "laptop" {
		t.Errorf("Device(alice, key): got %q, %v, want %q", got.Name, err, "laptop")
	}
}

func TestIssueDeviceRefuses(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	s.MustCreatePerson(t, "alice")
	s.MustIssueDevice(t, "alice", "laptop")
	kp, _ := nkeys.CreateUser()
	key, _ := kp.PublicKey()
	acct, _ := nkeys.CreateAccount()
	acctKey, _ := acct.PublicKey()

	tests := []struct {
		name  string
		nd    accounts.NewDevice
		kind  error
		field string
	}{
		{name: "same name", nd: accounts.NewDevice{Person: "alice", Name: "laptop", PublicKey: key}, kind: accounts.ErrExists},
		{name: "same name in other case", nd: accounts.NewDevice{Person: "alice", Name: "Laptop", PublicKey: key}, kind: accounts.ErrExists},
		{name: "bad name", nd: accounts.NewDevice{Person: "alice", Name: " laptop", PublicKey: key}, kind: accounts.ErrInvalid, field: "name"},
		{name: "no key", nd: accounts.NewDevice{Person: "alice", Name: "phone"}, kind: accounts.ErrInvalid, field: "public_key"},
		{name: "account key", nd: accounts.NewDevice{Person: "alice", Name: "phone", PublicKey: acctKey}, kind: accounts.ErrInvalid, field: "public_key"},
		{name: "no such person", nd: accounts.NewDevice{Person: "nobody", Name: "phone", PublicKey: key}, kind: accounts.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, tok, err := s.Service.AuthorizeDevice(ctx, tt.nd)
			wantKind(t, "authorize", err, tt.kind)
			if tok != "" {
				t.Errorf("got a JWT, want none")
			}
			if tt.field == "" {
				return
			}
			var ve *accounts.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("got %T (%v), want a *accounts.ValidationError", err, err)
			}
			if _, ok := ve.Problems[tt.field]; !ok {
				t.Errorf("problems: got %q, want one about %q", ve.Problems, tt.field)
			}
		})
	}
	devs, err := s.Service.Devices(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 {
		t.Errorf("devices after refusals: got %d, want 1", len(devs))
	}
	_, err = s.Service.Device(ctx, "alice", "phone")
	wantKind(t, "Device(alice, phone)", err, accounts.ErrNotFound)
	_, err = s.Service.Devices(ctx, "nobody")
	wantKind(t, "Devices(nobody)", err, accounts.ErrNotFound)
}

// TestAuthorizeDevice is the enrollment path: the device makes its key,
// the server signs a JWT for it, and the seed never leaves the device.
func TestAuthorizeDevice(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	s.MustCreatePerson(t, "alice")
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()

	d, tok, err := s.Service.AuthorizeDevice(ctx, accounts.NewDevice{Person: "alice", Name: "phone", PublicKey: pub, Enrolled: "enrolled", Platform: "linux/arm64", TTL: -1})
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	if d.PublicKey != pub || d.Enrolled != "enrolled" || d.Platform != "linux/arm64" {
		t.Errorf("device: got key %q enrolled %q platform %q, want %q, %q, %q", d.PublicKey, d.Enrolled, d.Platform, pub, "enrolled", "linux/arm64")
	}
	if d.Expires != nil {
		t.Errorf("expires with a negative TTL: got %v, want none", d.Expires)
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		t.Fatal(err)
	}
	if uc.Expires != 0 {
		t.Errorf("JWT expires with a negative TTL: got %d, want 0", uc.Expires)
	}

	creds, err := keys.FormatCreds(tok, seed)
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/phone.creds"
	if err := keys.WriteFileNew(path, creds); err != nil {
		t.Fatal(err)
	}
	kv := mustRecords(t, s.MustConnect(t, path).Conn)
	mustPut(t, kv, "from-phone", "hi")
	wantValue(t, kv, "from-phone", "hi")

	// A key is enrolled once: asking again, even under another name, fails.
	_, _, err = s.Service.AuthorizeDevice(ctx, accounts.NewDevice{Person: "alice", Name: "phone-2", PublicKey: pub})
	wantKind(t, "authorize the same key again", err, accounts.ErrRevoked)

	// A TTL of its own wins over the service's default.
	kp2, _ := nkeys.CreateUser()
	pub2, _ := kp2.PublicKey()
	before := time.Now()
	d, _, err = s.Service.AuthorizeDevice(ctx, accounts.NewDevice{Person: "alice", Name: "tablet", PublicKey: pub2, TTL: 3 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if d.Expires == nil || d.Expires.Before(before.Add(3*time.Hour-time.Minute)) || d.Expires.After(before.Add(3*time.Hour+time.Minute)) {
		t.Errorf("expires with a 3h TTL: got %v, want about 3h after %v", d.Expires, before)
	}

	devs, err := s.Service.Devices(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range devs {
		names = append(names, d.Name)
	}
	if want := []string{"tablet", "phone"}; !slices.Equal(names, want) {
		t.Errorf("devices, newest first: got %q, want %q", names, want)
	}
}

// TestDevicesSyncRecords checks that two devices of one person share the
// records bucket: what one writes, the other reads and watches.
func TestDevicesSyncRecords(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	s.MustCreatePerson(t, "alice")
	laptop := mustRecords(t, s.MustConnect(t, s.MustIssueDevice(t, "alice", "laptop").CredsFile).Conn)
	phoneConn := s.MustConnect(t, s.MustIssueDevice(t, "alice", "phone").CredsFile)
	phone := mustRecords(t, phoneConn.Conn)

	w, err := phone.WatchAll(ctx)
	if err != nil {
		t.Fatalf("phone watches: %v", err)
	}
	defer w.Stop()
	if e := nextUpdate(t, w); e != nil {
		t.Fatalf("first update of a watcher on an empty bucket: got %q, want the nil marker", e.Key())
	}

	mustPut(t, laptop, "note", "hello")
	e := nextUpdate(t, w)
	if e == nil || e.Key() != "note" || string(e.Value()) != "hello" || e.Operation() != jetstream.KeyValuePut {
		t.Fatalf("phone's watcher: got %v, want put note=%q", describe(e), "hello")
	}
	wantValue(t, phone, "note", "hello")

	mustPut(t, phone, "note", "world")
	wantValue(t, laptop, "note", "world")
	if e := nextUpdate(t, w); e == nil || string(e.Value()) != "world" {
		t.Errorf("phone's watcher: got %v, want put note=%q", describe(e), "world")
	}
	hist, err := laptop.History(ctx, "note")
	if err != nil {
		t.Fatalf("history: %v", err)
	}
	var values []string
	for _, h := range hist {
		values = append(values, string(h.Value()))
	}
	if want := []string{"hello", "world"}; !slices.Equal(values, want) {
		t.Errorf("history: got %q, want %q", values, want)
	}

	if err := laptop.Delete(ctx, "note"); err != nil {
		t.Fatalf("laptop deletes: %v", err)
	}
	if e := nextUpdate(t, w); e == nil || e.Key() != "note" || e.Operation() != jetstream.KeyValueDelete {
		t.Errorf("phone's watcher: got %v, want a delete of note", describe(e))
	}
	wantNoKey(t, phone, "note")

	mustPut(t, laptop, "a", "1")
	mustPut(t, laptop, "b", "2")
	lister, err := phone.ListKeys(ctx)
	if err != nil {
		t.Fatalf("list keys: %v", err)
	}
	var ks []string
	for k := range lister.Keys() {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	if want := []string{"a", "b"}; !slices.Equal(ks, want) {
		t.Errorf("keys: got %q, want %q", ks, want)
	}
	wantNoViolations(t, phoneConn)
}

// TestPersonsAreIsolated checks that the account is the boundary: two
// persons each have a bucket named records, and neither sees the other's.
func TestPersonsAreIsolated(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	s.MustCreatePerson(t, "alice")
	s.MustCreatePerson(t, "bob")
	alice := mustRecords(t, s.MustConnect(t, s.MustIssueDevice(t, "alice", "laptop").CredsFile).Conn)
	bobConn := s.MustConnect(t, s.MustIssueDevice(t, "bob", "laptop").CredsFile)
	bob := mustRecords(t, bobConn.Conn)

	w, err := bob.WatchAll(ctx)
	if err != nil {
		t.Fatalf("bob watches: %v", err)
	}
	defer w.Stop()
	if e := nextUpdate(t, w); e != nil {
		t.Fatalf("bob's first update: got %v, want the nil marker", describe(e))
	}

	mustPut(t, alice, "secret", "alice's")
	mustPut(t, alice, "shared-name", "alice's")
	wantNoKey(t, bob, "secret")

	// Bob's own write comes through his watcher; had alice's writes reached
	// his bucket, they would have come first.
	mustPut(t, bob, "shared-name", "bob's")
	if e := nextUpdate(t, w); e == nil || e.Key() != "shared-name" || string(e.Value()) != "bob's" {
		t.Errorf("bob's watcher: got %v, want put shared-name=%q", describe(e), "bob's")
	}
	wantValue(t, alice, "shared-name", "alice's")
	wantValue(t, bob, "shared-name", "bob's")

	ast, err := alice.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bst, err := bob.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ast.Values() != 2 || bst.Values() != 1 {
		t.Errorf("values: got alice %d bob %d, want 2 and 1", ast.Values(), bst.Values())
	}
	wantNoViolations(t, bobConn)
}

// describe prints a watcher's entry for a failure message.
func describe(e jetstream.KeyValueEntry) string {
	if e == nil {
		return "<nil marker>"
	}
	return strings.Join([]string{e.Operation().String(), e.Key(), "=", string(e.Value())}, " ")
}

// A device's connections are counted, and closed without revoking it: it
// may connect again at once.
func TestDisconnectDevice(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	s.MustCreatePerson(t, "alice")
	laptop := s.MustIssueDevice(t, "alice", "laptop")
	a, b := s.MustConnect(t, laptop.CredsFile), s.MustConnect(t, laptop.CredsFile)
	ds, err := s.Service.Devices(ctx, "alice")
	if err != nil || len(ds) != 1 || ds[0].Conns != 2 {
		t.Fatalf("devices: got %+v, %v; want laptop with 2 connections", ds, err)
	}
	d, n, err := s.Service.DisconnectDevice(ctx, "alice", "laptop")
	if err != nil || n != 2 || d.Name != "laptop" {
		t.Fatalf("disconnect: got %q, %d, %v; want laptop, 2", d.Name, n, err)
	}
	wantClosed(t, a, "disconnecting the device")
	wantClosed(t, b, "disconnecting the device")
	c := s.MustConnect(t, laptop.CredsFile)
	wantOpen(t, c, "a disconnected (not revoked) device connecting again")
	if acts, _ := auditActions(t, s, laptop.Account, 10); !slices.Contains(acts, accounts.ActionDeviceDisconnect) {
		t.Errorf("audit: got %v, want %s", acts, accounts.ActionDeviceDisconnect)
	}
	_, _, err = s.Service.DisconnectDevice(ctx, "alice", "phone")
	wantKind(t, "disconnect an unknown device", err, accounts.ErrNotFound)
}
