package accounts_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/keys"
	"github.com/latch-dev/latch/operator"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"
)

// The admin service answers admin creds (users of LATCH_ADMIN) only, and
// names the caller by the key the server saw, whatever the caller wrote.
func TestAdminServiceKnowsItsCaller(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	serveAdmin(t, s)

	// A user of LATCH itself (as admin.creds used to be) is refused.
	_, err := accounts.EndpointAccountList.Call(ctx, accounts.NewAdminClient(s.App), accounts.NoRequest{})
	wantKind(t, "a LATCH user calling the admin service", err, accounts.ErrForbidden)

	// admin.creds, with a Nats-Request-Info of its own making and the old
	// actor header: the audit trail has the real key and name.
	admin := s.MustAdminConn(t)
	msg := nats.NewMsg(accounts.EndpointAccountAdd.Subject())
	msg.Data = []byte(`{"name":"alice"}`)
	msg.Header.Set("Nats-Request-Info", `{"acc":"`+s.Operator.AdminAccount.PublicKey+`","user":"UFORGED","name_tag":"root"}`)
	msg.Header.Set("Latch-Actor", "root-admin (via web)")
	reply, err := admin.RequestMsg(msg, 10*time.Second)
	if err != nil || reply.Header.Get("Nats-Service-Error-Code") != "" {
		t.Fatalf("account add with forged headers: %v %v %s", err, reply.Header, reply.Data)
	}
	events, err := s.Service.Audit(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	last := events[len(events)-1]
	if last.Action != accounts.ActionAccountCreate || last.Actor != "admin:admin" || last.ActorKey != s.Operator.FirstAdmin {
		t.Errorf("audit entry: got actor %q key %q, want admin:admin with the key of admin.creds %s", last.Actor, last.ActorKey, s.Operator.FirstAdmin)
	}
}

// Each admin gets creds of their own, made from a key the server never
// sees the seed of; revoking them closes their connections and leaves the
// other admins be.
func TestAdminCreds(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	root := serveAdmin(t, s)

	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	r, err := accounts.EndpointAdminCredsIssue.Call(ctx, root, accounts.AdminCredsRequest{Name: "bob", PublicKey: pub})
	if err != nil {
		t.Fatalf("issue admin creds: %v", err)
	}
	if r.Name != "bob" || r.PublicKey != pub || r.Revoked() {
		t.Errorf("issued: got %+v", r.AdminCreds)
	}
	_, err = accounts.EndpointAdminCredsIssue.Call(ctx, root, accounts.AdminCredsRequest{Name: "bob", PublicKey: mustUserKey(t)})
	wantKind(t, "a second live bob", err, accounts.ErrExists)
	_, err = accounts.EndpointAdminCredsIssue.Call(ctx, root, accounts.AdminCredsRequest{Name: "carol", PublicKey: pub})
	wantKind(t, "bob's key again", err, accounts.ErrExists)
	_, err = accounts.EndpointAdminCredsIssue.Call(ctx, root, accounts.AdminCredsRequest{Name: "Bad Name", PublicKey: mustUserKey(t)})
	wantKind(t, "a bad name", err, accounts.ErrInvalid)
	_, err = accounts.EndpointAdminCredsIssue.Call(ctx, root, accounts.AdminCredsRequest{Name: "dave", PublicKey: "not-a-key"})
	wantKind(t, "a bad key", err, accounts.ErrInvalid)

	creds, err := keys.FormatCreds(r.JWT, seed)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "bob.creds")
	if err := os.WriteFile(file, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	bob := s.MustConnect(t, file, nats.CustomInboxPrefix(operator.AdminInboxPrefix(pub)))
	if _, err := accounts.EndpointInviteCreate.Call(ctx, accounts.NewAdminClient(bob.Conn), accounts.InviteCreateRequest{}); err != nil {
		t.Fatalf("bob creates an invite: %v", err)
	}
	events, _ := s.Service.Audit(ctx, 1)
	if e := events[0]; e.Actor != "admin:bob" || e.ActorKey != pub {
		t.Errorf("bob's audit entry: got %q %q, want admin:bob %s", e.Actor, e.ActorKey, pub)
	}

	list, err := accounts.EndpointAdminCredsList.Call(ctx, root, accounts.NoRequest{})
	if err != nil || len(list) != 2 || list[0].Name != operator.FirstAdminName || list[1].Name != "bob" {
		t.Fatalf("admin creds ls: got %+v, %v", list, err)
	}

	revoked, err := accounts.EndpointAdminCredsRevoke.Call(ctx, root, accounts.AdminCredsRequest{Name: "bob"})
	if err != nil || !revoked.Revoked() {
		t.Fatalf("revoke bob: got %+v, %v", revoked, err)
	}
	wantClosed(t, bob, "revoking bob's admin creds")
	wantConnectRefused(t, s, file, nats.ErrAuthorization)
	if _, err := accounts.EndpointAccountList.Call(ctx, root, accounts.NoRequest{}); err != nil {
		t.Errorf("the first admin after bob's revocation: %v", err)
	}
	_, err = accounts.EndpointAdminCredsRevoke.Call(ctx, root, accounts.AdminCredsRequest{Name: "bob"})
	wantKind(t, "revoke bob again", err, accounts.ErrNotFound)
	// A new bob may be issued once the old one is revoked.
	if _, err := accounts.EndpointAdminCredsIssue.Call(ctx, root, accounts.AdminCredsRequest{Name: "bob", PublicKey: mustUserKey(t)}); err != nil {
		t.Errorf("a new bob: %v", err)
	}
}

// Admin creds see nothing of LATCH: no subject but the admin service's
// own replies reaches them.
func TestAdminCredsSeeNothingOfLatch(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	admin := s.MustAdminConn(t)
	errs := make(chan error, 4)
	nc, err := nats.Connect(s.Server.ClientURL(), nats.UserCredentials(filepath.Join(s.Dir, operator.AdminCredsFile)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// Neither everything nor every inbox: an admin receives replies on
	// its own inbox prefix only, so no admin reads another's (device
	// creds among them).
	for _, subj := range []string{">", "_INBOX.>"} {
		if _, err := nc.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errs:
			if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), `"`+subj+`"`) {
				t.Errorf("subscribe to %s with admin creds: got %v, want a permissions violation", subj, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("subscribe to %s with admin creds: no permissions violation", subj)
		}
	}
	inbox, err := admin.SubscribeSync(operator.AdminInboxPrefix(s.Operator.FirstAdmin) + ".>")
	if err != nil {
		t.Fatal(err)
	}
	// The server's own traffic: a person with a device, whose signing seed
	// the service reads from latch_secrets.
	s.MustCreatePerson(t, "alice")
	s.MustIssueDevice(t, "alice", "laptop")
	if _, err := s.Service.SharedSecret(ctx, "web-session"); err != nil {
		t.Fatal(err)
	}
	if err := admin.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := inbox.NextMsg(500 * time.Millisecond); err == nil {
		t.Errorf("admin creds received %s: %q", m.Subject, m.Data)
	}
}

func mustUserKey(t testing.TB) string {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return pub
}

// The admin service's failures are micro errors: the caller gets the
// code and description headers, and `nats micro stats` counts them.
func TestAdminErrorsAreCounted(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	admin := serveAdmin(t, s)
	_, err := accounts.EndpointAccountShow.Call(ctx, admin, accounts.AccountRequest{Name: "nobody"})
	wantKind(t, "show an unknown account", err, accounts.ErrNotFound)
	if _, err := accounts.EndpointAccountList.Call(ctx, admin, accounts.NoRequest{}); err != nil {
		t.Fatal(err)
	}
	msg, err := s.App.Request("$SRV.STATS.latch-admin", nil, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var stats micro.Stats
	if err := json.Unmarshal(msg.Data, &stats); err != nil {
		t.Fatal(err)
	}
	got := map[string][2]int{}
	for _, e := range stats.Endpoints {
		got[e.Name] = [2]int{e.NumRequests, e.NumErrors}
	}
	if got["latch_account_show"] != [2]int{1, 1} || got["latch_account_ls"] != [2]int{1, 0} {
		t.Errorf("micro stats (requests, errors): got %v, want account_show 1 and 1, account_ls 1 and 0", got)
	}
}

// A request the service refuses always gets its reply, short, whatever it
// carried; durations that would overflow are refused, not wrapped.
func TestAdminBadRequests(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	serveAdmin(t, s)
	s.MustCreatePerson(t, "alice")
	nc := s.MustAdminConn(t)
	call := func(subject, body string) (*nats.Msg, error) {
		return nc.Request(subject, []byte(body), 10*time.Second)
	}
	huge := strings.Repeat("y", 700<<10)
	for _, tc := range []struct{ endpoint, body, code string }{
		{accounts.EndpointAccountAdd.Subject(), `{"name":"` + huge + `"}`, "400"},
		{accounts.EndpointAccountShow.Subject(), `{"name":"` + huge + `"}`, "404"},
		{accounts.EndpointDeviceIssue.Subject(), `{"account":"alice","name":"x","ttl_seconds":9223372037}`, "400"},
		{accounts.EndpointDeviceIssue.Subject(), `{"account":"alice","name":"x","ttl_seconds":18446744074}`, "400"},
		{accounts.EndpointAccountAdd.Subject(), `[1,2]`, "400"},
	} {
		m, err := call(tc.endpoint, tc.body)
		if err != nil {
			t.Errorf("%s %.40s: no reply: %v", tc.endpoint, tc.body, err)
			continue
		}
		if got := m.Header.Get("Nats-Service-Error-Code"); got != tc.code || len(m.Data) > 2000 || len(m.Header.Get("Nats-Service-Error")) > 1000 {
			t.Errorf("%s %.40s: got code %q, %d bytes of body; want %s and a short error", tc.endpoint, tc.body, got, len(m.Data), tc.code)
		}
		if strings.Contains(string(m.Data), "Go value") || strings.Contains(string(m.Data), "accounts.") {
			t.Errorf("%s %.40s: the error speaks Go: %s", tc.endpoint, tc.body, m.Data)
		}
	}
	if ds, _ := s.Service.Devices(ctx, "alice"); len(ds) != 0 {
		t.Errorf("devices made by refused requests: %+v", ds)
	}
}
