package accounts_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/latch-dev/latch/operator"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// waitFor bounds every wait for something the server does on its own
// (closing a connection, delivering a message). It is generous on purpose:
// these tests check what happens, never how fast.
const waitFor = 10 * time.Second

// startStack starts a latch stack of its own for one test.
func startStack(t *testing.T) *latchtest.Stack {
	t.Helper()
	return latchtest.MustStart(t, latchtest.Options{Dir: t.TempDir()})
}

// serveAdmin runs the admin service of s's account service until the test
// ends, and returns a client with the first admin's creds.
func serveAdmin(t *testing.T, s *latchtest.Stack) *accounts.AdminClient {
	t.Helper()
	ms, err := s.Service.ServeAdmin(s.App, "0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Stop() })
	return accounts.NewAdminClient(s.MustAdminConn(t))
}

// testCtx is a context for calls that should answer promptly.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// mustRecords opens the records bucket as the connection's user sees it.
func mustRecords(t testing.TB, nc *nats.Conn) jetstream.KeyValue {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(testCtx(t), accounts.RecordsBucket)
	if err != nil {
		t.Fatalf("open the records bucket: %v", err)
	}
	return kv
}

func mustPut(t testing.TB, kv jetstream.KeyValue, key, value string) {
	t.Helper()
	if _, err := kv.PutString(testCtx(t), key, value); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// wantValue checks that key holds value.
func wantValue(t testing.TB, kv jetstream.KeyValue, key, value string) {
	t.Helper()
	e, err := kv.Get(testCtx(t), key)
	if err != nil {
		t.Fatalf("get %s: got error %v, want %q", key, err, value)
	}
	if got := string(e.Value()); got != value {
		t.Errorf("get %s: got %q, want %q", key, got, value)
	}
}

// wantNoKey checks that key is not in the bucket.
func wantNoKey(t testing.TB, kv jetstream.KeyValue, key string) {
	t.Helper()
	e, err := kv.Get(testCtx(t), key)
	if !errors.Is(err, jetstream.ErrKeyNotFound) {
		var got string
		if e != nil {
			got = string(e.Value())
		}
		t.Errorf("get %s: got %q, %v, want jetstream.ErrKeyNotFound", key, got, err)
	}
}

// nextUpdate returns the next entry a watcher delivers.
func nextUpdate(t testing.TB, w jetstream.KeyWatcher) jetstream.KeyValueEntry {
	t.Helper()
	select {
	case e := <-w.Updates():
		return e
	case <-time.After(waitFor):
		t.Fatalf("no update from the watcher within %v", waitFor)
		return nil
	}
}

// wantClosed waits for the server to close a connection.
func wantClosed(t testing.TB, c *latchtest.Conn, why string) {
	t.Helper()
	select {
	case <-c.Closed:
	case <-time.After(waitFor):
		t.Fatalf("connection still open %v after %s; want it closed", waitFor, why)
	}
}

// wantOpen checks that a connection is still up and answers a round trip.
func wantOpen(t testing.TB, c *latchtest.Conn, why string) {
	t.Helper()
	select {
	case <-c.Closed:
		t.Fatalf("connection closed after %s (last error %v); want it open", why, c.LastError())
	default:
	}
	if err := c.FlushTimeout(waitFor); err != nil {
		t.Fatalf("round trip after %s: %v; want the connection working", why, err)
	}
}

// wantConnectRefused checks that creds no longer connect, with the error
// nats.go gives for the reason.
func wantConnectRefused(t testing.TB, s *latchtest.Stack, credsFile string, want error) {
	t.Helper()
	c, err := s.Connect(credsFile)
	if err == nil {
		c.Close()
		t.Fatalf("connect with %s: got a connection, want %v", filepath.Base(credsFile), want)
	}
	if !errors.Is(err, want) {
		t.Errorf("connect with %s: got %q, want %q", filepath.Base(credsFile), err, want)
	}
}

// violation is the text of the error nats.go reports when the server
// refuses an operation ("Publish" or "Subscription") on subject.
func violation(op, subject string) string {
	return fmt.Sprintf("Permissions Violation for %s to %q", op, subject)
}

// countViolations counts the recorded permission violations for op on
// subject.
func countViolations(c *latchtest.Conn, op, subject string) int {
	n := 0
	for _, err := range c.Errors() {
		if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), violation(op, subject)) {
			n++
		}
	}
	return n
}

// waitViolation waits until the server has refused op on subject.
func waitViolation(t testing.TB, c *latchtest.Conn, op, subject string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for countViolations(c, op, subject) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %v; errors so far: %q", violation(op, subject), waitFor, c.Errors())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wantNoViolations checks that the server refused nothing the connection
// did so far. The server answers in order and nats.go reports its errors
// in order, so once a deliberate violation (the sentinel) has been
// reported, any earlier one would have been too.
func wantNoViolations(t testing.TB, c *latchtest.Conn) {
	t.Helper()
	sentinel := "latch-test.sentinel." + strings.TrimPrefix(nats.NewInbox(), nats.InboxPrefix)
	if err := c.Publish(sentinel, nil); err != nil {
		t.Fatal(err)
	}
	waitViolation(t, c, "Publish", sentinel)
	for _, err := range c.Errors() {
		if !strings.Contains(err.Error(), sentinel) {
			t.Errorf("the server refused something: %q; want no errors", err)
		}
	}
}

// accountClaims reads an account's JWT from the resolver.
func accountClaims(t testing.TB, s *latchtest.Stack, account string) *jwt.AccountClaims {
	t.Helper()
	tok, err := s.Claims.Lookup(testCtx(t), account)
	if err != nil {
		t.Fatalf("look up %s: %v", account, err)
	}
	if tok == "" {
		t.Fatalf("look up %s: the resolver holds no JWT", account)
	}
	ac, err := jwt.DecodeAccountClaims(tok)
	if err != nil {
		t.Fatalf("decode the JWT of %s: %v", account, err)
	}
	return ac
}

// auditOf returns the actions on the audit trail about one account, oldest
// first.
func auditOf(t testing.TB, s *latchtest.Stack, account string) []accounts.AuditEvent {
	t.Helper()
	all, err := s.Service.Audit(testCtx(t), 10000)
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	var out []accounts.AuditEvent
	for _, e := range all {
		if e.Account == account {
			out = append(out, e)
		}
	}
	return out
}

func actions(es []accounts.AuditEvent) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = string(e.Action)
		if e.DeviceName != "" {
			out[i] += " " + e.DeviceName
		}
	}
	return out
}

// wantKind checks that err is of a domain error kind.
func wantKind(t testing.TB, what string, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Errorf("%s: got %v, want an error of kind %q", what, err, accounts.Kind(kind))
	}
}

func TestCreatePerson(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	p, err := s.Service.CreatePerson(ctx, accounts.NewPerson{Name: "alice", DisplayName: "Alice A."})
	if err != nil {
		t.Fatalf("create alice: %v", err)
	}
	for _, c := range []struct{ field, got, want string }{
		{"name", p.Name, "alice"},
		{"display name", p.DisplayName, "Alice A."},
		{"role", p.Role, accounts.RoleMember},
		{"status", p.Status, accounts.StatusActive},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.field, c.got, c.want)
		}
	}
	if p.Limits != accounts.DefaultLimits() {
		t.Errorf("limits: got %+v, want %+v", p.Limits, accounts.DefaultLimits())
	}
	if got, err := s.Service.Person(ctx, "alice"); err != nil || got.Account != p.Account {
		t.Errorf("Person(alice): got %q, %v, want account %q", got.Account, err, p.Account)
	}

	ac := accountClaims(t, s, p.Account)
	if ac.Name != "alice" {
		t.Errorf("JWT name: got %q, want %q", ac.Name, "alice")
	}
	if ac.Issuer != s.Operator.SigningKey {
		t.Errorf("JWT issuer: got %q, want the operator signing key %q", ac.Issuer, s.Operator.SigningKey)
	}
	// The tier holds the bucket and its history, each up to the quota.
	r1 := ac.Limits.JetStreamTieredLimits["R1"]
	wantDisk := 2*accounts.DefaultLimits().Disk + accounts.DeleteReserve(accounts.DefaultLimits().Disk)
	if r1.DiskStorage != wantDisk || r1.MemoryStorage != accounts.DefaultLimits().Memory {
		t.Errorf("R1 tier: got disk %d memory %d, want %d and %d", r1.DiskStorage, r1.MemoryStorage, wantDisk, accounts.DefaultLimits().Memory)
	}
	if ac.Limits.Conn != accounts.DefaultLimits().Conns {
		t.Errorf("connection limit: got %d, want %d", ac.Limits.Conn, accounts.DefaultLimits().Conns)
	}
	var scopes []string
	for key := range ac.SigningKeys {
		if scope, ok := ac.SigningKeys.GetScope(key); ok && scope != nil {
			scopes = append(scopes, scope.(*jwt.UserScope).Role)
		}
	}
	if !slices.Equal(scopes, []string{accounts.DeviceRole}) {
		t.Errorf("scoped signing keys: got roles %q, want exactly %q", scopes, []string{accounts.DeviceRole})
	}

	// The records bucket is there, made with the account.
	d := s.MustIssueDevice(t, "alice", "laptop")
	kv := mustRecords(t, s.MustConnect(t, d.CredsFile).Conn)
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatalf("records status: %v", err)
	}
	if got := st.Bucket(); got != accounts.RecordsBucket {
		t.Errorf("bucket: got %q, want %q", got, accounts.RecordsBucket)
	}
	if got := st.Values(); got != 0 {
		t.Errorf("values in a new bucket: got %d, want 0", got)
	}

	if got := actions(auditOf(t, s, p.Account)); !slices.Equal(got, []string{string(accounts.ActionAccountCreate), string(accounts.ActionDeviceIssue) + " laptop"}) {
		t.Errorf("audit: got %q, want %q", got, []string{string(accounts.ActionAccountCreate), string(accounts.ActionDeviceIssue) + " laptop"})
	}
}

func TestCreatePersonRefuses(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	s.MustCreatePerson(t, "alice")
	before, err := s.Claims.List(ctx)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		np    accounts.NewPerson
		kind  error
		field string // the ValidationError's field, for ErrInvalid
	}{
		{name: "duplicate", np: accounts.NewPerson{Name: "alice"}, kind: accounts.ErrExists},
		{name: "upper case", np: accounts.NewPerson{Name: "Alice"}, kind: accounts.ErrInvalid, field: "name"},
		{name: "empty", np: accounts.NewPerson{Name: ""}, kind: accounts.ErrInvalid, field: "name"},
		{name: "reserved sys", np: accounts.NewPerson{Name: "sys"}, kind: accounts.ErrInvalid, field: "name"},
		{name: "reserved latch", np: accounts.NewPerson{Name: "latch"}, kind: accounts.ErrInvalid, field: "name"},
		{name: "dot", np: accounts.NewPerson{Name: "a.b"}, kind: accounts.ErrInvalid, field: "name"},
		{name: "role", np: accounts.NewPerson{Name: "bob", Role: "root"}, kind: accounts.ErrInvalid, field: "role"},
		{name: "disk", np: accounts.NewPerson{Name: "bob", Limits: accounts.Limits{Disk: -1, Memory: 1, Conns: 1, Payload: 1, Consumers: 1}}, kind: accounts.ErrInvalid, field: "disk"},
		{name: "memory", np: accounts.NewPerson{Name: "bob", Limits: accounts.Limits{Disk: 1, Memory: -1, Conns: 1, Payload: 4096, Consumers: 1}}, kind: accounts.ErrInvalid, field: "memory"},
		// Too small a payload for the server's own requests to the bucket.
		{name: "payload", np: accounts.NewPerson{Name: "bob", Limits: accounts.Limits{Payload: 1}}, kind: accounts.ErrInvalid, field: "payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Service.CreatePerson(ctx, tt.np)
			wantKind(t, "create "+tt.np.Name, err, tt.kind)
			if tt.field == "" {
				return
			}
			var ve *accounts.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("got %T (%v), want a *accounts.ValidationError", err, err)
			}
			if _, ok := ve.Problems[tt.field]; !ok || len(ve.Problems) != 1 {
				t.Errorf("problems: got %q, want one about %q", ve.Problems, tt.field)
			}
		})
	}

	// Nothing of the refused persons was kept.
	ps, err := s.Service.Persons(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Name != "alice" {
		t.Errorf("persons: got %+v, want alice alone", ps)
	}
	after, err := s.Claims.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("resolver accounts: got %d, want %d as before", len(after), len(before))
	}
	if _, err := s.Service.Person(ctx, "bob"); !errors.Is(err, accounts.ErrNotFound) {
		t.Errorf("Person(bob): got %v, want ErrNotFound", err)
	}
}

// TestCreatePersonRace checks that of many simultaneous requests for one
// name exactly one wins.
func TestCreatePersonRace(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.Service.CreatePerson(testCtx(t), accounts.NewPerson{Name: "carol"})
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, accounts.ErrExists):
			t.Errorf("a losing create: got %v, want ErrExists", err)
		}
	}
	if won != 1 {
		t.Errorf("creates that succeeded: got %d, want 1", won)
	}
	ps, err := s.Service.Persons(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 {
		t.Errorf("persons: got %d, want 1", len(ps))
	}
}

func TestDisableEnablePerson(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	alice := s.MustCreatePerson(t, "alice")
	s.MustCreatePerson(t, "bob")
	laptop := s.MustIssueDevice(t, "alice", "laptop")
	phone := s.MustIssueDevice(t, "alice", "phone")
	bobs := s.MustIssueDevice(t, "bob", "laptop")
	c1 := s.MustConnect(t, laptop.CredsFile)
	c2 := s.MustConnect(t, phone.CredsFile)
	cb := s.MustConnect(t, bobs.CredsFile)
	mustPut(t, mustRecords(t, c1.Conn), "note", "kept")

	p, err := s.Service.DisablePerson(ctx, "alice")
	if err != nil {
		t.Fatalf("disable: %v", err)
	}
	if p.Status != accounts.StatusDisabled || p.DisabledAt == nil {
		t.Errorf("disabled person: got status %q disabled at %v, want %q and a time", p.Status, p.DisabledAt, accounts.StatusDisabled)
	}
	wantClosed(t, c1, "disable")
	wantClosed(t, c2, "disable")
	if err := c1.LastError(); !errors.Is(err, nats.ErrMaxAccountConnectionsExceeded) {
		t.Errorf("why the laptop was closed: got %v, want %v", err, nats.ErrMaxAccountConnectionsExceeded)
	}
	wantConnectRefused(t, s, laptop.CredsFile, nats.ErrMaxAccountConnectionsExceeded)
	wantOpen(t, cb, "disabling another person")

	// A disabled person gets no new device, and disabling twice is a no-op.
	_, _, err = s.Service.IssueDevice(ctx, accounts.NewDevice{Person: "alice", Name: "tablet"})
	wantKind(t, "issue a device to a disabled person", err, accounts.ErrDisabled)
	iat := accountClaims(t, s, alice.Account).IssuedAt
	if p, err := s.Service.DisablePerson(ctx, "alice"); err != nil || p.Status != accounts.StatusDisabled {
		t.Errorf("disable again: got %q, %v, want %q, nil", p.Status, err, accounts.StatusDisabled)
	}
	if got := accountClaims(t, s, alice.Account).IssuedAt; got != iat {
		t.Errorf("JWT iat after a second disable: got %d, want %d (nothing pushed)", got, iat)
	}

	p, err = s.Service.EnablePerson(ctx, "alice")
	if err != nil {
		t.Fatalf("enable: %v", err)
	}
	if p.Status != accounts.StatusActive || p.DisabledAt != nil {
		t.Errorf("enabled person: got status %q disabled at %v, want %q and none", p.Status, p.DisabledAt, accounts.StatusActive)
	}
	if got := accountClaims(t, s, alice.Account).Limits.Conn; got != accounts.DefaultLimits().Conns {
		t.Errorf("connection limit after enable: got %d, want %d", got, accounts.DefaultLimits().Conns)
	}
	c1 = s.MustConnect(t, laptop.CredsFile)
	wantValue(t, mustRecords(t, c1.Conn), "note", "kept")
	wantValue(t, mustRecords(t, s.MustConnect(t, phone.CredsFile).Conn), "note", "kept")

	want := []string{
		string(accounts.ActionAccountCreate), string(accounts.ActionDeviceIssue) + " laptop", string(accounts.ActionDeviceIssue) + " phone",
		string(accounts.ActionAccountDisable), string(accounts.ActionAccountEnable),
	}
	if got := actions(auditOf(t, s, alice.Account)); !slices.Equal(got, want) {
		t.Errorf("audit: got %q, want %q", got, want)
	}

	_, err = s.Service.DisablePerson(ctx, "nobody")
	wantKind(t, "disable nobody", err, accounts.ErrNotFound)
	_, err = s.Service.EnablePerson(ctx, "nobody")
	wantKind(t, "enable nobody", err, accounts.ErrNotFound)
}

func TestDeletePerson(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	old := s.MustCreatePerson(t, "alice")
	laptop := s.MustIssueDevice(t, "alice", "laptop")
	c := s.MustConnect(t, laptop.CredsFile)
	mustPut(t, mustRecords(t, c.Conn), "note", "gone soon")
	oldJWT, err := s.Claims.Lookup(ctx, old.Account)
	if err != nil || oldJWT == "" {
		t.Fatalf("look up alice: got %q, %v", oldJWT, err)
	}

	admin := accounts.Actor{Name: "root@test", From: "192.0.2.1"}
	if _, err := s.Service.DeletePerson(accounts.WithActor(ctx, admin), "alice"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	wantClosed(t, c, "delete")
	if tok, err := s.Claims.Lookup(ctx, old.Account); err != nil || tok != "" {
		t.Errorf("resolver after delete: got %d bytes, %v, want no JWT", len(tok), err)
	}
	wantConnectRefused(t, s, laptop.CredsFile, nats.ErrAuthorization)
	_, err = s.Service.Person(ctx, "alice")
	wantKind(t, "Person(alice) after delete", err, accounts.ErrNotFound)
	_, err = s.Service.Devices(ctx, "alice")
	wantKind(t, "Devices(alice) after delete", err, accounts.ErrNotFound)
	_, err = s.Service.DeletePerson(ctx, "alice")
	wantKind(t, "delete again", err, accounts.ErrNotFound)

	events := auditOf(t, s, old.Account)
	want := []string{string(accounts.ActionAccountCreate), string(accounts.ActionDeviceIssue) + " laptop", string(accounts.ActionAccountDelete)}
	if got := actions(events); !slices.Equal(got, want) {
		t.Errorf("audit: got %q, want %q", got, want)
	}
	if last := events[len(events)-1]; last.Actor != admin.Name || last.From != admin.From || last.AccountName != "alice" {
		t.Errorf("delete entry: got actor %q from %q name %q, want %q from %q name %q", last.Actor, last.From, last.AccountName, admin.Name, admin.From, "alice")
	}
	if first := events[0]; first.Actor != "latch" {
		t.Errorf("create entry actor: got %q, want %q (no actor in the context)", first.Actor, "latch")
	}

	// Should a peer push the old JWT back, Reconcile deletes it again.
	// It asks after the deleted accounts rather than listing the
	// resolver: at thousands of accounts a list holds the system
	// connection, which revocations use too, for seconds.
	if err := s.Claims.Push(ctx, oldJWT); err != nil {
		t.Fatalf("push the old JWT back: %v", err)
	}
	lists, err := s.Sys.SubscribeSync("$SYS.REQ.CLAIMS.LIST")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Service.Reconcile(ctx); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if tok, err := s.Claims.Lookup(ctx, old.Account); err != nil || tok != "" {
		t.Errorf("resolver after reconcile: got %d bytes, %v, want no JWT", len(tok), err)
	}
	if err := s.Sys.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := lists.Pending(); n != 0 {
		t.Errorf("reconcile listed the resolver %d times, want none", n)
	}
	lists.Unsubscribe()

	// The name is free again, with a new account and an empty bucket.
	fresh := s.MustCreatePerson(t, "alice")
	if fresh.Account == old.Account {
		t.Errorf("re-created account: got %q, want a new key", fresh.Account)
	}
	kv := mustRecords(t, s.MustConnect(t, s.MustIssueDevice(t, "alice", "laptop").CredsFile).Conn)
	wantNoKey(t, kv, "note")
	wantConnectRefused(t, s, laptop.CredsFile, nats.ErrAuthorization)
}

// TestPersonQuotas checks that a person account's limits hold: the
// connection limit, the payload limit and the disk quota of the bucket.
func TestPersonQuotas(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	limits := accounts.Limits{Disk: 64 << 10, Memory: 1 << 20, Conns: 2, Payload: 4 << 10, Consumers: 8}
	if _, err := s.Service.CreatePerson(ctx, accounts.NewPerson{Name: "dave", Limits: limits}); err != nil {
		t.Fatal(err)
	}
	d := s.MustIssueDevice(t, "dave", "laptop")
	c := s.MustConnect(t, d.CredsFile)
	s.MustConnect(t, d.CredsFile)
	wantConnectRefused(t, s, d.CredsFile, nats.ErrMaxAccountConnectionsExceeded)

	kv := mustRecords(t, c.Conn)
	if _, err := kv.Put(ctx, "big", make([]byte, limits.Payload+1)); !errors.Is(err, nats.ErrMaxPayload) {
		t.Errorf("put over the payload limit: got %v, want %v", err, nats.ErrMaxPayload)
	}
	var err error
	written := 0
	for written = 0; written < 2*int(limits.Disk); written += 1024 {
		if _, err = kv.Put(ctx, fmt.Sprintf("k%d", written), make([]byte, 1024)); err != nil {
			break
		}
	}
	if err == nil {
		t.Fatalf("wrote %d bytes into a %d byte quota; want a refusal", written, limits.Disk)
	}
	// The bucket's own limit is the quota (the account's tier holds its
	// history too).
	if want := "maximum bytes exceeded"; !strings.Contains(err.Error(), want) {
		t.Errorf("put over the disk quota: got %q, want it to contain %q", err, want)
	}
}

// TestOverCommittedQuotas is the test DESIGN.md's trap asks for. A
// standalone nats-server adds up the accounts' JetStream quotas and gives
// no JetStream to the account that takes the sum past its max store; latch
// over-commits the max store (as `latch serve` does by default) so that
// quotas adding up to more than the disk still each get a working bucket.
func TestOverCommittedQuotas(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	free := int64(fs.Bavail) * int64(fs.Bsize)
	const persons = 6
	quota := (free / 4) &^ (1<<20 - 1) // whole MiB
	if quota < 1<<20 {
		t.Skipf("only %d bytes free", free)
	}
	if persons*quota <= free {
		t.Fatalf("test setup: %d persons × %d bytes do not exceed the %d bytes free", persons, quota, free)
	}
	limits := accounts.DefaultLimits()
	limits.Disk = quota
	s := latchtest.MustStart(t, latchtest.Options{Dir: dir, Limits: limits})
	for i := range persons {
		name := fmt.Sprintf("p%d", i)
		p := s.MustCreatePerson(t, name)
		if got, want := accountClaims(t, s, p.Account).Limits.JetStreamTieredLimits["R1"].DiskStorage, 2*quota+accounts.DeleteReserve(quota); got != want {
			t.Errorf("%s disk tier: got %d, want %d (the bucket, its history and the delete reserve)", name, got, want)
		}
		d := s.MustIssueDevice(t, name, "laptop")
		kv := mustRecords(t, s.MustConnect(t, d.CredsFile).Conn)
		mustPut(t, kv, "hello", name)
		wantValue(t, kv, "hello", name)
	}
}

// TestWithoutOverCommitJetStreamRunsOut shows the trap itself, so the test
// above keeps meaning something: with a max store that holds two persons'
// tiers (each twice the quota: the bucket and its history), the third
// person gets no JetStream, and CreatePerson undoes everything.
func TestWithoutOverCommitJetStreamRunsOut(t *testing.T) {
	t.Parallel()
	limits := accounts.DefaultLimits()
	s := latchtest.MustStart(t, latchtest.Options{Dir: t.TempDir(), Limits: limits, MaxStore: 4*limits.Disk + limits.Disk})
	ctx := testCtx(t)
	s.MustCreatePerson(t, "p0")
	s.MustCreatePerson(t, "p1")
	before, err := s.Claims.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Service.CreatePerson(ctx, accounts.NewPerson{Name: "p2"})
	if err == nil {
		t.Fatal("create a third person past the max store: got nil error, want JetStream refused")
	}
	for _, want := range []string{"jetstream not enabled", "nothing was kept"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got %q, want it to contain %q", err, want)
		}
	}
	_, err = s.Service.Person(ctx, "p2")
	wantKind(t, "Person(p2) after a failed create", err, accounts.ErrNotFound)
	after, err := s.Claims.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("resolver accounts after a failed create: got %d, want %d", len(after), len(before))
	}
}

// A disable racing a delete never writes the deleted person back: changes
// to one person are taken one at a time. (The window is narrow, a disable
// that reads the person before the delete marks it and writes it after
// the delete removed it, so a round rarely hits it; the rounds vary the
// moment the disable comes.)
func TestDeleteRacingDisable(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	const rounds = 6
	for i := range rounds {
		name := fmt.Sprintf("racer%d", i)
		s.MustCreatePerson(t, name)
		var wg sync.WaitGroup
		var delErr error
		wg.Add(2)
		go func() { defer wg.Done(); _, delErr = s.Service.DeletePerson(ctx, name) }()
		// The disable comes a moment after the delete began, by a varying
		// moment, so that it lands in each of the delete's steps.
		time.Sleep(time.Duration(i%6) * time.Millisecond)
		go func() { defer wg.Done(); s.Service.DisablePerson(ctx, name) }()
		wg.Wait()
		if delErr != nil {
			t.Fatalf("round %d: delete: %v", i, delErr)
		}
		if p, err := s.Service.Person(ctx, name); !errors.Is(err, accounts.ErrNotFound) {
			t.Fatalf("round %d: after a delete racing a disable, the person is back: %+v (%v)", i, p, err)
		}
	}
}

// A change of the device template reaches people who already exist:
// Refresh (run at every start) gives an account made with an older
// template today's, through the single writer, and audits it.
func TestRefreshBringsTheDeviceTemplateUpToDate(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	p := s.MustCreatePerson(t, "alice")
	signer, err := s.Operator.Signer()
	if err != nil {
		t.Fatal(err)
	}

	// As an older latch made it: a narrower template.
	tok, err := s.Claims.Lookup(ctx, p.Account)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := jwt.DecodeAccountClaims(tok)
	if err != nil {
		t.Fatal(err)
	}
	old := jwt.UserPermissionLimits{}
	old.Pub.Allow.Add("$KV.records.>")
	old.Sub.Allow.Add("_INBOX.>")
	for _, sc := range ac.SigningKeys {
		if us, ok := sc.(*jwt.UserScope); ok && us.Role == accounts.DeviceRole {
			us.Template = old
		}
	}
	// Made before the device API and the delete reserve.
	ac.Imports = nil
	tier := ac.Limits.JetStreamTieredLimits["R1"]
	tier.DiskStorage = 2 * accounts.DefaultLimits().Disk
	ac.Limits.JetStreamTieredLimits["R1"] = tier
	oldJWT, err := ac.Encode(signer)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Claims.Push(ctx, oldJWT); err != nil {
		t.Fatal(err)
	}

	// A service as a new start opens it, with no JWT cached.
	svc, err := accounts.Open(ctx, accounts.Config{Signer: signer, Directory: s.Claims, App: s.App,
		AdminAccount: s.Operator.AdminAccount.PublicKey, AppAccount: s.Operator.AppAccount.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	resigned, templated, err := svc.Refresh(ctx)
	if err != nil || resigned != 0 || templated != 1 {
		t.Fatalf("refresh: got %d re-signed, %d templated, %v; want 0, 1", resigned, templated, err)
	}
	tok, _ = s.Claims.Lookup(ctx, p.Account)
	ac, _ = jwt.DecodeAccountClaims(tok)
	want, _ := json.Marshal(accounts.DeviceTemplate(0))
	found := false
	for _, sc := range ac.SigningKeys {
		if us, ok := sc.(*jwt.UserScope); ok && us.Role == accounts.DeviceRole {
			found = true
			if got, _ := json.Marshal(us.Template); string(got) != string(want) {
				t.Errorf("device template after refresh:\n got %s\nwant %s", got, want)
			}
		}
	}
	if !found {
		t.Fatal("no device key after refresh")
	}
	if len(ac.Imports) != 2 || ac.Imports[0].Subject != operator.DeviceAPISubject || ac.Imports[0].Account != s.Operator.AppAccount.PublicKey || !ac.Imports[0].Share ||
		ac.Imports[1].Subject != operator.ReleaseSubjectPrefix+".>" || ac.Imports[1].Type != jwt.Stream || ac.Imports[1].Account != s.Operator.AppAccount.PublicKey {
		t.Errorf("imports after refresh: %d, want the device API from LATCH with share on and the release announcements", len(ac.Imports))
	}
	if got, want := ac.Limits.JetStreamTieredLimits["R1"].DiskStorage, 2*accounts.DefaultLimits().Disk+accounts.DeleteReserve(accounts.DefaultLimits().Disk); got != want {
		t.Errorf("disk tier after refresh: %d, want %d", got, want)
	}
	if acts, _ := auditActions(t, s, p.Account, 10); !slices.Contains(acts, accounts.ActionAccountTemplate) {
		t.Errorf("audit: got %v, want an %s entry", acts, accounts.ActionAccountTemplate)
	}
	// Nothing more to do the second time.
	if r, n, err := svc.Refresh(ctx); err != nil || r != 0 || n != 0 {
		t.Errorf("second refresh: got %d, %d, %v; want nothing done", r, n, err)
	}
}

// Disable, delete and enable of one person racing each other leave the
// person either gone everywhere or whole everywhere, and reconciliation
// at start keeps it so.
func TestRacingLifecycleStaysConsistent(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	const rounds = 3
	for i := range rounds {
		name := fmt.Sprintf("life%d", i)
		s.MustCreatePerson(t, name)
		var wg sync.WaitGroup
		for j, op := range []func(context.Context, string) (accounts.Person, error){s.Service.DisablePerson, s.Service.DeletePerson, s.Service.EnablePerson} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration((i+j)%3) * time.Millisecond)
				op(ctx, name)
			}()
		}
		wg.Wait()
	}
	check := func(when string) {
		for i := range rounds {
			name := fmt.Sprintf("life%d", i)
			p, err := s.Service.Person(ctx, name)
			if errors.Is(err, accounts.ErrNotFound) {
				continue // gone: checked through the resolver below
			}
			if err != nil {
				t.Fatal(err)
			}
			tok, err := s.Claims.Lookup(ctx, p.Account)
			if err != nil || tok == "" {
				t.Errorf("%s: %s is %s but the resolver has no JWT (%v)", when, name, p.Status, err)
				continue
			}
			ac, _ := jwt.DecodeAccountClaims(tok)
			if _, all := ac.Revocations[jwt.All]; all {
				t.Errorf("%s: %s is %s with a JWT that revokes every user", when, name, p.Status)
			}
			if p.Status != accounts.StatusActive && p.Status != accounts.StatusDisabled {
				t.Errorf("%s: %s is %s", when, name, p.Status)
			}
		}
	}
	check("after the races")
	if err := s.Service.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	check("after reconciling")
}

// A delete that stopped half way (its tombstone written, the person still
// there) is finished at start, not left as a person with no account.
func TestReconcileFinishesAHalfDelete(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	p := s.MustCreatePerson(t, "half")
	kv := mustKV(t, s, accounts.TombstonesBucket)
	if _, err := kv.Put(ctx, p.Account, []byte(`{"account":"`+p.Account+`","name":"half"}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Service.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := s.Service.Person(ctx, "half")
	wantKind(t, "the half-deleted person after reconciling", err, accounts.ErrNotFound)
	if tok, err := s.Claims.Lookup(ctx, p.Account); err != nil || tok != "" {
		t.Errorf("the half-deleted person's JWT after reconciling: %d bytes, %v", len(tok), err)
	}
}
