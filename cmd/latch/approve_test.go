package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/operator"
	"github.com/latch-dev/latch/resolver"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// sideService opens a second account service on a running server's data
// folder and NATS, as another node would: it reaches what the CLI cannot,
// such as starting an enrollment the way the web layer does.
func sideService(t *testing.T, s *served) *accounts.Service {
	t.Helper()
	op, err := operator.Load(s.data)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := op.Signer()
	if err != nil {
		t.Fatal(err)
	}
	connect := func(a operator.AccountJWT) *nats.Conn {
		tok, seed, err := op.MintUser(a, "test")
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(s.nats, nats.UserJWTAndSeed(tok, string(seed)), nats.NoReconnect())
		if err != nil {
			t.Fatalf("connect to %s as %s: %v", s.nats, a.Name, err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	sys, app := connect(op.SystemAccount), connect(op.AppAccount)
	svc, err := accounts.Open(context.Background(), accounts.Config{
		Signer: signer, Directory: resolver.NewClaims(sys, 10*time.Second), App: app,
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func TestDeviceApprove(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "")
	ctx := context.Background()
	account := strings.TrimSpace(s.mustAdmin(t, "account", "add", "alice").stdout)
	svc := sideService(t, s)

	// The device makes its key and starts enrolling; the seed stays here.
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	deviceCode, e, err := svc.StartEnrollment(ctx, accounts.EnrollRequest{PublicKey: pub, Name: "laptop", Platform: "linux/arm64"})
	if err != nil {
		t.Fatalf("start enrollment: %v", err)
	}

	r := s.admin(t, "device", "approve", "--account", "bob", e.UserCode)
	if r.err == nil || !strings.Contains(r.err.Error(), `no account named "bob"`) {
		t.Errorf("approve for nobody: got %v", r.err)
	}
	r = s.admin(t, "device", "approve", "--account", "alice")
	var u usageError
	if !errors.As(r.err, &u) {
		t.Errorf("approve without a code: got %v, want a usage error", r.err)
	}

	typed := strings.ToLower(accounts.FormatUserCode(e.UserCode))
	r = s.mustAdmin(t, "device", "approve", typed, "--account", "alice")
	if got := strings.TrimSpace(r.stdout); got != pub {
		t.Fatalf("device approve printed %q, want the device's key %s", got, pub)
	}
	if !strings.Contains(r.stderr, "approved laptop") {
		t.Errorf("device approve said %q on stderr", r.stderr)
	}

	got, err := svc.PollEnrollment(ctx, deviceCode)
	if err != nil {
		t.Fatalf("poll after the approval: %v", err)
	}
	uc, err := jwt.DecodeUserClaims(got.JWT)
	if err != nil || uc.Subject != pub || uc.IssuerAccount != account {
		t.Fatalf("the device's JWT: %v; subject %s, issuer account %s", err, uc.Subject, uc.IssuerAccount)
	}
	nc, err := nats.Connect(s.nats, nats.UserJWTAndSeed(got.JWT, string(seed)), nats.NoReconnect())
	if err != nil {
		t.Fatalf("the enrolled device connects: %v", err)
	}
	nc.Close()

	r = s.admin(t, "device", "approve", "--account", "alice", e.UserCode)
	if r.err == nil || !strings.Contains(r.err.Error(), "no pending enrollment with code "+accounts.FormatUserCode(e.UserCode)) {
		t.Errorf("approve twice: got %v", r.err)
	}
	r = s.mustAdmin(t, "device", "ls", "--account", "alice", "--json")
	var ds []accounts.Device
	if err := json.Unmarshal([]byte(r.stdout), &ds); err != nil || len(ds) != 1 || ds[0].Enrolled != accounts.EnrolledEnrolled {
		t.Errorf("devices after the approval: got %s (%v)", r.stdout, err)
	}
}

func TestInviteCreate(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "")
	ctx := context.Background()
	svc := sideService(t, s)

	r := s.mustAdmin(t, "invite", "create", "--admin")
	link := strings.TrimSpace(r.stdout)
	_, token, ok := strings.Cut(link, "/invite/")
	if !ok || len(token) != 43 {
		t.Fatalf("invite create printed %q, want a link ending in /invite/TOKEN", r.stdout)
	}
	inv, err := svc.Invite(ctx, token)
	if err != nil || !inv.Admin {
		t.Fatalf("the printed invite: got %+v, %v; want an admin invite", inv, err)
	}

	r = s.mustAdmin(t, "invite", "create", "--json")
	var reply accounts.InviteCreateReply
	if err := json.Unmarshal([]byte(r.stdout), &reply); err != nil {
		t.Fatalf("invite create --json: %v\n%s", err, r.stdout)
	}
	if reply.Invite.Admin || reply.Token == "" || (reply.Link != "" && !strings.HasSuffix(reply.Link, "/invite/"+reply.Token)) {
		t.Errorf("invite create --json: got %+v", reply)
	}
	if _, err := svc.ConsumeInvite(ctx, reply.Token); err != nil {
		t.Errorf("use the invite: %v", err)
	}

	// A person made here is told how to get a passkey, and gets a link.
	r = s.mustAdmin(t, "account", "add", "carol")
	if !strings.Contains(r.stderr, "latch invite create --for carol") {
		t.Errorf("account add says nothing of a passkey: %q", r.stderr)
	}
	r = s.mustAdmin(t, "invite", "create", "--for", "carol")
	_, forToken, _ := strings.Cut(strings.TrimSpace(r.stdout), "/invite/")
	if inv, err := svc.Invite(ctx, forToken); err != nil || inv.For != "carol" || inv.Recover {
		t.Fatalf("invite for carol: %+v, %v", inv, err)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--for", "carol", "--admin"}, 2, "do not go together"},
		{[]string{"--recover"}, 2, "--recover goes with --for"},
		{[]string{"--for", "nobody"}, 1, "nobody"},
		{[]string{"--for", "Bad Name"}, 2, "--for"},
	} {
		r := s.admin(t, append([]string{"invite", "create"}, c.args...)...)
		if exitCode(r.err) != c.code || r.err == nil || !strings.Contains(r.err.Error(), c.want) {
			t.Errorf("invite create %v: exit %d, %v; want exit %d saying %q", c.args, exitCode(r.err), r.err, c.code, c.want)
		}
	}
	// Carol with a passkey: only a recovery link, with a warning.
	cred := json.RawMessage(`{"publicKey":"pQECAyYgASFYIA","authenticator":{"signCount":0}}`)
	if _, err := svc.AddPasskey(ctx, accounts.Passkey{ID: "Y2Fyb2wtcGFzc2tleS0x", Person: "carol", Credential: cred}); err != nil {
		t.Fatal(err)
	}
	if r := s.admin(t, "invite", "create", "--for", "carol"); exitCode(r.err) != 1 || !strings.Contains(r.err.Error(), "--recover") {
		t.Errorf("invite for carol, who has a passkey: %v, want refused naming --recover", r.err)
	}
	r = s.mustAdmin(t, "invite", "create", "--for", "carol", "--recover")
	if !strings.Contains(r.stderr, "whoever opens this link can sign in as carol") {
		t.Errorf("a recovery link without a warning: %q", r.stderr)
	}

	// ls lists what still works; revoke ends one.
	var invs []accounts.Invite
	decodeJSON(t, s.mustAdmin(t, "invite", "ls", "--json"), &invs)
	if len(invs) != 4 {
		t.Fatalf("invite ls: %+v, want the setup link, the admin invite, carol's and carol's recovery", invs)
	}
	ls := s.mustAdmin(t, "invite", "ls").stdout
	for _, want := range []string{"setup", "passkey for carol", "recover carol", "admin"} {
		if !strings.Contains(ls, want) {
			t.Errorf("invite ls lacks %q:\n%s", want, ls)
		}
	}
	forInv, _ := svc.Invite(ctx, forToken)
	s.mustAdmin(t, "invite", "revoke", forInv.ID)
	if _, err := svc.Invite(ctx, forToken); !errors.Is(err, accounts.ErrNotFound) {
		t.Errorf("the revoked invite: %v, want not found", err)
	}
	if r := s.admin(t, "invite", "revoke", forInv.ID); exitCode(r.err) != 1 {
		t.Errorf("revoke it again: %v, want exit 1", r.err)
	}
}
