package main

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/operator"
	"github.com/nats-io/nkeys"
)

// failure is a command line that must fail: its exit status, and what
// the one line of its error must say.
type failure struct {
	name string
	args []string
	code int      // 1: it failed; 2: it was used wrongly
	want []string // in the error, which says what to do
}

// checkFailure runs a command that must fail and checks that it fails
// cleanly: the exit status, one line saying what went wrong and what to
// do, and nothing printed besides (no help text, no half output).
func checkFailure(t *testing.T, environ map[string]string, c failure) {
	t.Helper()
	r := latch(t, environ, c.args...)
	if r.err == nil {
		t.Fatalf("latch %q worked, want exit status %d\nstdout: %s", c.args, c.code, r.stdout)
	}
	checkFailed(t, r, c)
}

func checkFailed(t *testing.T, r result, c failure) {
	t.Helper()
	msg := r.err.Error()
	if got := exitCode(r.err); got != c.code {
		t.Errorf("latch %q: exit status %d, want %d (%s)", c.args, got, c.code, msg)
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("latch %q: the error is not one line:\n%s", c.args, msg)
	}
	for _, w := range c.want {
		if !strings.Contains(msg, w) {
			t.Errorf("latch %q: error %q, want it to say %q", c.args, msg, w)
		}
	}
	if r.stdout != "" || r.stderr != "" {
		t.Errorf("latch %q printed besides the error:\nstdout: %s\nstderr: %s", c.args, r.stdout, r.stderr)
	}
}

// TestBadInputServed feeds the admin commands what they must refuse, on
// one running server, and checks that nothing was made along the way.
func TestBadInputServed(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "")
	s.mustAdmin(t, "account", "add", "alice")
	outDir := t.TempDir()
	out := func(name string) string { return filepath.Join(outDir, name) }
	laptop := strings.TrimSpace(s.mustAdmin(t, "device", "issue", "--account", "alice", "--name", "laptop", "--out", out("laptop.creds")).stdout)
	existing := out("existing.creds")
	if err := os.WriteFile(existing, []byte("precious"), 0o640); err != nil {
		t.Fatal(err)
	}
	filesBefore := fileTree(t, outDir)
	issue := func(account, name string) []string {
		return []string{"device", "issue", "--account", account, "--name", name, "--out", out("new.creds")}
	}
	userKey := func() string {
		kp, _ := nkeys.CreateUser()
		pub, _ := kp.PublicKey()
		return pub
	}

	cases := []failure{
		// What is not there.
		{"show an unknown account", []string{"account", "show", "bob"}, 1, []string{`no account named "bob"`, "latch account ls"}},
		{"issue in an unknown account", issue("bob", "x"), 1, []string{`no account named "bob"`, "latch account ls"}},
		{"list an unknown account's devices", []string{"device", "ls", "--account", "bob"}, 1, []string{`no account named "bob"`}},
		{"disable an unknown account", []string{"account", "disable", "bob"}, 1, []string{`no account named "bob"`}},
		{"enable an unknown account", []string{"account", "enable", "bob"}, 1, []string{`no account named "bob"`}},
		{"delete an unknown account", []string{"account", "delete", "bob", "--yes"}, 1, []string{`no account named "bob"`}},
		// Away from a terminal a delete is not asked about: it needs --yes.
		{"delete without --yes and no terminal", []string{"account", "delete", "alice"}, 2, []string{"cannot be undone", "--yes"}},
		{"revoke an unknown device", []string{"device", "revoke", "--account", "alice", "nosuch"}, 1,
			[]string{`account "alice" has no device "nosuch"`, "latch device ls --account alice"}},
		{"revoke an unknown device key", []string{"device", "revoke", "--account", "alice", userKey()}, 1, []string{`account "alice" has no device`}},
		{"revoke in an unknown account", []string{"device", "revoke", "--account", "bob", "laptop"}, 1, []string{`no account named "bob"`}},

		// What is there already.
		{"add an account twice", []string{"account", "add", "alice"}, 1, []string{`a person named "alice" already exists`, "latch account ls"}},
		{"issue a device name twice", issue("alice", "laptop"), 1,
			[]string{`account "alice" already has a device named "laptop"`, "choose another name or revoke that device"}},
		{"issue a device name twice, in other case", issue("alice", "LapTop"), 1, []string{`already has a device named "LapTop"`}},
		{"issue to an existing file", []string{"device", "issue", "--account", "alice", "--name", "phone", "--out", existing}, 1,
			[]string{existing + " already exists", "choose another --out", "nothing was issued"}},
		{"issue into a missing folder", []string{"device", "issue", "--account", "alice", "--name", "phone", "--out", out("no/such/phone.creds")}, 1,
			[]string{"folder " + out("no/such") + " does not exist", "create it first", "nothing was issued"}},

		// Person names: ^[a-z0-9][a-z0-9_-]{0,31}$, and not sys or latch.
		{"upper-case account name", []string{"account", "add", "Alice"}, 2, []string{`account name: "Alice" may hold only a-z, 0-9, '-' and '_'`}},
		{"account name starting with -", []string{"account", "add", "--", "-alice"}, 2, []string{`"-alice" may hold only`, "must start with a letter or digit"}},
		{"account name starting with _", []string{"account", "add", "_alice"}, 2, []string{`"_alice" may hold only`}},
		{"account name with a space", []string{"account", "add", "al ice"}, 2, []string{`"al ice" may hold only`}},
		{"account name with a dot", []string{"account", "add", "al.ice"}, 2, []string{`"al.ice" may hold only`}},
		{"account name with a non-ASCII letter", []string{"account", "add", "zoë"}, 2, []string{`"zoë" may hold only`}},
		{"account name of 33 characters", []string{"account", "add", strings.Repeat("a", 33)}, 2, []string{"is longer than 32 characters"}},
		{"account name sys", []string{"account", "add", "sys"}, 2, []string{`"sys" is the name of one of latch's own accounts`, "choose another"}},
		{"account name latch", []string{"account", "add", "latch"}, 2, []string{`"latch" is the name of one of latch's own accounts`}},
		{"empty account name", []string{"account", "add", ""}, 2, []string{"account name: a name is required"}},

		// Device names: 1 to 64 printable characters, not a user key.
		{"empty device name", issue("alice", ""), 2, []string{"--name: a device name is required"}},
		{"device name with a leading space", issue("alice", " phone"), 2, []string{`the device name " phone" starts or ends with a space`}},
		{"device name with a trailing space", issue("alice", "phone "), 2, []string{"starts or ends with a space"}},
		{"device name with a tab", issue("alice", "my\tphone"), 2, []string{`"my\tphone" holds a control or non-printing character`}},
		{"device name with a newline", issue("alice", "my\nphone"), 2, []string{"holds a control or non-printing character"}},
		{"device name of 65 characters", issue("alice", strings.Repeat("é", 65)), 2, []string{"longer than 64 characters"}},
		{"device name that is not UTF-8", issue("alice", "ph\xffne"), 2, []string{"not valid UTF-8"}},
		{"device name that is a user key", issue("alice", userKey()), 2, []string{"a device name may not be a user public key"}},

		// Commands used wrongly.
		{"issue without --name", []string{"device", "issue", "--account", "alice"}, 2, []string{"`latch device issue` needs --name", "latch device issue --help"}},
		{"issue without --account", []string{"device", "issue", "--name", "phone"}, 2, []string{"`latch device issue` needs --account"}},
		{"list devices without --account", []string{"device", "ls"}, 2, []string{"`latch device ls` needs --account"}},
		{"revoke without a device", []string{"device", "revoke", "--account", "alice"}, 2, []string{"`latch device revoke` takes DEVICE, got 0"}},
		{"show without a name", []string{"account", "show"}, 2, []string{"`latch account show` takes NAME, got 0", "latch account show --help"}},
		{"add two names", []string{"account", "add", "carl", "dora"}, 2, []string{"`latch account add` takes NAME, got 2"}},
		{"a bad lifetime", append(issue("alice", "phone"), "--expires", "soon"), 2, []string{`--expires: "soon" is not a lifetime`, "90d"}},
		{"a bad disk quota", []string{"account", "add", "carl", "--disk", "lots"}, 2, []string{`--disk: "lots" is not a size`, "64MiB"}},
		{"an unknown flag", []string{"account", "ls", "--bogus"}, 2, []string{"-bogus", "latch account ls --help"}},
		{"an unknown subcommand", []string{"account", "frob"}, 2, []string{`no command "frob"`, "latch account --help"}},
		{"a group without a command", []string{"device"}, 2, []string{"`latch device` needs a command"}},
		{"an unknown command", []string{"frob"}, 2, []string{`no command "frob"`, "latch --help"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkFailure(t, s.env, c) })
	}

	// Names at the edges of the rules are taken.
	for _, name := range []string{strings.Repeat("z", 32), "0", "a-b_c"} {
		s.mustAdmin(t, "account", "add", name)
	}
	s.mustAdmin(t, "device", "issue", "--account", "alice", "--name", strings.Repeat("é", 64))
	s.mustAdmin(t, "device", "revoke", "--account", "alice", strings.Repeat("é", 64))

	// Nothing half-made: no account, device or file beyond those above.
	var persons []accounts.Person
	decodeJSON(t, s.mustAdmin(t, "account", "ls", "--json"), &persons)
	if got, want := personNames(persons), []string{"0", "a-b_c", "alice", strings.Repeat("z", 32)}; !slices.Equal(got, want) {
		t.Errorf("accounts after the refusals: %q, want %q", got, want)
	}
	var devices []accounts.Device
	decodeJSON(t, s.mustAdmin(t, "device", "ls", "--account", "alice", "--json"), &devices)
	var active []string
	for _, d := range devices {
		if !d.Revoked() {
			active = append(active, d.PublicKey)
		}
	}
	if len(devices) != 2 || !slices.Equal(active, []string{laptop}) {
		t.Errorf("devices after the refusals: %+v, want laptop and the revoked edge case only", devices)
	}
	if after := fileTree(t, outDir); !maps.Equal(filesBefore, after) {
		t.Errorf("the refusals changed the creds folder:\n%s", treeDiff(filesBefore, after))
	}
}

// TestBadDataFolder: commands on a data folder that is missing, already
// initialised, or whose secrets are damaged or exposed, and admin
// commands with no server to talk to.
func TestBadDataFolder(t *testing.T) {
	t.Parallel()
	initData := func(t *testing.T) string {
		t.Helper()
		data := filepath.Join(t.TempDir(), "data")
		mustLatch(t, nil, "init", "--data", data)
		return data
	}
	// initRefused runs `latch init` in dir, which must refuse it saying
	// want, and checks that dir is as it was.
	initRefused := func(t *testing.T, dir string, want ...string) {
		t.Helper()
		before := fileTree(t, dir)
		checkFailure(t, nil, failure{args: []string{"init", "--data", dir}, code: 1, want: want})
		if after := fileTree(t, dir); !maps.Equal(before, after) {
			t.Errorf("a refused init changed %s:\n%s", dir, treeDiff(before, after))
		}
	}

	t.Run("init twice", func(t *testing.T) {
		data := initData(t)
		initRefused(t, data, data+" is already initialised", "nothing was changed", "use another --data folder")
	})

	t.Run("init a folder holding something else", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
		initRefused(t, dir, dir+" is not empty and is not a latch data folder", "nothing was changed", "choose an empty or new folder")
	})

	t.Run("missing data folder", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "nonexistent")
		for _, args := range [][]string{
			{"operator", "show"}, {"operator", "show", "--json"}, {"operator", "config"},
			{"operator", "signing-key", "add"}, {"operator", "signing-key", "rm", "OABC"},
		} {
			checkFailure(t, nil, failure{args: append(args, "--data", missing), code: 1,
				want: []string{missing + " does not exist", "run `latch init --data " + missing + "`"}})
		}
		// Admin commands need the admin creds from the folder.
		checkFailure(t, map[string]string{"LATCH_DATA": missing}, failure{args: []string{"account", "ls"}, code: 1,
			want: []string{"no admin creds at " + filepath.Join(missing, "admin.creds"), "run `latch init` first"}})
		if _, err := os.Stat(missing); err == nil {
			t.Errorf("a command refused for a missing folder made %s", missing)
		}
	})

	t.Run("server not running", func(t *testing.T) {
		data := initData(t)
		url := "nats://" + freeAddr(t)
		for _, args := range [][]string{{"account", "ls"}, {"account", "add", "alice"}, {"audit"}} {
			checkFailure(t, map[string]string{"LATCH_DATA": data}, failure{args: append(args, "--server", url), code: 1,
				want: []string{"cannot reach the latch server at " + url, "is `latch serve` running?", "LATCH_SERVER"}})
		}
	})

	// Damaged or exposed secrets stop `latch serve` and `latch operator
	// show`, with the fix in the message; after the fix both work.
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, data string, op operatorInfo) (path string)
		want   func(path string) []string
		fix    func(t *testing.T, path string)
	}{
		{
			name: "corrupt operator signing seed",
			damage: func(t *testing.T, data string, op operatorInfo) string {
				p := filepath.Join(data, "keys", op.SigningKey+".nk")
				writeKeepMode(t, p, "SOnotaseed\n")
				return p
			},
			want: func(p string) []string { return []string{"seed file " + p + " is corrupt", "restore it from a backup"} },
		},
		{
			name: "seed file holding another key",
			damage: func(t *testing.T, data string, op operatorInfo) string {
				p := filepath.Join(data, "keys", op.SigningKey+".nk")
				kp, _ := nkeys.CreateOperator()
				seed, _ := kp.Seed()
				writeKeepMode(t, p, string(seed))
				return p
			},
			want: func(p string) []string {
				return []string{"seed file " + p + " holds the seed of another key", "restore it from a backup"}
			},
		},
		{
			name: "world-readable operator signing seed",
			damage: func(t *testing.T, data string, op operatorInfo) string {
				return chmod(t, filepath.Join(data, "keys", op.SigningKey+".nk"), 0o644)
			},
			want: func(p string) []string {
				return []string{p + " has mode 0644, so others can read a secret", "run `chmod 600 " + p + "`"}
			},
			fix: func(t *testing.T, p string) { chmod(t, p, 0o600) },
		},
		{
			name: "world-readable LATCH account signing seed",
			damage: func(t *testing.T, data string, _ operatorInfo) string {
				m := readManifest(t, data)
				return chmod(t, filepath.Join(data, "keys", m.AppAccount.SigningKey+".nk"), 0o604)
			},
			want: func(p string) []string {
				return []string{p + " has mode 0604, so others can read a secret", "run `chmod 600 " + p + "`"}
			},
			fix: func(t *testing.T, p string) { chmod(t, p, 0o600) },
		},
		{
			name: "world-readable JetStream key",
			damage: func(t *testing.T, data string, _ operatorInfo) string {
				return chmod(t, filepath.Join(data, "keys", "jetstream.key"), 0o644)
			},
			want: func(p string) []string { return []string{p + " has mode 0644", "run `chmod 600 " + p + "`"} },
			fix:  func(t *testing.T, p string) { chmod(t, p, 0o600) },
		},
		{
			name: "key store others may enter",
			damage: func(t *testing.T, data string, _ operatorInfo) string {
				return chmod(t, filepath.Join(data, "keys"), 0o755)
			},
			want: func(p string) []string {
				return []string{"key store " + p + " has mode 0755, which lets others in", "run `chmod 700 " + p + "`"}
			},
			fix: func(t *testing.T, p string) { chmod(t, p, 0o700) },
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := initData(t)
			path := c.damage(t, data, mustOperatorInfo(t, data))
			checkFailure(t, nil, failure{args: []string{"operator", "show", "--data", data}, code: 1, want: c.want(path)})
			args := []string{"serve", "--data", data, "--nats", "127.0.0.1:0", "--http", "127.0.0.1:0", "--monitor", ""}
			r := latchWithin(t, time.Minute, nil, args...)
			if r.err == nil {
				t.Fatalf("latch serve started with a %s", c.name)
			}
			// The server logs to stderr as it starts and stops; only the
			// returned error is checked.
			r.stderr = ""
			checkFailed(t, r, failure{args: args, code: 1, want: c.want(path)})
			if c.fix != nil {
				c.fix(t, path)
				mustLatch(t, nil, "operator", "show", "--data", data)
			}
		})
	}
}

// writeKeepMode replaces a file's content and keeps its mode.
func writeKeepMode(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) string {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func readManifest(t *testing.T, data string) operator.Manifest {
	t.Helper()
	var m operator.Manifest
	b, err := os.ReadFile(filepath.Join(data, operator.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
