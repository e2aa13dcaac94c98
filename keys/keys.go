// Package keys makes nkeys, keeps their seeds in an on-disk store and reads
// and writes the decorated .creds format every NATS client understands.
//
// The store is a folder of mode 0700 holding one file of mode 0600 per seed,
// named after the key's public key. A seed file that others can read is
// refused rather than used: a leaked operator or account seed lets anyone
// sign accounts and users, so the store would rather stop than go on.
package keys

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// ErrNotFound is returned when the store holds no seed for a public key.
var ErrNotFound = errors.New("no such key")

// Store is an on-disk seed store.
type Store struct {
	dir string
}

// Create makes the folder dir (mode 0700) if it is missing and opens it.
func Create(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create key store: %w", err)
	}
	return Open(dir)
}

// Open opens an existing store. It refuses a folder that group or others
// can read or enter.
func Open(dir string) (*Store, error) {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no key store at %s", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("open key store: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("key store %s is not a folder", dir)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("key store %s has mode %04o, which lets others in; run `chmod 700 %s`", dir, perm, dir)
	}
	return &Store{dir: dir}, nil
}

// Dir is the store's folder.
func (s *Store) Dir() string { return s.dir }

// Path is where the seed of pub is (or would be) kept.
func (s *Store) Path(pub string) string {
	return filepath.Join(s.dir, pub+".nk")
}

// Put stores the seed of kp, replacing nothing: storing a key that is
// already there is an error.
func (s *Store) Put(kp nkeys.KeyPair) error {
	pub, err := kp.PublicKey()
	if err != nil {
		return err
	}
	seed, err := kp.Seed()
	if err != nil {
		return err
	}
	return WriteFileNew(s.Path(pub), seed)
}

// Get loads the key pair whose public key is pub.
func (s *Store) Get(pub string) (nkeys.KeyPair, error) {
	seed, err := ReadSecretFile(s.Path(pub))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s is not in %s", ErrNotFound, pub, s.dir)
	}
	if err != nil {
		return nil, err
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		return nil, fmt.Errorf("seed file %s is corrupt (%v); restore it from a backup", s.Path(pub), err)
	}
	got, err := kp.PublicKey()
	if err != nil || got != pub {
		return nil, fmt.Errorf("seed file %s holds the seed of another key (%s); restore it from a backup", s.Path(pub), got)
	}
	return kp, nil
}

// Has reports whether the store holds the seed of pub.
func (s *Store) Has(pub string) bool {
	_, err := os.Stat(s.Path(pub))
	return err == nil
}

// Remove deletes the seed of pub.
func (s *Store) Remove(pub string) error {
	err := os.Remove(s.Path(pub))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s is not in %s", ErrNotFound, pub, s.dir)
	}
	return err
}

// List returns the public keys the store holds, sorted.
func (s *Store) List() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var pubs []string
	for _, e := range entries {
		if pub, ok := strings.CutSuffix(e.Name(), ".nk"); ok && nkeys.IsValidPublicKey(pub) {
			pubs = append(pubs, pub)
		}
	}
	sort.Strings(pubs)
	return pubs, nil
}

// PutSecret stores a named secret that is not an nkey (the JetStream
// encryption key) beside the seeds, with the same care.
func (s *Store) PutSecret(name string, value []byte) error {
	return WriteFileNew(filepath.Join(s.dir, name), value)
}

// Secret loads a named secret stored with PutSecret.
func (s *Store) Secret(name string) ([]byte, error) {
	b, err := ReadSecretFile(filepath.Join(s.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no secret %q in %s", ErrNotFound, name, s.dir)
	}
	return b, err
}

// RandomSecret returns n random bytes, hex encoded.
func RandomSecret(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return []byte(hex.EncodeToString(b))
}

// ReadSecretFile reads a file that must be readable by its owner only.
func ReadSecretFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %04o, so others can read a secret; run `chmod 600 %s` and consider the secret leaked", path, perm, path)
	}
	return os.ReadFile(path)
}

// WriteFileNew writes data to a new file of mode 0600. It never replaces an
// existing file, and a reader never sees a half-written one: the data goes
// to a temporary file that is linked into place only when complete.
func WriteFileNew(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists; nothing was overwritten", path)
		}
		return err
	}
	return nil
}

// WriteFileReplace writes data to path with mode 0600, replacing any file
// there in one step.
func WriteFileReplace(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	return os.Rename(tmp, path)
}

// writeTemp writes data, synced, to a new 0600 file beside path and returns
// its name.
func writeTemp(path string, data []byte) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return "", err
	}
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// Creds is the content of a .creds file: a user JWT and the user's seed.
type Creds struct {
	JWT  string
	Seed []byte
}

// FormatCreds returns the decorated .creds text for a user JWT and seed.
// The JWT is written as given, without decoding it again: callers hand
// over one they just signed or received for this seed.
func FormatCreds(userJWT string, seed []byte) ([]byte, error) {
	if userJWT == "" || strings.ContainsAny(userJWT, " \t\r\n") {
		return nil, errors.New("creds: the user JWT is empty or malformed")
	}
	if !bytes.HasPrefix(bytes.TrimSpace(seed), []byte("SU")) {
		return nil, errors.New("creds: the seed is not a user seed")
	}
	deco, err := jwt.DecorateSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("creds: %w", err)
	}
	var b bytes.Buffer
	b.WriteString("-----BEGIN NATS USER JWT-----\n")
	b.WriteString(userJWT)
	b.WriteString("\n------END NATS USER JWT------\n\n")
	b.Write(deco)
	return b.Bytes(), nil
}

// ParseCreds reads decorated .creds text. It checks that the seed is a user
// seed and that it belongs to the JWT's subject.
func ParseCreds(b []byte) (Creds, error) {
	tok, err := jwt.ParseDecoratedJWT(b)
	if err != nil {
		return Creds{}, fmt.Errorf("creds: %w", err)
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return Creds{}, fmt.Errorf("creds: the JWT is not a user JWT: %w", err)
	}
	kp, err := jwt.ParseDecoratedUserNKey(b)
	if err != nil {
		return Creds{}, fmt.Errorf("creds: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return Creds{}, fmt.Errorf("creds: %w", err)
	}
	if pub != uc.Subject {
		return Creds{}, fmt.Errorf("creds: the seed is for %s but the JWT is for %s", pub, uc.Subject)
	}
	seed, err := kp.Seed()
	if err != nil {
		return Creds{}, fmt.Errorf("creds: %w", err)
	}
	return Creds{JWT: tok, Seed: seed}, nil
}

// ReadCreds reads and parses a .creds file, refusing one others can read.
func ReadCreds(path string) (Creds, error) {
	b, err := ReadSecretFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Creds{}, fmt.Errorf("no creds file at %s", path)
	}
	if err != nil {
		return Creds{}, err
	}
	c, err := ParseCreds(b)
	if err != nil {
		return Creds{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
