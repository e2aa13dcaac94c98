package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/keys"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// TestLifecycle follows one data folder through its life with the real
// command line: init, serve, people and devices added, devices used,
// revoked, accounts disabled, enabled and deleted, the audit trail read,
// and a restart that must keep all of it.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	credsDir := t.TempDir()
	creds := func(name string) string { return filepath.Join(credsDir, name+".creds") }

	// latch init: the operator key on stdout, and a folder of secrets.
	r := mustLatch(t, nil, "init", "--data", data, "--name", "acme")
	opPub := strings.TrimSuffix(r.stdout, "\n")
	if !nkeys.IsValidPublicOperatorKey(opPub) || r.stdout != opPub+"\n" {
		t.Fatalf("init printed %q, want an operator public key and a newline", r.stdout)
	}
	checkInitFolder(t, data, opPub)
	op := mustOperatorInfo(t, data)
	if op.Operator != opPub || op.Name != "acme" {
		t.Fatalf("operator show: operator %s named %q, want %s named %q", op.Operator, op.Name, opPub, "acme")
	}

	s := mustServe(t, data)

	// People: stdout is the account key and nothing else.
	accts := map[string]string{}
	for _, name := range []string{"alice", "bob", "carol"} {
		r := s.mustAdmin(t, "account", "add", name)
		pub := strings.TrimSuffix(r.stdout, "\n")
		if !nkeys.IsValidPublicAccountKey(pub) || r.stdout != pub+"\n" {
			t.Fatalf("account add %s printed %q, want an account public key and a newline", name, r.stdout)
		}
		accts[name] = pub
	}

	// Devices: creds in a new 0600 file, the user key on stdout.
	devs := map[string]string{}
	issue := func(account, name, file string) {
		t.Helper()
		r := s.mustAdmin(t, "device", "issue", "--account", account, "--name", name, "--out", creds(file))
		pub := strings.TrimSuffix(r.stdout, "\n")
		if !nkeys.IsValidPublicUserKey(pub) || r.stdout != pub+"\n" {
			t.Fatalf("device issue %s printed %q, want a user public key and a newline", name, r.stdout)
		}
		checkMode(t, creds(file), 0o600)
		c, err := keys.ReadCreds(creds(file))
		if err != nil {
			t.Fatal(err)
		}
		uc, err := jwt.DecodeUserClaims(c.JWT)
		if err != nil {
			t.Fatal(err)
		}
		if uc.Subject != pub || uc.IssuerAccount != accts[account] || uc.Name != name {
			t.Fatalf("creds of %s: user %s of account %s named %q, want %s of %s named %q",
				name, uc.Subject, uc.IssuerAccount, uc.Name, pub, accts[account], name)
		}
		devs[file] = pub
	}
	issue("alice", "laptop", "laptop")
	issue("alice", "phone", "phone")
	issue("bob", "tablet", "tablet")
	issue("carol", "pad", "pad")

	var devices []accounts.Device
	decodeJSON(t, s.mustAdmin(t, "device", "ls", "--account", "alice", "--json"), &devices)
	if got := deviceNames(devices); !slices.Equal(got, []string{"laptop", "phone"}) {
		t.Fatalf("device ls: devices %q, want laptop and phone", got)
	}
	for _, d := range devices {
		if d.PublicKey != devs[d.Name] || d.Account != accts["alice"] || d.AccountName != "alice" ||
			d.Enrolled != accounts.EnrolledIssued || d.Revoked() {
			t.Errorf("device ls: %+v, want %s of alice, issued, active", d, devs[d.Name])
		}
		if d.Expires == nil || d.Expires.Before(d.Created.Add(89*24*time.Hour)) {
			t.Errorf("device %s expires %v, want the server's default of 90 days", d.Name, d.Expires)
		}
	}
	if out := s.mustAdmin(t, "device", "ls", "--account", "alice").stdout; !strings.HasPrefix(out, "NAME") ||
		!strings.Contains(out, devs["laptop"]) || strings.Count(out, "\n") != 3 {
		t.Errorf("device ls: got\n%s\nwant a header and two devices", out)
	}

	var persons []accounts.Person
	decodeJSON(t, s.mustAdmin(t, "account", "ls", "--json"), &persons)
	if got := personNames(persons); !slices.Equal(got, []string{"alice", "bob", "carol"}) {
		t.Fatalf("account ls: %q, want alice, bob and carol", got)
	}
	for _, p := range persons {
		if p.Account != accts[p.Name] || p.Status != accounts.StatusActive || p.Role != accounts.RoleMember {
			t.Errorf("account ls: %+v, want %s, active member", p, accts[p.Name])
		}
	}
	detail := accountDetail(t, s, "alice")
	if detail.Account != accts["alice"] || detail.Issuer != op.SigningKey ||
		detail.DevicesActive != 2 || detail.DevicesRevoked != 0 || detail.Revocations != 0 {
		t.Fatalf("account show alice: %+v, want 2 active devices, no revocations, issued by %s", detail, op.SigningKey)
	}
	if out := s.mustAdmin(t, "account", "show", "alice").stdout; !regexp.MustCompile(`(?m)^devices:\s+2 active, 0 revoked$`).MatchString(out) {
		t.Errorf("account show alice: got\n%s\nwant a line devices: 2 active, 0 revoked", out)
	}

	// A device's creds work with a plain NATS client: a record goes in.
	laptop := mustWatch(t, s.nats, creds("laptop"))
	putRecord(t, laptop.Conn, "note1", "hello")

	// Revoke: the live connection is closed, the creds never work again.
	phone := mustWatch(t, s.nats, creds("phone"))
	r = s.mustAdmin(t, "device", "revoke", "--account", "alice", "phone")
	if want := "revoked phone (" + devs["phone"] + ")\n"; r.stdout != want {
		t.Fatalf("device revoke printed %q, want %q", r.stdout, want)
	}
	if err := phone.waitClosed(t, "revoked phone"); err == nil || !strings.Contains(strings.ToLower(err.Error()), "revoked") {
		t.Errorf("revoked phone's connection closed with %v, want an authentication revoked error", err)
	}
	mustBeRefused(t, s.nats, creds("phone"), "revoked phone", authViolation)
	r = s.mustAdmin(t, "device", "revoke", "--account", "alice", devs["phone"])
	if !strings.Contains(r.stdout, "was already revoked") {
		t.Errorf("revoking again printed %q, want it to say it was already revoked", r.stdout)
	}
	// The name of a revoked device is free again; its key is not.
	issue("alice", "phone", "phone2")
	if devs["phone2"] == devs["phone"] {
		t.Fatal("a new device named like a revoked one got the revoked key")
	}
	detail = accountDetail(t, s, "alice")
	if detail.DevicesActive != 2 || detail.DevicesRevoked != 1 || detail.Revocations != 1 {
		t.Fatalf("account show alice after a revocation: %+v, want 2 active, 1 revoked, 1 revocation", detail)
	}
	if !laptop.IsConnected() {
		t.Fatalf("revoking phone closed laptop too: %v", laptop.LastError())
	}

	// Disable: carol's devices are cut off and may not be issued.
	pad := mustWatch(t, s.nats, creds("pad"))
	r = s.mustAdmin(t, "account", "disable", "carol")
	if want := "disabled carol (" + accts["carol"] + ")\n"; r.stdout != want {
		t.Fatalf("account disable printed %q, want %q", r.stdout, want)
	}
	pad.waitClosed(t, "disabled carol")
	mustBeRefused(t, s.nats, creds("pad"), "device of disabled carol", connsExceeded)
	if d := accountDetail(t, s, "carol"); d.Status != accounts.StatusDisabled || d.DisabledAt == nil {
		t.Errorf("account show carol: status %q, disabled at %v; want disabled, with a time", d.Status, d.DisabledAt)
	}
	r = s.admin(t, "device", "issue", "--account", "carol", "--name", "other", "--out", creds("other"))
	if exitCode(r.err) != 1 || !strings.Contains(r.err.Error(), "latch account enable carol") {
		t.Errorf("issuing a device of disabled carol: exit %d, %v; want 1 and a hint to enable carol", exitCode(r.err), r.err)
	}
	if _, err := os.Stat(creds("other")); err == nil {
		t.Error("a refused device issue wrote a creds file")
	}

	// Delete: bob's account and data go, his devices are refused.
	tablet := mustWatch(t, s.nats, creds("tablet"))
	putRecord(t, tablet.Conn, "secret", "bob's")
	r = s.mustAdmin(t, "account", "delete", "bob", "--yes")
	if want := "deleted bob (" + accts["bob"] + ")\n"; r.stdout != want {
		t.Fatalf("account delete printed %q, want %q", r.stdout, want)
	}
	tablet.waitClosed(t, "deleted bob")
	mustBeRefused(t, s.nats, creds("tablet"), "device of deleted bob", authViolation)
	if _, err := os.Stat(filepath.Join(data, "resolver", accts["bob"]+".jwt")); err == nil {
		t.Error("bob's account JWT is still in the resolver folder after delete")
	}
	r = s.admin(t, "account", "show", "bob")
	if exitCode(r.err) != 1 || !strings.Contains(r.err.Error(), `no account named "bob"`) {
		t.Errorf("account show bob after delete: exit %d, %v; want 1, no account named \"bob\"", exitCode(r.err), r.err)
	}

	// The audit trail has it all, oldest first; who did it is named.
	wantActions := []string{
		"account.create", "account.create", "account.create",
		"device.issue", "device.issue", "device.issue", "device.issue",
		"device.revoke", "device.issue", "account.disable", "account.delete",
	}
	events := auditEvents(t, s, 50)
	if got := auditActions(events); !slices.Equal(got, wantActions) {
		t.Fatalf("audit: actions %q, want %q", got, wantActions)
	}
	last := events[len(events)-1]
	if last.AccountName != "bob" || last.Account != accts["bob"] || last.Actor != "admin:admin" {
		t.Errorf("last audit event %+v, want bob's delete by admin:admin (admin.creds)", last)
	}
	if got := auditActions(auditEvents(t, s, 2)); !slices.Equal(got, wantActions[len(wantActions)-2:]) {
		t.Errorf("audit --last 2: %q, want the last two, %q", got, wantActions[len(wantActions)-2:])
	}
	out := s.mustAdmin(t, "audit", "--last", "3").stdout
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "TIME") || !strings.Contains(lines[3], "account.delete") ||
		!strings.Contains(lines[2], "account.disable") || !strings.Contains(lines[1], "device.issue") {
		t.Errorf("audit --last 3: got\n%s\nwant a header and the last three events, oldest first", out)
	}
	laptop.Close()

	// Restart on the same folder: everything is kept.
	s.stop()
	wantNoSecretsLogged(t, s.logs.String())
	s = mustServe(t, data)

	decodeJSON(t, s.mustAdmin(t, "account", "ls", "--json"), &persons)
	if got := personNames(persons); !slices.Equal(got, []string{"alice", "carol"}) {
		t.Fatalf("account ls after restart: %q, want alice and carol", got)
	}
	for _, p := range persons {
		want := map[string]string{"alice": accounts.StatusActive, "carol": accounts.StatusDisabled}[p.Name]
		if p.Account != accts[p.Name] || p.Status != want {
			t.Errorf("account ls after restart: %+v, want %s, %s", p, accts[p.Name], want)
		}
	}
	decodeJSON(t, s.mustAdmin(t, "device", "ls", "--account", "alice", "--json"), &devices)
	revoked := map[string]bool{}
	for _, d := range devices {
		revoked[d.PublicKey] = d.Revoked()
	}
	if len(devices) != 3 || revoked[devs["laptop"]] || !revoked[devs["phone"]] || revoked[devs["phone2"]] {
		t.Fatalf("device ls after restart: %+v, want laptop and the new phone active, the old phone revoked", devices)
	}
	mustBeRefused(t, s.nats, creds("phone"), "revoked phone after restart", authViolation)
	mustBeRefused(t, s.nats, creds("pad"), "device of disabled carol after restart", connsExceeded)
	mustBeRefused(t, s.nats, creds("tablet"), "device of deleted bob after restart", authViolation)
	laptop = mustWatch(t, s.nats, creds("laptop"))
	if got := getRecord(t, laptop.Conn, "note1"); got != "hello" {
		t.Fatalf("record note1 after restart: got %q, want %q", got, "hello")
	}
	if r := s.admin(t, "account", "show", "bob"); exitCode(r.err) != 1 {
		t.Errorf("account show bob after restart: exit %d (%v), want 1", exitCode(r.err), r.err)
	}
	if got := auditActions(auditEvents(t, s, 50)); !slices.Equal(got, wantActions) {
		t.Errorf("audit after restart: %q, want %q", got, wantActions)
	}

	// Enable after the restart: carol's device is let in again.
	r = s.mustAdmin(t, "account", "enable", "carol")
	if want := "enabled carol (" + accts["carol"] + ")\n"; r.stdout != want {
		t.Fatalf("account enable printed %q, want %q", r.stdout, want)
	}
	mustWatch(t, s.nats, creds("pad"))
	if d := accountDetail(t, s, "carol"); d.Status != accounts.StatusActive || d.DisabledAt != nil {
		t.Errorf("account show carol after enable: status %q, disabled at %v; want active", d.Status, d.DisabledAt)
	}

	// A revocation after the restart keeps the one before: the JWT the
	// server pushes now still lists the old phone.
	phone2 := mustWatch(t, s.nats, creds("phone2"))
	s.mustAdmin(t, "device", "revoke", "--account", "alice", "phone")
	phone2.waitClosed(t, "revoked second phone")
	mustBeRefused(t, s.nats, creds("phone2"), "second phone, revoked after restart", authViolation)
	mustBeRefused(t, s.nats, creds("phone"), "first phone, after a later revocation", authViolation)
	if got := getRecord(t, laptop.Conn, "note1"); got != "hello" || !laptop.IsConnected() {
		t.Errorf("laptop after revoking the phones: record %q, connected %v; want hello, connected", got, laptop.IsConnected())
	}
	events = auditEvents(t, s, 2)
	if got := auditActions(events); !slices.Equal(got, []string{"account.enable", "device.revoke"}) {
		t.Errorf("audit after restart: last two %q, want account.enable and device.revoke", got)
	}
}

// checkInitFolder checks what `latch init` leaves: the manifest, both
// creds files and the key store, each readable by its owner only.
func checkInitFolder(t *testing.T, data, opPub string) {
	t.Helper()
	checkMode(t, data, 0o700)
	for _, f := range []string{"latch.json", "sys.creds", "admin.creds"} {
		checkMode(t, filepath.Join(data, f), 0o600)
	}
	checkMode(t, filepath.Join(data, "keys"), 0o700)
	jsKey := filepath.Join(data, "keys", "jetstream.key")
	checkMode(t, jsKey, 0o600)
	if b, _ := os.ReadFile(jsKey); !regexp.MustCompile(`^[0-9a-f]{64}$`).Match(b) {
		t.Errorf("jetstream.key holds %d bytes, want 32 random bytes in hex", len(b))
	}
	seeds, _ := filepath.Glob(filepath.Join(data, "keys", "*.nk"))
	if len(seeds) != 6 {
		t.Errorf("keys/ holds %d seeds, want 6 (operator, its signing key, SYS's, LATCH's and LATCH_ADMIN's signing keys, the release key)", len(seeds))
	}
	var haveOperator bool
	for _, f := range seeds {
		checkMode(t, f, 0o600)
		b, _ := os.ReadFile(f)
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(b))))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		pub, _ := kp.PublicKey()
		if filepath.Base(f) != pub+".nk" {
			t.Errorf("%s holds the seed of %s", f, pub)
		}
		haveOperator = haveOperator || pub == opPub
	}
	if !haveOperator {
		t.Errorf("keys/ lacks the operator identity seed %s", opPub)
	}
	op := mustOperatorInfo(t, data)
	for file, account := range map[string]string{"sys.creds": op.SystemAccount, "admin.creds": op.AdminAccount} {
		c, err := keys.ReadCreds(filepath.Join(data, file))
		if err != nil {
			t.Fatal(err)
		}
		uc, err := jwt.DecodeUserClaims(c.JWT)
		if err != nil {
			t.Fatal(err)
		}
		if uc.IssuerAccount != account {
			t.Errorf("%s is a user of %s, want %s", file, uc.IssuerAccount, account)
		}
	}
}

func checkMode(t testing.TB, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s has mode %04o, want %04o", path, got, want)
	}
}

// Why a server turns a connection away.
const (
	authViolation = "authorization violation"                     // revoked, or no such account
	connsExceeded = "maximum account active connections exceeded" // a disabled account
)

// mustBeRefused checks that the server turns away a creds file, and why.
func mustBeRefused(t testing.TB, url, creds, who, why string) {
	t.Helper()
	nc, err := connectCreds(url, creds)
	if err == nil {
		nc.Close()
		t.Fatalf("%s: the server let %s connect", who, filepath.Base(creds))
	}
	if !strings.Contains(strings.ToLower(err.Error()), why) {
		t.Errorf("%s: connecting failed with %q, want %q", who, err, why)
	}
}

func records(t testing.TB, nc *nats.Conn) jetstream.KeyValue {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, accounts.RecordsBucket)
	if err != nil {
		t.Fatalf("open the records bucket: %v", err)
	}
	return kv
}

func putRecord(t testing.TB, nc *nats.Conn, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := records(t, nc).PutString(ctx, key, value); err != nil {
		t.Fatalf("put record %s: %v", key, err)
	}
}

func getRecord(t testing.TB, nc *nats.Conn, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := records(t, nc).Get(ctx, key)
	if err != nil {
		t.Fatalf("get record %s: %v", key, err)
	}
	return string(e.Value())
}

func accountDetail(t testing.TB, s *served, name string) accounts.AccountDetail {
	t.Helper()
	var d accounts.AccountDetail
	decodeJSON(t, s.mustAdmin(t, "account", "show", name, "--json"), &d)
	return d
}

func auditEvents(t testing.TB, s *served, last int) []accounts.AuditEvent {
	t.Helper()
	var es []accounts.AuditEvent
	decodeJSON(t, s.mustAdmin(t, "audit", "--last", strconv.Itoa(last), "--json"), &es)
	return es
}

// auditActions are the actions on accounts and devices in es, in order;
// others (the setup invite `latch serve` makes) are left out.
func auditActions(es []accounts.AuditEvent) []string {
	var out []string
	for _, e := range es {
		if strings.HasPrefix(string(e.Action), "account.") || strings.HasPrefix(string(e.Action), "device.") {
			out = append(out, string(e.Action))
		}
	}
	return out
}

// deviceNames are the devices' names, sorted.
func deviceNames(ds []accounts.Device) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Name)
	}
	slices.Sort(out)
	return out
}

func personNames(ps []accounts.Person) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

// seedPattern matches an nkey seed (user, account or operator); jwtHeader
// is how every NATS JWT begins.
var (
	seedPattern = regexp.MustCompile(`S[UAO][A-Z2-7]{56}`)
	jwtHeader   = "eyJ0eXAiOiJKV1Qi"
)

// wantNoSecretsLogged fails when the server's output holds a seed or a JWT.
func wantNoSecretsLogged(t *testing.T, logs string) {
	t.Helper()
	if logs == "" {
		t.Fatal("the server wrote no log at all")
	}
	if m := seedPattern.FindString(logs); m != "" {
		t.Errorf("the server's log holds an nkey seed (%.4s…)", m)
	}
	if strings.Contains(logs, jwtHeader) {
		t.Error("the server's log holds a JWT")
	}
}
