package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/client"
	"github.com/latch-dev/latch/keys"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
)

// mustClientHome makes a device of account with `latch device issue` and
// writes its home as `latch client enroll` would: device.creds and
// client.json. It returns the environment that points the client
// commands at that home.
func (s *served) mustClientHome(t testing.TB, account, name string) map[string]string {
	t.Helper()
	home := filepath.Join(t.TempDir(), name)
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(home, client.CredsFile)
	pub := strings.TrimSpace(s.mustAdmin(t, "device", "issue", "--account", account, "--name", name, "--out", creds).stdout)
	d, err := client.OpenCreds(home, creds)
	if err != nil || d.PublicKey != pub {
		t.Fatalf("creds of %s: %+v, %v", name, d, err)
	}
	cfg, _ := json.Marshal(map[string]any{
		"url": s.http, "servers": []string{s.nats}, "account": d.Account,
		"name": name, "public_key": pub, "expires": d.Expires,
	})
	if err := keys.WriteFileNew(filepath.Join(home, client.ConfigFile), cfg); err != nil {
		t.Fatal(err)
	}
	// Admin settings in the environment must not leak into the client.
	return map[string]string{client.HomeEnv: home, "LATCH_CREDS": filepath.Join(s.data, "admin.creds"), "LATCH_SERVER": "nats://127.0.0.1:1"}
}

// watching is a `latch client watch` running in the background.
type watching struct {
	out, errb *syncBuffer
	cancel    context.CancelFunc
	done      chan error
}

// startWatch starts `latch client watch args…` and waits for its first
// line, so it has parsed its flags before another command runs (see latch).
func startWatch(t testing.TB, environ map[string]string, args ...string) *watching {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watching{out: &syncBuffer{}, errb: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	getenv := func(k string) string { return environ[k] }
	go func() {
		w.done <- runIn(ctx, append([]string{"latch", "client", "watch"}, args...), getenv, strings.NewReader(""), w.out, w.errb)
	}()
	t.Cleanup(func() { w.stop(t) })
	w.waitLines(t, 1)
	return w
}

// lines returns the lines printed so far.
func (w *watching) lines() []string {
	return strings.Split(strings.TrimSuffix(w.out.String(), "\n"), "\n")
}

// waitLines waits until the watch has printed at least n lines.
func (w *watching) waitLines(t testing.TB, n int) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if l := w.lines(); w.out.String() != "" && len(l) >= n {
			return l
		}
		select {
		case err := <-w.done:
			w.done <- err
			t.Fatalf("the watch ended: %v\n%s%s", err, w.out, w.errb)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the watch printed fewer than %d lines in 30s:\n%s%s", n, w.out, w.errb)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop interrupts the watch, as Ctrl-C does, and checks it ended cleanly.
func (w *watching) stop(t testing.TB) {
	t.Helper()
	w.cancel()
	select {
	case err := <-w.done:
		if err != nil {
			t.Errorf("the watch ended with %v\n%s", err, w.errb)
		}
		w.done <- nil
	case <-time.After(30 * time.Second):
		t.Errorf("the watch did not end within 30s of an interrupt")
	}
}

// clientIn runs a client command with stdin.
func clientIn(t testing.TB, environ map[string]string, stdin []byte, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	getenv := func(k string) string { return environ[k] }
	err := runIn(context.Background(), append([]string{"latch", "client"}, args...), getenv, bytes.NewReader(stdin), &out, &errb)
	return result{stdout: out.String(), stderr: errb.String(), err: err}
}

func mustClient(t testing.TB, environ map[string]string, args ...string) result {
	t.Helper()
	r := clientIn(t, environ, nil, args...)
	if r.err != nil {
		t.Fatalf("latch client %s: %v\nstderr: %s", strings.Join(args, " "), r.err, r.stderr)
	}
	return r
}

// revision parses put's output.
func revision(t testing.TB, r result) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(strings.TrimSpace(r.stdout), 10, 64)
	if err != nil {
		t.Fatalf("put printed %q, want a revision", r.stdout)
	}
	return n
}

// statusField is the first word of a field of `latch client status`.
func statusField(out, name string) string {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == name+":" {
			return f[1]
		}
	}
	return ""
}

// fieldOf is the value of a field `latch … show` printed, whole.
func fieldOf(out, name string) string {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestClientRecords runs the records commands of two devices of one person
// against `latch serve`, as the session does.
func TestClientRecords(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "")
	s.mustAdmin(t, "account", "add", "alice")
	a := s.mustClientHome(t, "alice", "laptop")
	b := s.mustClientHome(t, "alice", "phone")

	rev := revision(t, mustClient(t, a, "put", "note1", "hello"))
	if got := mustClient(t, b, "get", "note1").stdout; got != "hello" {
		t.Errorf("B gets %q, want hello", got)
	}

	// B watches: the current values first, then A's writes and deletes.
	w := startWatch(t, b)
	if l := w.lines(); l[0] != fmt.Sprintf("put note1 %d hello", rev) {
		t.Errorf("first watch line %q, want the current value of note1", l[0])
	}
	rev2 := revision(t, mustClient(t, a, "put", "note2", "two words"))
	mustClient(t, a, "rm", "note1")
	lines := w.waitLines(t, 3)
	want := []string{
		fmt.Sprintf("put note1 %d hello", rev),
		fmt.Sprintf("put note2 %d two words", rev2),
		fmt.Sprintf("del note1 %d", rev2+1),
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("watch printed\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	w.stop(t)

	// While B is not watching, A writes on; B's next watch starts after
	// the last line it printed, and --all from the beginning.
	odd := []byte("line one\nline two\x00\xff")
	rev3 := revision(t, clientIn(t, a, odd, "put", "bin", "-"))
	mustClient(t, a, "put", "note2", `"quoted"`)
	w = startWatch(t, b)
	lines = w.waitLines(t, 2)
	want = []string{
		fmt.Sprintf("put bin %d %s", rev3, strconv.Quote(string(odd))),
		fmt.Sprintf("put note2 %d %s", rev3+1, strconv.Quote(`"quoted"`)),
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("resumed watch printed\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	w.stop(t)
	// A delete takes the key's earlier revisions with it (their room comes
	// back), so --all starts at note2.
	w = startWatch(t, b, "--all")
	if lines := w.waitLines(t, 4); lines[0] != fmt.Sprintf("put note2 %d two words", rev2) || lines[1] != fmt.Sprintf("del note1 %d", rev2+1) {
		t.Errorf("watch --all printed\n%s\nwant every change kept, from the first", strings.Join(lines, "\n"))
	}
	w.stop(t)
	w = startWatch(t, b, "--json", "--from", strconv.FormatUint(rev3, 10))
	var ch struct {
		Op, Key, Value string
		Revision       uint64
	}
	if err := json.Unmarshal([]byte(w.lines()[0]), &ch); err != nil || ch.Op != "put" || ch.Key != "note2" || ch.Value != `"quoted"` || ch.Revision != rev3+1 {
		t.Errorf("watch --json --from %d printed %q (%v), want note2's change as JSON", rev3, w.lines()[0], err)
	}
	w.stop(t)

	// Values are bytes: from stdin, and back unchanged.
	if got := mustClient(t, b, "get", "bin").stdout; got != string(odd) {
		t.Errorf("get bin: %q, want %q", got, odd)
	}
	var got struct {
		Key         string    `json:"key"`
		Revision    uint64    `json:"revision"`
		Size        int       `json:"size"`
		Created     time.Time `json:"created"`
		Value       *string   `json:"value"`
		ValueBase64 string    `json:"value_base64"`
	}
	decodeJSON(t, mustClient(t, b, "get", "bin", "--json"), &got)
	raw, _ := base64.StdEncoding.DecodeString(got.ValueBase64)
	if got.Key != "bin" || got.Revision != rev3 || got.Size != len(odd) || got.Created.IsZero() || got.Value != nil || string(raw) != string(odd) {
		t.Errorf("get --json of binary: %+v, want it in value_base64", got)
	}
	decodeJSON(t, mustClient(t, b, "get", "note2", "--json"), &got)
	if got.Value == nil || *got.Value != `"quoted"` {
		t.Errorf("get --json of text: %+v, want it in value", got)
	}

	// ls: a table, JSON, a prefix.
	mustClient(t, a, "put", "notes.a", "x")
	ls := mustClient(t, b, "ls").stdout
	for _, want := range []string{"KEY", "REVISION", "SIZE", "CREATED", "bin", "note2", "notes.a"} {
		if !strings.Contains(ls, want) {
			t.Errorf("ls lacks %q:\n%s", want, ls)
		}
	}
	if strings.Contains(ls, "note1") {
		t.Errorf("ls lists the deleted note1:\n%s", ls)
	}
	var list []struct {
		Key      string    `json:"key"`
		Revision uint64    `json:"revision"`
		Size     int       `json:"size"`
		Created  time.Time `json:"created"`
	}
	decodeJSON(t, mustClient(t, b, "ls", "note", "--json"), &list)
	if len(list) != 2 || list[0].Key != "note2" || list[0].Size != len(`"quoted"`) || list[1].Key != "notes.a" || list[1].Created.IsZero() {
		t.Errorf("ls note --json: %+v, want note2 and notes.a", list)
	}

	// Compare-and-set.
	cur := revision(t, mustClient(t, a, "put", "doc", "v1"))
	next := revision(t, mustClient(t, b, "put", "--if-revision", strconv.FormatUint(cur, 10), "doc", "v2"))
	r := clientIn(t, a, nil, "put", "doc", "v3", "--if-revision", strconv.FormatUint(cur, 10))
	if exitCode(r.err) != 1 || !strings.Contains(r.err.Error(), fmt.Sprintf("at revision %d, not %d", next, cur)) {
		t.Errorf("a stale --if-revision: %v (exit %d), want exit 1 naming revision %d", r.err, exitCode(r.err), next)
	}
	if r := clientIn(t, a, nil, "put", "doc", "v3", "--if-revision", "0"); exitCode(r.err) != 1 || !strings.Contains(r.err.Error(), "exists already") {
		t.Errorf("--if-revision 0 on an existing record: %v, want a conflict", r.err)
	}

	// Mistakes.
	for _, args := range [][]string{
		{"put", "bad key", "v"}, {"get", "trailing."}, {"rm", "a..b"}, {"put", "k"}, {"get"},
		{"watch", "--all", "--from", "3"}, {"ls", "a", "b"},
	} {
		r := clientIn(t, a, nil, args...)
		var u usageError
		if !errors.As(r.err, &u) {
			t.Errorf("latch client %s: %v, want a usage error", strings.Join(args, " "), r.err)
		}
	}
	if r := clientIn(t, a, nil, "put", "ümlaut", "v"); r.err == nil || !strings.Contains(r.err.Error(), client.KeyRule) {
		t.Errorf("a bad key: %v, want the rule", r.err)
	}
	if r := clientIn(t, a, nil, "get", "nothing"); exitCode(r.err) != 1 || !strings.Contains(r.err.Error(), `"nothing"`) {
		t.Errorf("get a missing key: %v, want exit 1 naming it", r.err)
	}
	if r := clientIn(t, a, nil, "rm", "nothing"); exitCode(r.err) != 1 {
		t.Errorf("rm a missing key: %v, want exit 1", r.err)
	}

	// status, and --creds/--server in place of an enrollment.
	st := mustClient(t, a, "status").stdout
	for _, want := range []string{"server:", s.http, "account:", "fingerprint:", "expires:"} {
		if !strings.Contains(st, want) {
			t.Errorf("status lacks %q:\n%s", want, st)
		}
	}
	if got := statusField(st, "connected"); got != "yes" {
		t.Errorf("status says connected: %q, want yes:\n%s", got, st)
	}
	bare := map[string]string{client.HomeEnv: t.TempDir()}
	if r := clientIn(t, bare, nil, "get", "note2"); !errors.Is(r.err, client.ErrNotEnrolled) {
		t.Errorf("get in a home without an enrollment: %v, want ErrNotEnrolled", r.err)
	}
	creds := filepath.Join(a[client.HomeEnv], client.CredsFile)
	if got := mustClient(t, bare, "get", "note2", "--creds", creds, "--server", s.nats).stdout; got != `"quoted"` {
		t.Errorf("get with --creds and --server: %q", got)
	}
}

// TestClientRenew renews a device's JWT with `latch client renew`, and is
// refused once the device is revoked.
func TestClientRenew(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "")
	s.mustAdmin(t, "account", "add", "alice")
	a := s.mustClientHome(t, "alice", "laptop")
	before, err := client.Open(a[client.HomeEnv])
	if err != nil {
		t.Fatal(err)
	}
	// A JWT renewed within the second it was issued could expire at the
	// same second; wait for the next.
	c, err := keys.ReadCreds(before.CredsPath)
	if err != nil {
		t.Fatal(err)
	}
	uc, err := jwt.DecodeUserClaims(c.JWT)
	if err != nil {
		t.Fatal(err)
	}
	for time.Now().Unix() <= uc.IssuedAt {
		time.Sleep(50 * time.Millisecond)
	}

	r := mustClient(t, a, "renew")
	if !strings.HasPrefix(r.stdout, "renewed ") {
		t.Errorf("renew printed %q", r.stdout)
	}
	after, err := client.Open(a[client.HomeEnv])
	if err != nil {
		t.Fatal(err)
	}
	if after.Expires == nil || before.Expires == nil || !after.Expires.After(*before.Expires) {
		t.Errorf("after renew the JWT expires %v, before %v", after.Expires, before.Expires)
	}
	mustClient(t, a, "put", "k", "v")

	s.mustAdmin(t, "device", "revoke", "--account", "alice", "laptop")
	r = clientIn(t, a, nil, "renew")
	if exitCode(r.err) != 1 || !errors.Is(r.err, client.ErrRevoked) || !strings.Contains(r.err.Error(), "latch client enroll") {
		t.Errorf("renew a revoked device: %v, want exit 1 saying to enroll again", r.err)
	}
	if r := clientIn(t, a, nil, "put", "k", "v"); exitCode(r.err) != 1 || !errors.Is(r.err, client.ErrRevoked) {
		t.Errorf("put from a revoked device: %v, want exit 1 saying it was revoked", r.err)
	}
	// The status is printed, and the command fails: it cannot connect.
	if r := clientIn(t, a, nil, "status"); exitCode(r.err) != 1 || statusField(r.stdout, "connected") != "no" {
		t.Errorf("status of a revoked device: %v\n%s", r.err, r.stdout)
	}
}

// TestClientFullRecords fills a person's records to their quota: the put
// that does not fit says to delete or ask for more, `latch client rm`
// deletes even then, the room comes back, `latch account show` says how
// full the records are, and `latch account edit --disk` gives more room. The
// public nats CLI reaches the device API with the device's creds.
func TestClientFullRecords(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "")
	s.mustAdmin(t, "account", "add", "tight", "--disk", "64KiB")
	a := s.mustClientHome(t, "tight", "laptop")

	big := bytes.Repeat([]byte("x"), 20<<10)
	var full result
	for i := 0; i < 5; i++ {
		if full = clientIn(t, a, big, "put", fmt.Sprintf("big%d", i), "-"); full.err != nil {
			break
		}
	}
	if full.err == nil || !strings.Contains(full.err.Error(), "the records are full") ||
		!strings.Contains(full.err.Error(), "latch client rm") || !strings.Contains(full.err.Error(), "larger quota") {
		t.Fatalf("put past the quota: %v; want it refused, saying to delete or ask for more", full.err)
	}
	// Small writes to the last bytes, so that not even a delete fits.
	for i := 0; ; i++ {
		if r := clientIn(t, a, nil, "put", fmt.Sprintf("f%d", i), "-"); r.err != nil {
			break
		}
	}
	show := s.mustAdmin(t, "account", "show", "tight").stdout
	if u := fieldOf(show, "records"); !strings.HasSuffix(u, "of 64.0KiB (99%)") && !strings.HasSuffix(u, "of 64.0KiB (100%)") {
		t.Errorf("account show, records: %q, want nearly all of 64.0KiB", u)
	}
	mustClient(t, a, "rm", "big0")
	// The delete itself takes a few bytes of the room it gave back.
	if r := clientIn(t, a, big[:16<<10], "put", "big0", "-"); r.err != nil {
		t.Errorf("put after the delete: %v\n%s", r.err, r.stderr)
	}
	// What still does not fit fits with a larger quota.
	if r := clientIn(t, a, big, "put", "more", "-"); r.err == nil {
		t.Fatal("a put past the quota went through")
	}
	s.mustAdmin(t, "account", "edit", "tight", "--disk", "128KiB")
	if r := clientIn(t, a, big, "put", "more", "-"); r.err != nil {
		t.Errorf("put after the quota grew: %v\n%s", r.err, r.stderr)
	}
	if u := fieldOf(mustClient(t, a, "status").stdout, "records"); !strings.Contains(u, "of 128.0KiB") {
		t.Errorf("client status, records: %q, want the use of 128.0KiB", u)
	}
	show = s.mustAdmin(t, "account", "show", "tight").stdout
	if q := fieldOf(show, "disk quota"); q != "128KiB" {
		t.Errorf("account show, disk quota: %q, want 128KiB", q)
	}
	if audit := s.mustAdmin(t, "audit").stdout; !strings.Contains(audit, string(accounts.ActionAccountEdit)) || !strings.Contains(audit, string(accounts.ActionRecordDelete)) {
		t.Errorf("the audit trail lacks the quota change or the delete:\n%s", audit)
	}
	// Bad quotas: a usage error each, nothing changed.
	for _, args := range [][]string{{"--disk", "0"}, {"--disk", "lots"}, {}} {
		r := s.admin(t, append([]string{"account", "edit", "tight"}, args...)...)
		if code := exitCode(r.err); code != 2 {
			t.Errorf("account edit %v: exit %d (%s), want 2", args, code, r.stderr)
		}
	}

	// Any NATS client can ask for the delete, with the device's creds.
	n := natsRunner{bin: natsCLI(t), home: t.TempDir(), url: s.nats}
	creds := filepath.Join(a[client.HomeEnv], client.CredsFile)
	key := credsUser(t, creds)
	out := n.mustRun(t, creds, "req", "latch.device."+key+".api.records.delete", `{"key":"more"}`, "--raw")
	if !strings.Contains(out, `"key":"more"`) || !strings.Contains(out, `"revision":`) {
		t.Errorf("nats req to the device API: %q, want the delete's key and revision", out)
	}
	if r := clientIn(t, a, nil, "get", "more"); r.err == nil || !strings.Contains(r.err.Error(), "no such record") {
		t.Errorf("get after the nats CLI's delete: %v; want not found", r.err)
	}
}

// A disabled person's devices are told so, not that a connection limit
// was reached, and `client status` fails when it cannot connect (issue 8).
func TestClientDisabledAccount(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "")
	s.mustAdmin(t, "account", "add", "alice")
	a := s.mustClientHome(t, "alice", "laptop")
	mustClient(t, a, "put", "note", "hello")
	if r := mustClient(t, a, "status"); fieldOf(r.stdout, "connected") == "" || !strings.HasPrefix(fieldOf(r.stdout, "connected"), "yes") {
		t.Errorf("status of an active device: %q", r.stdout)
	}

	s.mustAdmin(t, "account", "disable", "alice")
	r := clientIn(t, a, nil, "get", "note")
	if r.err == nil || !strings.Contains(r.err.Error(), "account is disabled") || exitCode(r.err) != 1 {
		t.Errorf("get on a disabled account: %v (exit %d), want it to say the account is disabled", r.err, exitCode(r.err))
	}
	r = clientIn(t, a, nil, "status")
	if r.err == nil || exitCode(r.err) != 1 || !strings.Contains(fieldOf(r.stdout, "connected"), "account is disabled") {
		t.Errorf("status on a disabled account: %v (exit %d), printed\n%s\nwant exit 1 and connected: no, the account is disabled", r.err, exitCode(r.err), r.stdout)
	}

	s.mustAdmin(t, "account", "enable", "alice")
	if got := mustClient(t, a, "get", "note").stdout; got != "hello" {
		t.Errorf("get after enable: %q", got)
	}
	mustClient(t, a, "status")
}

// account add takes the limits given and the server's --account-* for the
// others (it took the CLI's own defaults); account edit changes any of
// them, through the account's JWT, and says so in the audit trail.
func TestAccountLimits(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "", "--account-conns", "7", "--account-payload", "64KiB")
	s.mustAdmin(t, "account", "add", "pat", "--disk", "1MiB")
	show := s.mustAdmin(t, "account", "show", "pat").stdout
	for field, want := range map[string]string{"disk quota": "1MiB", "connections": "7", "payload": "64KiB"} {
		if got := fieldOf(show, field); got != want {
			t.Errorf("account show pat, %s: %q, want %q", field, got, want)
		}
	}
	s.mustAdmin(t, "account", "edit", "pat", "--conns", "3", "--payload", "8KiB", "--consumers", "5")
	var d accounts.AccountDetail
	decodeJSON(t, s.mustAdmin(t, "account", "show", "pat", "--json"), &d)
	if d.Limits.Conns != 3 || d.Limits.Payload != 8<<10 || d.Limits.Consumers != 5 || d.Limits.Disk != 1<<20 {
		t.Errorf("limits after edit: %+v", d.Limits)
	}
	// The server applies them: a device's fourth connection is refused.
	creds := filepath.Join(t.TempDir(), "pat.creds")
	s.mustAdmin(t, "device", "issue", "--account", "pat", "--name", "laptop", "--out", creds)
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	for i := range 4 {
		nc, err := nats.Connect(s.nats, nats.UserCredentials(creds), nats.NoReconnect())
		if i < 3 && err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		if i == 3 && !errors.Is(err, nats.ErrMaxAccountConnectionsExceeded) {
			t.Errorf("a fourth connection with --conns 3: %v, want refused", err)
		}
		if err == nil {
			conns = append(conns, nc)
		}
	}
	if audit := s.mustAdmin(t, "audit").stdout; !strings.Contains(audit, "conns 7 → 3") {
		t.Errorf("the audit trail does not say what changed:\n%s", audit)
	}
}

// latch device rename: a new name, unique among the active devices, by
// name or key, audited; a revoked device keeps its name.
func TestDeviceRename(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "")
	s.mustAdmin(t, "account", "add", "alice")
	dir := t.TempDir()
	laptop := strings.TrimSpace(s.mustAdmin(t, "device", "issue", "--account", "alice", "--name", "laptop", "--out", filepath.Join(dir, "l.creds")).stdout)
	s.mustAdmin(t, "device", "issue", "--account", "alice", "--name", "phone", "--out", filepath.Join(dir, "p.creds"))

	if out := s.mustAdmin(t, "device", "rename", "--account", "alice", "laptop", "work-laptop").stdout; !strings.Contains(out, "renamed laptop to work-laptop") {
		t.Errorf("rename printed %q", out)
	}
	// The new name finds it, the old one does not; the old name is free.
	s.mustAdmin(t, "device", "disconnect", "--account", "alice", "work-laptop")
	if r := s.admin(t, "device", "revoke", "--account", "alice", "laptop"); exitCode(r.err) != 1 {
		t.Errorf("the old name still finds the device: %v", r.err)
	}
	s.mustAdmin(t, "device", "issue", "--account", "alice", "--name", "laptop", "--out", filepath.Join(dir, "l2.creds"))
	// By key, and only the case changing.
	s.mustAdmin(t, "device", "rename", "--account", "alice", laptop, "Work-Laptop")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"phone", "laptop"}, 1, "already has a device named"},
		{[]string{"phone", "WORK-LAPTOP"}, 1, "already has a device named"},
		{[]string{"nosuch", "x"}, 1, "has no device"},
		{[]string{"phone", ""}, 2, "NEW-NAME"},
		{[]string{"phone"}, 2, "DEVICE NEW-NAME"},
	} {
		r := s.admin(t, append([]string{"device", "rename", "--account", "alice"}, c.args...)...)
		if exitCode(r.err) != c.code || r.err == nil || !strings.Contains(r.err.Error(), c.want) {
			t.Errorf("rename %v: exit %d, %v; want %d saying %q", c.args, exitCode(r.err), r.err, c.code, c.want)
		}
	}
	s.mustAdmin(t, "device", "revoke", "--account", "alice", "phone")
	if r := s.admin(t, "device", "rename", "--account", "alice", "phone", "old-phone"); exitCode(r.err) != 1 || !strings.Contains(r.err.Error(), "revoked") {
		t.Errorf("rename a revoked device: %v, want refused", r.err)
	}
	var ds []accounts.Device
	decodeJSON(t, s.mustAdmin(t, "device", "ls", "--account", "alice", "--json"), &ds)
	names := map[string]bool{}
	for _, d := range ds {
		names[d.Name] = true
	}
	if !names["Work-Laptop"] || !names["laptop"] || !names["phone"] || len(ds) != 3 {
		t.Errorf("devices after the renames: %+v", ds)
	}
	if audit := s.mustAdmin(t, "audit").stdout; !strings.Contains(audit, string(accounts.ActionDeviceRename)) || !strings.Contains(audit, "was laptop") {
		t.Errorf("the audit trail lacks the rename:\n%s", audit)
	}
}
