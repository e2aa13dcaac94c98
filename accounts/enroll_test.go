package accounts_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// deviceKey is a key a device made itself: the test keeps the seed, as
// the device would, and hands the service only the public key.
type deviceKey struct {
	pub  string
	seed []byte
}

func newDeviceKey(t testing.TB) deviceKey {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	return deviceKey{pub: pub, seed: seed}
}

func mustStartEnrollment(t testing.TB, s *latchtest.Stack, k deviceKey, name string) (string, accounts.Enrollment) {
	t.Helper()
	code, e, err := s.Service.StartEnrollment(webCtx(t), accounts.EnrollRequest{
		PublicKey: k.pub, Name: name, Platform: "linux/amd64", Address: "192.0.2.7", UserAgent: "latch-client/0.1",
	})
	if err != nil {
		t.Fatalf("start enrollment of %s: %v", name, err)
	}
	return code, e
}

// lowerDashed is a user code as a person might type it.
func lowerDashed(code string) string { return strings.ToLower(accounts.FormatUserCode(code)) }

func TestEnrollApproveAndPoll(t *testing.T) {
	s := webStack(t)
	ctx := webCtx(t)
	alice := s.MustCreatePerson(t, "alice")
	k := newDeviceKey(t)

	before := time.Now()
	deviceCode, e := mustStartEnrollment(t, s, k, "laptop")
	if len(deviceCode) != 43 {
		t.Errorf("device code %q: want 43 characters of base64url (32 bytes)", deviceCode)
	}
	if len(e.UserCode) != 8 || strings.Trim(e.UserCode, "BCDFGHJKLMNPQRSTVWXZ") != "" {
		t.Errorf("user code %q: want 8 letters of BCDFGHJKLMNPQRSTVWXZ", e.UserCode)
	}
	if e.Status != accounts.EnrollPending || e.Interval != accounts.EnrollInterval || e.PublicKey != k.pub ||
		e.Expires.Before(before.Add(accounts.EnrollTTL)) || e.Expires.After(time.Now().Add(accounts.EnrollTTL)) {
		t.Errorf("new enrollment: got %+v", e)
	}

	for _, typed := range []string{e.UserCode, lowerDashed(e.UserCode), " " + e.UserCode[:4] + " " + e.UserCode[4:] + " "} {
		got, err := s.Service.PendingEnrollment(ctx, typed)
		if err != nil {
			t.Fatalf("pending enrollment by %q: %v", typed, err)
		}
		if got.UserCode != e.UserCode || got.Name != "laptop" || got.Platform != "linux/amd64" || got.Address != "192.0.2.7" || got.UserAgent != "latch-client/0.1" {
			t.Errorf("pending enrollment by %q: got %+v", typed, got)
		}
	}

	_, err := s.Service.PollEnrollment(ctx, deviceCode)
	wantErrIs(t, "first poll", err, accounts.ErrAuthorizationPending)
	slow, err := s.Service.PollEnrollment(ctx, deviceCode)
	wantErrIs(t, "second poll at once", err, accounts.ErrSlowDown)
	if slow.Interval != accounts.EnrollInterval+5*time.Second {
		t.Errorf("interval after slow_down: got %s, want %s", slow.Interval, accounts.EnrollInterval+5*time.Second)
	}
	if code := accounts.PollErrorCode(err); code != "slow_down" {
		t.Errorf("RFC 8628 code of slow_down: got %q", code)
	}
	_, err = s.Service.PollEnrollment(ctx, deviceCode)
	wantErrIs(t, "third poll at once", err, accounts.ErrSlowDown)
	if e, _ := s.Service.PendingEnrollment(ctx, e.UserCode); e.Interval != accounts.EnrollInterval+10*time.Second {
		t.Errorf("interval after two slow_downs: got %s, want it kept grown", e.Interval)
	}

	d, err := s.Service.ApproveEnrollment(ctx, lowerDashed(e.UserCode), "alice")
	if err != nil {
		t.Fatalf("approve: %v", err)
	}
	if d.PublicKey != k.pub || d.Name != "laptop" || d.Enrolled != accounts.EnrolledEnrolled || d.Platform != "linux/amd64" || d.Account != alice.Account {
		t.Errorf("approved device: got %+v", d)
	}
	_, err = s.Service.PendingEnrollment(ctx, e.UserCode)
	wantErrIs(t, "pending enrollment after approval", err, accounts.ErrNotFound)
	_, err = s.Service.ApproveEnrollment(ctx, e.UserCode, "alice")
	wantErrIs(t, "approve twice", err, accounts.ErrNotFound)

	// The JWT is handed out once, even to a device that polls too soon.
	got, err := s.Service.PollEnrollment(ctx, deviceCode)
	if err != nil {
		t.Fatalf("poll after approval: %v", err)
	}
	if got.Status != accounts.EnrollApproved || got.AccountName != "alice" || got.Account != alice.Account || got.DeviceExpires == nil {
		t.Errorf("approved enrollment: got %+v", got)
	}
	uc, err := jwt.DecodeUserClaims(got.JWT)
	if err != nil {
		t.Fatalf("decode the device's JWT: %v", err)
	}
	if uc.Subject != k.pub || uc.IssuerAccount != alice.Account {
		t.Errorf("device JWT: subject %s, issuer account %s; want %s, %s", uc.Subject, uc.IssuerAccount, k.pub, alice.Account)
	}
	_, err = s.Service.PollEnrollment(ctx, deviceCode)
	wantErrIs(t, "poll after the JWT was handed out", err, accounts.ErrExpiredToken)

	// The device connects with the JWT and the seed it never sent.
	nc, err := nats.Connect(s.Server.ClientURL(), nats.UserJWTAndSeed(got.JWT, string(k.seed)), nats.NoReconnect())
	if err != nil {
		t.Fatalf("connect as the enrolled device: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, accounts.RecordsBucket)
	if err != nil {
		t.Fatalf("the device opens its records bucket: %v", err)
	}
	if _, err := kv.Put(ctx, "hello", []byte("world")); err != nil {
		t.Fatalf("the device writes a record: %v", err)
	}

	acts, events := auditActions(t, s, alice.Account, 100)
	if !slices.Equal(acts, []accounts.Action{"account.create", "device.issue", "enroll.approve"}) {
		t.Errorf("alice's audit trail: got %v", acts)
	}
	if last := events[len(events)-1]; last.Device != k.pub || !strings.Contains(last.Detail, "192.0.2.7") || last.Actor != "tester" {
		t.Errorf("enroll.approve entry: got %+v", last)
	}
}

func TestEnrollDeny(t *testing.T) {
	s := webStack(t)
	ctx := webCtx(t)
	alice := s.MustCreatePerson(t, "alice")
	k := newDeviceKey(t)
	deviceCode, e := mustStartEnrollment(t, s, k, "phone")

	err := s.Service.DenyEnrollment(ctx, e.UserCode, "nobody")
	wantErrIs(t, "deny for nobody", err, accounts.ErrNotFound)
	if err := s.Service.DenyEnrollment(ctx, lowerDashed(e.UserCode), "alice"); err != nil {
		t.Fatalf("deny: %v", err)
	}
	_, err = s.Service.ApproveEnrollment(ctx, e.UserCode, "alice")
	wantErrIs(t, "approve after deny", err, accounts.ErrNotFound)
	_, err = s.Service.PollEnrollment(ctx, deviceCode)
	wantErrIs(t, "poll after deny", err, accounts.ErrAccessDenied)
	if code := accounts.PollErrorCode(err); code != "access_denied" {
		t.Errorf("RFC 8628 code: got %q, want access_denied", code)
	}
	_, err = s.Service.PollEnrollment(ctx, deviceCode)
	wantErrIs(t, "poll after the denial was told", err, accounts.ErrExpiredToken)
	if ds, _ := s.Service.Devices(ctx, "alice"); len(ds) != 0 {
		t.Errorf("devices after a denial: got %v, want none", ds)
	}
	if acts, _ := auditActions(t, s, alice.Account, 100); !slices.Equal(acts, []accounts.Action{"account.create", "enroll.deny"}) {
		t.Errorf("alice's audit trail: got %v", acts)
	}
}

func TestStartEnrollmentRefuses(t *testing.T) {
	s := webStack(t)
	ctx := webCtx(t)
	s.MustCreatePerson(t, "alice")
	issued := s.MustIssueDevice(t, "alice", "old laptop")
	revoked := s.MustIssueDevice(t, "alice", "lost phone")
	if _, err := s.Service.RevokeDevice(ctx, "alice", revoked.PublicKey); err != nil {
		t.Fatal(err)
	}
	acct, _ := nkeys.CreateAccount()
	acctPub, _ := acct.PublicKey()
	userSeed := string(newDeviceKey(t).seed)
	good := newDeviceKey(t).pub

	tests := []struct {
		name string
		r    accounts.EnrollRequest
		want error
	}{
		{"no key", accounts.EnrollRequest{Name: "x"}, accounts.ErrInvalid},
		{"garbage key", accounts.EnrollRequest{PublicKey: "not-a-key", Name: "x"}, accounts.ErrInvalid},
		{"account key", accounts.EnrollRequest{PublicKey: acctPub, Name: "x"}, accounts.ErrInvalid},
		{"a seed", accounts.EnrollRequest{PublicKey: userSeed, Name: "x"}, accounts.ErrInvalid},
		{"no name", accounts.EnrollRequest{PublicKey: good}, accounts.ErrInvalid},
		{"name with a newline", accounts.EnrollRequest{PublicKey: good, Name: "a\nb"}, accounts.ErrInvalid},
		{"platform too long", accounts.EnrollRequest{PublicKey: good, Name: "x", Platform: strings.Repeat("p", 65)}, accounts.ErrInvalid},
		{"key of a device", accounts.EnrollRequest{PublicKey: issued.PublicKey, Name: "x"}, accounts.ErrExists},
		{"key of a revoked device", accounts.EnrollRequest{PublicKey: revoked.PublicKey, Name: "x"}, accounts.ErrRevoked},
	}
	for _, tt := range tests {
		_, _, err := s.Service.StartEnrollment(ctx, tt.r)
		wantErrIs(t, tt.name, err, tt.want)
	}
	var ve *accounts.ValidationError
	_, _, err := s.Service.StartEnrollment(ctx, accounts.EnrollRequest{PublicKey: acctPub, Name: "x"})
	if !errors.As(err, &ve) || ve.Problems["public_key"] == "" {
		t.Errorf("account key: got %v, want a validation error about public_key", err)
	}
}

func TestEnrollUnknownAndExpired(t *testing.T) {
	s := webStack(t)
	ctx := webCtx(t)
	s.MustCreatePerson(t, "alice")

	for _, code := range []string{"", "nonsense", "Zm9vYmFy"} {
		_, err := s.Service.PollEnrollment(ctx, code)
		wantErrIs(t, "poll with device code "+code, err, accounts.ErrExpiredToken)
	}
	for _, code := range []string{"", "BCDF-GHJK", "AEIOU", "bcdf-ghjk-lmnp"} {
		_, err := s.Service.PendingEnrollment(ctx, code)
		wantErrIs(t, "pending enrollment "+code, err, accounts.ErrNotFound)
	}
	_, err := s.Service.PendingEnrollment(ctx, "bcdf ghjk")
	if want := "no pending enrollment with code BCDF-GHJK; check the code the device shows, or start again on the device"; err == nil || err.Error() != want {
		t.Errorf("unknown code: got %v, want %q", err, want)
	}

	// Age an enrollment by rewriting its expiry, as time would.
	deviceCode, e := mustStartEnrollment(t, s, newDeviceKey(t), "tablet")
	js, err := jetstream.New(s.App)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, accounts.EnrollBucket)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte(deviceCode))
	key := "d." + hex.EncodeToString(h[:])
	entry, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatalf("the enrollment under the hash of its device code: %v", err)
	}
	if strings.Contains(string(entry.Value()), deviceCode) {
		t.Fatal("the enrollment record holds the device code")
	}
	var stored accounts.Enrollment
	if err := json.Unmarshal(entry.Value(), &stored); err != nil {
		t.Fatal(err)
	}
	stored.Expires = time.Now().Add(-time.Second)
	b, _ := json.Marshal(stored)
	if _, err := kv.Put(ctx, key, b); err != nil {
		t.Fatal(err)
	}
	_, err = s.Service.PendingEnrollment(ctx, e.UserCode)
	wantErrIs(t, "pending enrollment when expired", err, accounts.ErrNotFound)
	_, err = s.Service.ApproveEnrollment(ctx, e.UserCode, "alice")
	wantErrIs(t, "approve when expired", err, accounts.ErrNotFound)
	err = s.Service.DenyEnrollment(ctx, e.UserCode, "alice")
	wantErrIs(t, "deny when expired", err, accounts.ErrNotFound)
	_, err = s.Service.PollEnrollment(ctx, deviceCode)
	wantErrIs(t, "poll when expired", err, accounts.ErrExpiredToken)
	if code := accounts.PollErrorCode(err); code != "expired_token" {
		t.Errorf("RFC 8628 code: got %q, want expired_token", code)
	}
	if _, err := kv.Get(ctx, "u."+e.UserCode); err == nil {
		t.Error("an expired enrollment keeps its user code")
	}
}

// An approval that cannot go through (the device's name is taken) leaves
// the enrollment pending, to be approved once that is fixed.
func TestApproveEnrollmentNameTaken(t *testing.T) {
	s := webStack(t)
	ctx := webCtx(t)
	s.MustCreatePerson(t, "alice")
	old := s.MustIssueDevice(t, "alice", "laptop")
	deviceCode, e := mustStartEnrollment(t, s, newDeviceKey(t), "laptop")

	_, err := s.Service.ApproveEnrollment(ctx, e.UserCode, "alice")
	wantErrIs(t, "approve a device whose name is taken", err, accounts.ErrExists)
	if _, err := s.Service.PendingEnrollment(ctx, e.UserCode); err != nil {
		t.Fatalf("the enrollment after a failed approval: %v; want it pending", err)
	}
	_, err = s.Service.PollEnrollment(ctx, deviceCode)
	wantErrIs(t, "poll after a failed approval", err, accounts.ErrAuthorizationPending)

	if _, err := s.Service.RevokeDevice(ctx, "alice", old.PublicKey); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Service.ApproveEnrollment(ctx, e.UserCode, "alice"); err != nil {
		t.Fatalf("approve once the name is free: %v", err)
	}
	if got, err := s.Service.PollEnrollment(ctx, deviceCode); err != nil || got.JWT == "" {
		t.Fatalf("poll: got %+v, %v; want the JWT", got, err)
	}
}

// Two enrollments of one key: once one is approved, in any account, the
// other is denied when someone tries to approve it.
func TestEnrollSameKeyTwice(t *testing.T) {
	s := webStack(t)
	ctx := webCtx(t)
	s.MustCreatePerson(t, "alice")
	s.MustCreatePerson(t, "bob")
	k := newDeviceKey(t)
	_, first := mustStartEnrollment(t, s, k, "laptop")
	secondCode, second := mustStartEnrollment(t, s, k, "laptop")
	if _, err := s.Service.ApproveEnrollment(ctx, first.UserCode, "alice"); err != nil {
		t.Fatal(err)
	}
	_, err := s.Service.ApproveEnrollment(ctx, second.UserCode, "bob")
	wantErrIs(t, "approve a key enrolled meanwhile", err, accounts.ErrExists)
	_, err = s.Service.PollEnrollment(ctx, secondCode)
	wantErrIs(t, "poll of the refused enrollment", err, accounts.ErrAccessDenied)
	_, _, err = s.Service.StartEnrollment(ctx, accounts.EnrollRequest{PublicKey: k.pub, Name: "laptop"})
	wantErrIs(t, "start with an enrolled key", err, accounts.ErrExists)
}

// An approval and a denial at once: exactly one of them wins, and the
// device hears that one.
func TestApproveDenyRace(t *testing.T) {
	s := webStack(t)
	ctx := webCtx(t)
	s.MustCreatePerson(t, "alice")
	for round := range 6 {
		k := newDeviceKey(t)
		deviceCode, e := mustStartEnrollment(t, s, k, "device "+string(rune('a'+round)))
		var approveErr, denyErr error
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Go(func() {
			<-start
			_, approveErr = s.Service.ApproveEnrollment(ctx, e.UserCode, "alice")
		})
		wg.Go(func() {
			<-start
			denyErr = s.Service.DenyEnrollment(ctx, e.UserCode, "alice")
		})
		close(start)
		wg.Wait()
		if (approveErr == nil) == (denyErr == nil) {
			t.Fatalf("round %d: approve %v, deny %v; want exactly one to succeed", round, approveErr, denyErr)
		}
		t.Logf("round %d: approve %v, deny %v", round, approveErr, denyErr)
		loser := approveErr
		if loser == nil {
			loser = denyErr
		}
		wantErrIs(t, "the losing decision", loser, accounts.ErrNotFound)
		got, err := s.Service.PollEnrollment(ctx, deviceCode)
		if approveErr == nil {
			if err != nil || got.JWT == "" {
				t.Fatalf("round %d: approved, but the poll gave %v", round, err)
			}
		} else {
			wantErrIs(t, "poll after the denial won", err, accounts.ErrAccessDenied)
			if _, err := s.Service.Device(ctx, "alice", k.pub); !errors.Is(err, accounts.ErrNotFound) {
				t.Fatalf("round %d: denied, but the device exists (%v)", round, err)
			}
		}
	}
}

// Of two polls at once after approval, one gets the JWT.
func TestPollHandsOutOnce(t *testing.T) {
	s := webStack(t)
	ctx := webCtx(t)
	s.MustCreatePerson(t, "alice")
	deviceCode, e := mustStartEnrollment(t, s, newDeviceKey(t), "laptop")
	if _, err := s.Service.ApproveEnrollment(ctx, e.UserCode, "alice"); err != nil {
		t.Fatal(err)
	}
	const n = 8
	jwts := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var got accounts.Enrollment
			got, errs[i] = s.Service.PollEnrollment(ctx, deviceCode)
			jwts[i] = got.JWT
		})
	}
	wg.Wait()
	handed := 0
	for i := range n {
		if errs[i] == nil && jwts[i] != "" {
			handed++
		} else {
			wantErrIs(t, "a losing poll", errs[i], accounts.ErrExpiredToken)
		}
	}
	if handed != 1 {
		t.Fatalf("the JWT was handed out %d times, want once", handed)
	}
}

func TestUserCodes(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"WDJBMJHT", "WDJBMJHT"},
		{"wdjb-mjht", "WDJBMJHT"},
		{" wdjb mjht\n", "WDJBMJHT"},
		{"W.D.J.B–M_J_H_T", "WDJBMJHT"},
		{"AEIOU0123", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := accounts.NormalizeUserCode(tt.in); got != tt.want {
			t.Errorf("NormalizeUserCode(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := accounts.FormatUserCode("WDJBMJHT"); got != "WDJB-MJHT" {
		t.Errorf("FormatUserCode: got %q, want WDJB-MJHT", got)
	}
}

// The admin service approves an enrollment for the CLI.
func TestAdminApproveDevice(t *testing.T) {
	s := webStack(t)
	ctx := webCtx(t)
	s.MustCreatePerson(t, "alice")
	admin := serveAdmin(t, s)

	k := newDeviceKey(t)
	deviceCode, e := mustStartEnrollment(t, s, k, "laptop")
	_, err := accounts.EndpointDeviceApprove.Call(ctx, admin, accounts.DeviceApproveRequest{Account: "bob", Code: e.UserCode})
	wantErrIs(t, "approve for nobody", err, accounts.ErrNotFound)
	_, err = accounts.EndpointDeviceApprove.Call(ctx, admin, accounts.DeviceApproveRequest{Account: "alice", Code: "BCDF-GHJK"})
	wantErrIs(t, "approve an unknown code", err, accounts.ErrNotFound)
	d, err := accounts.EndpointDeviceApprove.Call(ctx, admin, accounts.DeviceApproveRequest{Account: "alice", Code: lowerDashed(e.UserCode)})
	if err != nil {
		t.Fatalf("approve through the admin service: %v", err)
	}
	if d.PublicKey != k.pub || d.AccountName != "alice" || d.Enrolled != accounts.EnrolledEnrolled {
		t.Errorf("approved device: got %+v", d)
	}
	if got, err := s.Service.PollEnrollment(ctx, deviceCode); err != nil || got.JWT == "" {
		t.Errorf("poll after an admin approval: %v", err)
	}
	es, _ := s.Service.Audit(ctx, 1)
	if len(es) != 1 || es[0].Action != accounts.ActionEnrollApprove || es[0].Actor != "admin:admin" || es[0].ActorKey != s.Operator.FirstAdmin {
		t.Errorf("last audit entry: got %+v, want enroll.approve by admin:admin with the key of admin.creds", es)
	}
}
