package main

import (
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/keys"
	"github.com/latch-dev/latch/operator"
	"github.com/nats-io/nats.go"
)

// eavesdropper listens, with one creds file, wherever those creds let it:
// on > (which should be refused), on _INBOX.> and on its own inbox.
type eavesdropper struct {
	name string
	nc   *nats.Conn
	mu   sync.Mutex
	msgs []*nats.Msg
	errs []error
}

func mustEavesdrop(t *testing.T, url, name, creds string, opts ...nats.Option) *eavesdropper {
	t.Helper()
	e := &eavesdropper{name: name}
	nc, err := nats.Connect(url, append([]nats.Option{nats.UserCredentials(creds),
		nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.errs = append(e.errs, err)
		})}, opts...)...)
	if err != nil {
		t.Fatalf("connect with %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	e.nc = nc
	own := nc.NewInbox() // <prefix>.<id>
	own = own[:strings.LastIndex(own, ".")] + ".>"
	for _, subj := range []string{">", "_INBOX.>", own} {
		if _, err := nc.Subscribe(subj, func(m *nats.Msg) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.msgs = append(e.msgs, m)
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return e
}

// check fails the test for every message that carries a seed or a reply
// of latch's own buckets (the web session secret among them), and unless
// the subscription to > was refused.
func (e *eavesdropper) check(t *testing.T) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, m := range e.msgs {
		var hdr strings.Builder
		for k, vs := range m.Header {
			hdr.WriteString(k + ": " + strings.Join(vs, ",") + "\n")
		}
		switch {
		case seedPattern.Match(m.Data):
			t.Errorf("%s received a seed on %s", e.name, m.Subject)
		case strings.Contains(hdr.String()+m.Subject, "$KV.latch_"):
			t.Errorf("%s received a reply of latch's buckets on %s:\n%s", e.name, m.Subject, hdr.String())
		}
	}
	refused := false
	for _, err := range e.errs {
		if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `">"`) {
			refused = true
		}
	}
	if !refused {
		t.Errorf("%s may subscribe to >; want a permissions violation (errors: %v)", e.name, e.errs)
	}
}

// No creds file that latch writes or hands out can read the server's own
// traffic, nor another admin's replies: with each one subscribed to >,
// _INBOX.> and its own inbox, latch restarts
// (reading its web session secret), creates persons and issues and
// revokes devices (reading their signing seeds), begins web logins
// (keeping passkey challenges), and nothing arrives that carries a seed or
// a reply of latch's buckets. sys.creds is the
// operator's system user and sees everything by design.
func TestNoSecretsReachOutside(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	s := mustServe(t, data)
	natsAddr := strings.TrimPrefix(s.nats, "nats://") // the restart below keeps it
	device := mustIssueDevice(t, s, "alice", "laptop")

	admin := filepath.Join(data, operator.AdminCredsFile)
	spies := []*eavesdropper{
		mustEavesdrop(t, s.nats, "admin.creds", admin, nats.CustomInboxPrefix(operator.AdminInboxPrefix(credsUser(t, admin)))),
		mustEavesdrop(t, s.nats, "device creds", device),
	}

	s.stop()
	s = mustServe(t, data, "--nats", natsAddr)
	// Another admin does the rest, with creds of their own.
	ops := filepath.Join(t.TempDir(), "ops.creds")
	s.mustAdmin(t, "admin", "creds", "issue", "--name", "ops", "--out", ops)
	as := func(args ...string) { s.mustAdmin(t, append(args, "--creds", ops)...) }
	as("account", "add", "bob")
	for _, name := range []string{"phone", "tablet"} {
		as("device", "issue", "--account", "alice", "--name", name, "--out", filepath.Join(t.TempDir(), name+".creds"))
		as("device", "issue", "--account", "bob", "--name", name, "--out", filepath.Join(t.TempDir(), "bob-"+name+".creds"))
	}
	as("device", "revoke", "--account", "alice", "tablet")
	as("invite", "create")
	// The web's side of a login: the passkey ceremony begins, and its
	// challenge is kept in latch's buckets.
	for range 3 {
		resp, err := http.Post(s.http+"/login/begin", "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /login/begin: got %d, want 200", resp.StatusCode)
		}
	}
	// A KV read answers with the entry's subject in a header (direct
	// get), so a reply of the secrets bucket names $KV.latch_secrets.
	for _, e := range spies {
		if err := e.nc.Flush(); err != nil {
			t.Fatalf("%s after the restart: %v", e.name, err)
		}
		e.check(t)
	}
}

// A data folder made before LATCH_ADMIN existed, whose admin.creds is a
// user of LATCH itself, is moved over at its next start: that admin.creds
// stops working and a new one in LATCH_ADMIN takes its place.
func TestUpgradeMovesAdminCredsOutOfLatch(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	mustLatch(t, nil, "init", "--data", data)

	// Make it as it was: no LATCH_ADMIN, admin.creds a LATCH user.
	op, err := operator.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	tok, seed, err := op.MintUser(op.AppAccount, "admin")
	if err != nil {
		t.Fatal(err)
	}
	oldCreds, err := keys.FormatCreds(tok, seed)
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.WriteFileReplace(filepath.Join(data, operator.AdminCredsFile), oldCreds); err != nil {
		t.Fatal(err)
	}
	oldFile := filepath.Join(t.TempDir(), "old-admin.creds")
	if err := keys.WriteFileNew(oldFile, oldCreds); err != nil {
		t.Fatal(err)
	}
	op.AdminAccount, op.FirstAdmin = operator.AccountJWT{}, ""
	if err := op.Save(); err != nil {
		t.Fatal(err)
	}

	s := mustServe(t, data)
	if !strings.Contains(s.logs.String(), "admin creds moved to their own account, LATCH_ADMIN") {
		t.Errorf("the start does not say admin.creds moved:\n%s", s.logs)
	}
	if nc, err := connectCreds(s.nats, oldFile); err == nil {
		nc.Close()
		t.Error("the old admin.creds (a LATCH user) still connects")
	}
	s.mustAdmin(t, "account", "add", "alice")
	var admins []accounts.AdminCreds
	decodeJSON(t, s.mustAdmin(t, "admin", "creds", "ls", "--json"), &admins)
	if len(admins) != 1 || admins[0].Name != operator.FirstAdminName {
		t.Errorf("admin creds after the upgrade: got %+v", admins)
	}
	s.stop()
	// The next start changes nothing more.
	s = mustServe(t, data)
	if strings.Contains(s.logs.String(), "admin creds moved") {
		t.Error("a second start moved admin creds again")
	}
	var ls []struct{ Name string }
	decodeJSON(t, s.mustAdmin(t, "account", "ls", "--json"), &ls)
	if len(ls) != 1 || ls[0].Name != "alice" {
		t.Errorf("persons after the upgrade and a restart: got %+v, want alice", ls)
	}
}
