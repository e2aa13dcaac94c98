package keys_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/keys"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// mustStore creates a store in a fresh folder.
func mustStore(t *testing.T) *keys.Store {
	t.Helper()
	s, err := keys.Create(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatalf("create store: %v", err)
	}
	return s
}

// mode returns the permission bits of path.
func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func mustChmod(t *testing.T, path string, m fs.FileMode) {
	t.Helper()
	if err := os.Chmod(path, m); err != nil {
		t.Fatal(err)
	}
}

// wantRefusal fails the test unless err is an error that holds each of
// want; what says what was tried.
func wantRefusal(t *testing.T, err error, what string, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: got nil error, want a refusal containing %q", what, want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: got %q, want it to contain %q", what, err, w)
		}
	}
}

func TestCreateMakesPrivateFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b", "keys")
	s, err := keys.Create(dir)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if got := s.Dir(); got != dir {
		t.Errorf("Dir() = %q, want %q", got, dir)
	}
	if got := mode(t, dir); got != 0o700 {
		t.Errorf("folder mode = %04o, want 0700", got)
	}
	// Creating it again opens the existing store.
	if _, err := keys.Create(dir); err != nil {
		t.Errorf("create again: got %v, want nil", err)
	}
	if _, err := keys.Open(dir); err != nil {
		t.Errorf("open: got %v, want nil", err)
	}
}

func TestOpenRefusesFolderOthersCanEnter(t *testing.T) {
	for _, m := range []fs.FileMode{0o750, 0o710, 0o705, 0o701, 0o755, 0o770, 0o777} {
		t.Run(fmt.Sprintf("%04o", m), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "keys")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			mustChmod(t, dir, m)
			for name, open := range map[string]func(string) (*keys.Store, error){"Open": keys.Open, "Create": keys.Create} {
				_, err := open(dir)
				wantRefusal(t, err, fmt.Sprintf("%s of a %04o folder", name, m), "chmod 700 "+dir)
			}
		})
	}
}

func TestOpenRefusesWhatIsNotAStore(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{name: "missing", path: filepath.Join(dir, "nope"), want: "no key store at"},
		{name: "file", path: file, want: "is not a folder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := keys.Open(tt.path)
			wantRefusal(t, err, "open "+tt.path, tt.want)
		})
	}
}

func TestStorePutGetHasRemoveList(t *testing.T) {
	s := mustStore(t)
	op, _ := nkeys.CreateOperator()
	acct, _ := nkeys.CreateAccount()
	user, _ := nkeys.CreateUser()
	var pubs []string
	for _, kp := range []nkeys.KeyPair{op, acct, user} {
		pub, _ := kp.PublicKey()
		pubs = append(pubs, pub)
		if s.Has(pub) {
			t.Errorf("Has(%s) before Put = true, want false", pub)
		}
		if err := s.Put(kp); err != nil {
			t.Fatalf("put %s: %v", pub, err)
		}
		if !s.Has(pub) {
			t.Errorf("Has(%s) after Put = false, want true", pub)
		}
		if got := mode(t, s.Path(pub)); got != 0o600 {
			t.Errorf("seed file mode = %04o, want 0600", got)
		}
		got, err := s.Get(pub)
		if err != nil {
			t.Fatalf("get %s: %v", pub, err)
		}
		gotSeed, _ := got.Seed()
		wantSeed, _ := kp.Seed()
		if !bytes.Equal(gotSeed, wantSeed) {
			t.Errorf("Get(%s) seed: got %q, want %q", pub, gotSeed, wantSeed)
		}
	}

	// A non-key file and a secret sit beside the seeds but are not listed.
	if err := s.PutSecret("jetstream.key", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir(), "notes.nk"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := s.List()
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	want := slices.Sorted(slices.Values(pubs))
	if !slices.Equal(got, want) {
		t.Errorf("List() = %q, want %q", got, want)
	}

	// Put never replaces a seed.
	err = s.Put(acct)
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second Put: got %v, want an error containing %q", err, "already exists")
	}

	if err := s.Remove(pubs[1]); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if s.Has(pubs[1]) {
		t.Errorf("Has(%s) after Remove = true, want false", pubs[1])
	}
	if _, err := s.Get(pubs[1]); !errors.Is(err, keys.ErrNotFound) {
		t.Errorf("Get after Remove: got %v, want ErrNotFound", err)
	}
	if err := s.Remove(pubs[1]); !errors.Is(err, keys.ErrNotFound) {
		t.Errorf("second Remove: got %v, want ErrNotFound", err)
	}
	got, _ = s.List()
	want = slices.DeleteFunc(want, func(p string) bool { return p == pubs[1] })
	if !slices.Equal(got, want) {
		t.Errorf("List() after Remove = %q, want %q", got, want)
	}
}

func TestGetRefusesSeedOthersCanRead(t *testing.T) {
	for _, m := range []fs.FileMode{0o644, 0o640, 0o604, 0o660} {
		t.Run(fmt.Sprintf("%04o", m), func(t *testing.T) {
			s := mustStore(t)
			kp, _ := nkeys.CreateAccount()
			pub, _ := kp.PublicKey()
			if err := s.Put(kp); err != nil {
				t.Fatal(err)
			}
			mustChmod(t, s.Path(pub), m)
			_, err := s.Get(pub)
			wantRefusal(t, err, fmt.Sprintf("get a %04o seed", m), "chmod 600 "+s.Path(pub), "leaked")
		})
	}
}

func TestGetRefusesCorruptSeed(t *testing.T) {
	s := mustStore(t)
	kp, _ := nkeys.CreateAccount()
	pub, _ := kp.PublicKey()
	if err := os.WriteFile(s.Path(pub), []byte("SAnot-a-seed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := s.Get(pub)
	wantRefusal(t, err, "get a corrupt seed", "corrupt", s.Path(pub), "backup")
}

func TestGetRefusesSeedOfAnotherKey(t *testing.T) {
	s := mustStore(t)
	kp, _ := nkeys.CreateAccount()
	pub, _ := kp.PublicKey()
	other, _ := nkeys.CreateAccount()
	otherPub, _ := other.PublicKey()
	otherSeed, _ := other.Seed()
	if err := os.WriteFile(s.Path(pub), otherSeed, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := s.Get(pub)
	wantRefusal(t, err, "get a mismatched seed", "another key", otherPub)
}

func TestGetAcceptsSeedWithTrailingNewline(t *testing.T) {
	s := mustStore(t)
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	if err := os.WriteFile(s.Path(pub), append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(pub)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if gotPub, _ := got.PublicKey(); gotPub != pub {
		t.Errorf("got key %q, want %q", gotPub, pub)
	}
}

func TestSecrets(t *testing.T) {
	s := mustStore(t)
	if err := s.PutSecret("jetstream.key", []byte("s3cret")); err != nil {
		t.Fatalf("put secret: %v", err)
	}
	got, err := s.Secret("jetstream.key")
	if err != nil {
		t.Fatalf("secret: %v", err)
	}
	if string(got) != "s3cret" {
		t.Errorf("got %q, want %q", got, "s3cret")
	}
	if got := mode(t, filepath.Join(s.Dir(), "jetstream.key")); got != 0o600 {
		t.Errorf("secret file mode = %04o, want 0600", got)
	}
	if err := s.PutSecret("jetstream.key", []byte("other")); err == nil {
		t.Error("second PutSecret: got nil error, want a refusal to overwrite")
	}
	if got, _ := s.Secret("jetstream.key"); string(got) != "s3cret" {
		t.Errorf("after a refused PutSecret: got %q, want %q", got, "s3cret")
	}
	if _, err := s.Secret("nope"); !errors.Is(err, keys.ErrNotFound) {
		t.Errorf("missing secret: got %v, want ErrNotFound", err)
	}
}

func TestRandomSecret(t *testing.T) {
	a, b := keys.RandomSecret(32), keys.RandomSecret(32)
	if len(a) != 64 {
		t.Errorf("len(RandomSecret(32)) = %d, want 64 hex digits", len(a))
	}
	if strings.Trim(string(a), "0123456789abcdef") != "" {
		t.Errorf("RandomSecret(32) = %q, want only hex digits", a)
	}
	if bytes.Equal(a, b) {
		t.Errorf("two RandomSecret(32) calls both gave %q, want different values", a)
	}
}

func TestWriteFileNew(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "device.creds")
	if err := keys.WriteFileNew(path, []byte("first")); err != nil {
		t.Fatalf("write: %v", err)
	}
	if got := mode(t, path); got != 0o600 {
		t.Errorf("mode = %04o, want 0600", got)
	}
	err := keys.WriteFileNew(path, []byte("second"))
	wantRefusal(t, err, "second write", "nothing was overwritten")
	if got, _ := os.ReadFile(path); string(got) != "first" {
		t.Errorf("content after a refused write: got %q, want %q", got, "first")
	}
	// No temporary file is left behind, neither by the write nor the refusal.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("folder holds %q, want only %q", names, "device.creds")
	}
	// A file that exists with other permissions is not touched either.
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := keys.WriteFileNew(other, []byte("y")); err == nil {
		t.Error("write over an existing 0644 file: got nil error, want a refusal")
	}
	if got := mode(t, other); got != 0o644 {
		t.Errorf("mode of the existing file = %04o, want it left at 0644", got)
	}
}

func TestWriteFileReplace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "manifest")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := keys.WriteFileReplace(path, []byte("new")); err != nil {
		t.Fatalf("replace: %v", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "new" {
		t.Errorf("content: got %q, want %q", got, "new")
	}
	if got := mode(t, path); got != 0o600 {
		t.Errorf("mode = %04o, want 0600", got)
	}
}

func TestReadSecretFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := keys.ReadSecretFile(path); err != nil || string(got) != "x" {
		t.Errorf("read a 0600 file: got %q, %v, want %q, nil", got, err, "x")
	}
	mustChmod(t, path, 0o640)
	_, err := keys.ReadSecretFile(path)
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("read a 0640 file: got %v, want an error containing %q", err, "chmod 600")
	}
	if _, err := keys.ReadSecretFile(path + ".missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("read a missing file: got %v, want fs.ErrNotExist", err)
	}
}

// userCreds makes a user JWT signed by a fresh account and returns it
// with the user's key pair.
func userCreds(t *testing.T) (string, nkeys.KeyPair) {
	t.Helper()
	acct, _ := nkeys.CreateAccount()
	user, _ := nkeys.CreateUser()
	upub, _ := user.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.Name = "laptop"
	uc.Expires = time.Now().Add(time.Hour).Unix()
	tok, err := uc.Encode(acct)
	if err != nil {
		t.Fatal(err)
	}
	return tok, user
}

func TestCredsRoundTrip(t *testing.T) {
	tok, user := userCreds(t)
	seed, _ := user.Seed()
	b, err := keys.FormatCreds(tok, seed)
	if err != nil {
		t.Fatalf("format: %v", err)
	}
	for _, want := range []string{"-----BEGIN NATS USER JWT-----", "-----BEGIN USER NKEY SEED-----", tok, string(seed)} {
		if !strings.Contains(string(b), want) {
			t.Errorf("creds text does not contain %q:\n%s", want, b)
		}
	}
	c, err := keys.ParseCreds(b)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if c.JWT != tok {
		t.Errorf("JWT: got %q, want %q", c.JWT, tok)
	}
	if !bytes.Equal(c.Seed, seed) {
		t.Errorf("seed: got %q, want %q", c.Seed, seed)
	}

	path := filepath.Join(t.TempDir(), "laptop.creds")
	if err := keys.WriteFileNew(path, b); err != nil {
		t.Fatal(err)
	}
	c, err = keys.ReadCreds(path)
	if err != nil {
		t.Fatalf("read creds: %v", err)
	}
	if c.JWT != tok || !bytes.Equal(c.Seed, seed) {
		t.Errorf("ReadCreds: got JWT %q seed %q, want %q and %q", c.JWT, c.Seed, tok, seed)
	}
}

func TestParseCredsRefuses(t *testing.T) {
	tok, user := userCreds(t)
	seed, _ := user.Seed()
	_, otherUser := userCreds(t)
	otherSeed, _ := otherUser.Seed()
	acct, _ := nkeys.CreateAccount()
	acctSeed, _ := acct.Seed()
	acctPub, _ := acct.PublicKey()
	acctJWT, err := jwt.NewAccountClaims(acctPub).Encode(mustOperator(t))
	if err != nil {
		t.Fatal(err)
	}
	format := func(tok string, seed []byte) []byte {
		b, err := jwt.FormatUserConfig(tok, seed)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := string(format(tok, seed))
	tests := []struct {
		name  string
		creds []byte
		want  string
	}{
		{name: "empty", creds: nil, want: "creds:"},
		{name: "garbage", creds: []byte("hello, world\n"), want: "creds:"},
		{name: "jwt only", creds: []byte("-----BEGIN NATS USER JWT-----\n" + tok + "\n------END NATS USER JWT------\n"), want: "creds:"},
		{name: "seed of another user", creds: []byte(strings.Replace(good, string(seed), string(otherSeed), 1)), want: "the seed is for"},
		{name: "account seed", creds: []byte(strings.Replace(good, string(seed), string(acctSeed), 1)), want: "creds:"},
		{name: "account jwt", creds: []byte(strings.Replace(good, tok, acctJWT, 1)), want: "not a user JWT"},
		{name: "truncated jwt", creds: []byte(strings.Replace(good, tok, tok[:len(tok)/2], 1)), want: "creds:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := keys.ParseCreds(tt.creds)
			wantRefusal(t, err, "parse", tt.want)
		})
	}
}

func mustOperator(t *testing.T) nkeys.KeyPair {
	t.Helper()
	kp, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func TestReadCredsRefuses(t *testing.T) {
	tok, user := userCreds(t)
	seed, _ := user.Seed()
	b, _ := keys.FormatCreds(tok, seed)
	dir := t.TempDir()

	readable := filepath.Join(dir, "readable.creds")
	if err := os.WriteFile(readable, b, 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.creds")
	if err := os.WriteFile(garbage, []byte("not creds"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		want       []string
	}{
		{name: "missing", path: filepath.Join(dir, "nope.creds"), want: []string{"no creds file at", "nope.creds"}},
		{name: "readable by others", path: readable, want: []string{"chmod 600 " + readable}},
		{name: "garbage", path: garbage, want: []string{garbage + ": creds:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := keys.ReadCreds(tt.path)
			wantRefusal(t, err, "read "+tt.path, tt.want...)
		})
	}
}

// FormatCreds writes what the jwt library's FormatUserConfig writes, without
// decoding the JWT again.
func TestFormatCredsMatchesTheJWTLibrary(t *testing.T) {
	akp, _ := nkeys.CreateAccount()
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	tok, err := jwt.NewUserClaims(upub).Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := ukp.Seed()
	got, err := keys.FormatCreds(tok, seed)
	if err != nil {
		t.Fatal(err)
	}
	want, err := jwt.FormatUserConfig(tok, seed)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("FormatCreds:\n%s\nwant:\n%s", got, want)
	}
	aseed, _ := akp.Seed()
	if _, err := keys.FormatCreds(tok, aseed); err == nil {
		t.Error("FormatCreds took an account seed")
	}
	if _, err := keys.FormatCreds("", seed); err == nil {
		t.Error("FormatCreds took an empty JWT")
	}
}
