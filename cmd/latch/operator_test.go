package main

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// TestOperatorConfigStockServer shows that `latch operator config` is a
// config a stock nats-server reads with its own parser, and that such a
// server, given latch's JetStream store, lets latch's devices in with
// their records, and keeps latch's revocations.
func TestOperatorConfigStockServer(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "")
	alice := strings.TrimSpace(s.mustAdmin(t, "account", "add", "alice").stdout)
	dir := t.TempDir()
	laptopCreds, phoneCreds := filepath.Join(dir, "laptop.creds"), filepath.Join(dir, "phone.creds")
	laptop := strings.TrimSpace(s.mustAdmin(t, "device", "issue", "--account", "alice", "--name", "laptop", "--out", laptopCreds).stdout)
	s.mustAdmin(t, "device", "issue", "--account", "alice", "--name", "phone", "--out", phoneCreds)
	s.mustAdmin(t, "device", "revoke", "--account", "alice", "phone")
	nc := mustWatch(t, s.nats, laptopCreds)
	putRecord(t, nc.Conn, "note1", "hello")
	nc.Close()
	s.stop()
	op := mustOperatorInfo(t, s.data)

	// Without --all-accounts only latch's own accounts are preloaded.
	resolverDir := filepath.Join(t.TempDir(), "resolver")
	conf := mustLatch(t, nil, "operator", "config", "--data", s.data, "--resolver-dir", resolverDir).stdout
	if !strings.Contains(conf, op.SystemAccount+":") || !strings.Contains(conf, op.AppAccount+":") || strings.Contains(conf, alice) {
		t.Fatalf("operator config preloads:\n%s\nwant SYS and LATCH, not alice", conf)
	}
	conf = mustLatch(t, nil, "operator", "config", "--all-accounts", "--data", s.data, "--resolver-dir", resolverDir).stdout
	if !strings.Contains(conf, alice+":") {
		t.Fatalf("operator config --all-accounts does not preload alice (%s):\n%s", alice, conf)
	}
	confFile := filepath.Join(t.TempDir(), "nats-server.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}

	// nats-server's own parser reads it.
	opts, err := server.ProcessConfigFile(confFile)
	if err != nil {
		t.Fatalf("nats-server cannot parse `latch operator config`: %v\n%s", err, conf)
	}
	if len(opts.TrustedOperators) != 1 || opts.TrustedOperators[0].Subject != op.Operator {
		t.Fatalf("config trusts %d operators, want exactly %s", len(opts.TrustedOperators), op.Operator)
	}
	if !opts.TrustedOperators[0].StrictSigningKeyUsage || !slices.Contains(opts.TrustedOperators[0].SigningKeys, op.SigningKey) {
		t.Errorf("the operator in the config has strict signing keys %v and keys %v, want strict and %s",
			opts.TrustedOperators[0].StrictSigningKeyUsage, opts.TrustedOperators[0].SigningKeys, op.SigningKey)
	}
	if opts.SystemAccount != op.SystemAccount {
		t.Errorf("config system_account %s, want %s", opts.SystemAccount, op.SystemAccount)
	}
	if _, ok := opts.AccountResolver.(*server.DirAccResolver); !ok {
		t.Fatalf("config resolver is %T, want the full resolver (*server.DirAccResolver)", opts.AccountResolver)
	}

	// A stock nats-server from those options, on latch's JetStream store
	// (copied) and its key: the config says nothing of JetStream, which a
	// deployment sets up itself.
	store := t.TempDir()
	if err := os.CopyFS(filepath.Join(store, "jetstream"), os.DirFS(filepath.Join(s.data, "jetstream"))); err != nil {
		t.Fatal(err)
	}
	jsKey, err := os.ReadFile(filepath.Join(s.data, "keys", "jetstream.key"))
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", -1, 0
	opts.NoLog, opts.NoSigs = true, true
	opts.JetStream, opts.StoreDir = true, store
	opts.JetStreamKey, opts.JetStreamCipher = string(jsKey), server.ChaCha
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server from `latch operator config`: %v", err)
	}
	go ns.Start()
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	if !ns.ReadyForConnections(30 * time.Second) {
		t.Fatal("the stock nats-server did not come up")
	}
	if _, err := os.Stat(filepath.Join(resolverDir, alice+".jwt")); err != nil {
		t.Errorf("the stock server's resolver folder lacks alice's preloaded JWT: %v", err)
	}

	// The device connects, talks on its own channel and reads its record.
	dev := mustWatch(t, ns.ClientURL(), laptopCreds)
	sub, err := dev.SubscribeSync("latch.device." + laptop + ".>")
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Publish("latch.device."+laptop+".x", []byte("ping")); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(30 * time.Second)
	if err != nil || string(msg.Data) != "ping" {
		t.Fatalf("own channel on the stock server: got %v, %v; want ping", msg, err)
	}
	if got := getRecord(t, dev.Conn, "note1"); got != "hello" {
		t.Errorf("record note1 on the stock server: got %q, want hello", got)
	}
	mustBeRefused(t, ns.ClientURL(), phoneCreds, "phone revoked by latch, on the stock server", authViolation)
}

// TestOperatorSigningKeys rotates the operator signing key the way the
// help tells an operator to: add a key, restart so every account is
// re-signed with it, then remove the old one. Devices keep working
// throughout, and the steps out of order are refused with what to do.
func TestOperatorSigningKeys(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	opPub := strings.TrimSpace(mustLatch(t, nil, "init", "--data", data).stdout)

	out := mustLatch(t, nil, "operator", "show", "--data", data).stdout
	for _, want := range []string{
		`(?m)^name:\s+latch$`,
		`(?m)^operator:\s+` + opPub + `$`,
		`(?m)^identity key:\s+in ` + regexp.QuoteMeta(filepath.Join(data, "keys")) + `$`,
		`(?m)^strict signing keys:\s+true$`,
		`(?m)^signing key in use:\s+O[A-Z0-9]{55}$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("operator show: got\n%s\nwant a line matching %s", out, want)
		}
	}
	op := mustOperatorInfo(t, data)
	if op.Operator != opPub || !op.Strict || len(op.SigningKeys) != 1 || op.SigningKeys[0] != op.SigningKey ||
		!nkeys.IsValidPublicOperatorKey(op.SigningKey) || op.SigningKey == opPub ||
		!nkeys.IsValidPublicAccountKey(op.SystemAccount) || !nkeys.IsValidPublicAccountKey(op.AppAccount) || op.Data != data {
		t.Fatalf("operator show --json: %+v, want operator %s with one signing key of its own, strict, in %s", op, opPub, data)
	}
	oldKey := op.SigningKey

	// A person and a device from before the rotation.
	s := mustServe(t, data)
	laptopCreds := mustIssueDevice(t, s, "alice", "laptop")
	putRecord(t, mustWatch(t, s.nats, laptopCreds).Conn, "note1", "hello")
	s.stop()

	r := mustLatch(t, nil, "operator", "signing-key", "add", "--data", data)
	newKey := strings.TrimSuffix(r.stdout, "\n")
	if !nkeys.IsValidPublicOperatorKey(newKey) || r.stdout != newKey+"\n" || newKey == oldKey {
		t.Fatalf("signing-key add printed %q, want a new operator public key and a newline", r.stdout)
	}
	if !strings.Contains(r.stderr, "restart `latch serve`") {
		t.Errorf("signing-key add said %q on stderr, want it to say to restart latch serve", r.stderr)
	}
	op = mustOperatorInfo(t, data)
	if op.SigningKey != newKey || !slices.Equal(op.SigningKeys, sorted(oldKey, newKey)) {
		t.Fatalf("after signing-key add: keys %v, in use %s; want both, the new one in use", op.SigningKeys, op.SigningKey)
	}

	// Removing a key out of turn is refused, and changes nothing.
	before := fileTree(t, data)
	for _, c := range []struct {
		name, key string
		want      []string
	}{
		{"the key in use", newKey, []string{"is the signing key in use", "latch operator signing-key add"}},
		// SYS, LATCH, LATCH_ADMIN and alice, each once (it counted copies).
		{"a key that still signs accounts", oldKey, []string{"4 accounts are still signed by " + oldKey, "restart `latch serve`"}},
		{"a key that is not the operator's", op.SystemAccount, []string{"is not a signing key", "latch operator show"}},
	} {
		r := latch(t, nil, "operator", "signing-key", "rm", c.key, "--data", data)
		if exitCode(r.err) != 1 || r.stdout != "" {
			t.Errorf("signing-key rm of %s: exit %d, stdout %q; want 1 and nothing on stdout", c.name, exitCode(r.err), r.stdout)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(r.err.Error(), w) {
				t.Errorf("signing-key rm of %s: %q, want it to say %q", c.name, r.err, w)
			}
		}
	}
	if r := latch(t, nil, "operator", "signing-key", "rm", "--data", data); exitCode(r.err) != 2 {
		t.Errorf("signing-key rm without a key: exit %d (%v), want 2", exitCode(r.err), r.err)
	}
	if after := fileTree(t, data); !maps.Equal(before, after) {
		t.Errorf("a refused signing-key rm changed the data folder:\n%s", treeDiff(before, after))
	}

	// The restart re-signs every account with the new key; the device
	// issued before goes on working.
	s = mustServe(t, data)
	waitIssuer(t, s, "alice", newKey)
	if got := getRecord(t, mustWatch(t, s.nats, laptopCreds).Conn, "note1"); got != "hello" {
		t.Fatalf("record after re-signing: got %q, want hello", got)
	}
	s.stop()

	r = mustLatch(t, nil, "operator", "signing-key", "rm", oldKey, "--data", data)
	if !strings.HasPrefix(r.stdout, "removed "+oldKey) {
		t.Errorf("signing-key rm printed %q, want removed %s", r.stdout, oldKey)
	}
	op = mustOperatorInfo(t, data)
	if !slices.Equal(op.SigningKeys, []string{newKey}) || op.SigningKey != newKey {
		t.Fatalf("after signing-key rm: keys %v, in use %s; want only %s", op.SigningKeys, op.SigningKey, newKey)
	}
	if _, err := os.Stat(filepath.Join(data, "keys", oldKey+".nk")); err == nil {
		t.Error("the removed signing key's seed is still in keys/")
	}

	// With the old key gone from the operator JWT, everything still works.
	s = mustServe(t, data)
	if got := getRecord(t, mustWatch(t, s.nats, laptopCreds).Conn, "note1"); got != "hello" {
		t.Fatalf("record after removing the old key: got %q, want hello", got)
	}
	s.mustAdmin(t, "account", "add", "bob")
	if d := accountDetail(t, s, "bob"); d.Issuer != newKey {
		t.Errorf("a new account is signed by %s, want %s", d.Issuer, newKey)
	}
	s.stop()

	// The identity key may live offline; changing the operator then says
	// where to put it back.
	idSeed := filepath.Join(data, "keys", opPub+".nk")
	offline := filepath.Join(t.TempDir(), opPub+".nk")
	if err := os.Rename(idSeed, offline); err != nil {
		t.Fatal(err)
	}
	if op := mustOperatorInfo(t, data); op.IdentityKey != "offline" {
		t.Errorf("operator show with the identity seed moved away: identity key %q, want offline", op.IdentityKey)
	}
	r = latch(t, nil, "operator", "signing-key", "add", "--data", data)
	if exitCode(r.err) != 1 || !strings.Contains(r.err.Error(), "is offline; copy its seed back to "+idSeed) {
		t.Errorf("signing-key add with the identity key offline: exit %d, %v; want 1, saying where to copy the seed", exitCode(r.err), r.err)
	}
	if op := mustOperatorInfo(t, data); !slices.Equal(op.SigningKeys, []string{newKey}) {
		t.Errorf("a refused signing-key add left keys %v, want %s alone", op.SigningKeys, newKey)
	}
}

// waitIssuer waits until the server has re-signed an account with key:
// `latch serve` re-signs person accounts just after it starts.
func waitIssuer(t testing.TB, s *served, name, key string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		d := accountDetail(t, s, name)
		if d.Issuer == key {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("account %s is still signed by %s 30s after the restart, want %s\n%s", name, d.Issuer, key, s.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func sorted(ss ...string) []string {
	slices.Sort(ss)
	return ss
}

// treeDiff says what differs between two fileTree results.
func treeDiff(before, after map[string]string) string {
	var out []string
	for k, v := range before {
		if w, ok := after[k]; !ok {
			out = append(out, "removed "+k)
		} else if w != v {
			out = append(out, "changed "+k+": "+v+" → "+w)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			out = append(out, "added "+k)
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}
