package operator

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/latch-dev/latch/keys"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// Files of a data folder.
const (
	ManifestFile     = "latch.json"
	SysCredsFile     = "sys.creds"
	AdminCredsFile   = "admin.creds"
	KeysDir          = "keys"
	JetStreamKeyName = "jetstream.key"
	// RouteSecretName is the secret the nodes of a deployment show each
	// other on their routes.
	RouteSecretName = "route.secret"

	// AdminSubjectPrefix is where the admin service listens.
	AdminSubjectPrefix = "latch.admin.v1"
)

// Manifest is the public half of an operator tree: names, public keys and
// JWTs. Seeds live in the key store beside it.
type Manifest struct {
	Name          string     `json:"name"`
	Operator      string     `json:"operator"`
	OperatorJWT   string     `json:"operator_jwt"`
	SigningKey    string     `json:"signing_key"` // the operator signing key in use
	SystemAccount AccountJWT `json:"system_account"`
	AppAccount    AccountJWT `json:"app_account"`
	// AdminAccount is LATCH_ADMIN, where admins' creds live. Its JWT here
	// is the first one; the resolver holds the current one (with its
	// revocations), which the account service writes.
	AdminAccount AccountJWT `json:"admin_account"`
	// FirstAdmin is the user key of the admin.creds that init made, which
	// the server registers as the admin "admin" when it first starts.
	FirstAdmin string    `json:"first_admin,omitempty"`
	Created    time.Time `json:"created"`
	// ReleaseKey is the public key that signs release manifests; its seed
	// is in the key store. Devices learn it at enrollment.
	ReleaseKey string `json:"release_key,omitempty"`
	// Joined marks a folder made from an identity (Join) of a first node
	// that had run a server (Identity.FirstNodeServed): a node that joined
	// a deployment whose first node may bring data in, and makes latch's
	// buckets.
	Joined bool `json:"joined,omitempty"`
}

// AccountJWT is one of latch's own accounts.
type AccountJWT struct {
	Name       string `json:"name"`
	PublicKey  string `json:"public_key"`
	SigningKey string `json:"signing_key"` // signs the account's users
	JWT        string `json:"jwt"`
}

// Tree is an initialised data folder: the manifest and the key store.
type Tree struct {
	Dir  string
	Keys *keys.Store
	Manifest
}

// ErrNotInitialised is returned by Load for a folder that holds no
// operator tree.
var ErrNotInitialised = errors.New("not a latch data folder")

// Init creates a data folder: the operator identity key and one
// signing key, the SYS and LATCH accounts, sys.creds, admin.creds and, when
// jsKey is empty, a random JetStream encryption key. It refuses a folder
// that is already initialised or holds anything else. Everything is made in
// a temporary folder first and moved into place in one step, so a failure
// leaves nothing behind.
func Init(dir, name string) (*Tree, error) {
	if name == "" {
		name = "latch"
	}
	if err := create(dir, func(tmp string) error { return writeOperatorTree(tmp, name) }); err != nil {
		return nil, fmt.Errorf("init: %w", err)
	}
	return Load(dir)
}

// create makes the data folder dir with fill, which writes into a
// temporary folder; a failure leaves nothing behind. dir must not exist or
// be empty. A dir that does not exist is made beside it and moved into
// place in one step. One that exists, empty, is filled where it is: it
// may be a mount point (a container's volume), which cannot be replaced,
// and its parent may not be writable. The manifest goes in last, and a
// marker says meanwhile that the folder is being made, so that a start
// cut short is started again rather than taken for a data folder.
func create(dir string, fill func(tmp string) error) error {
	if err := checkFreshDir(dir); err != nil {
		return err
	}
	if _, err := os.Stat(dir); err == nil {
		return createIn(dir, fill)
	}
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, ".latch-init-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o700); err != nil {
		return err
	}
	if err := fill(tmp); err != nil {
		return err
	}
	// rename(2) replaces an empty folder, and refuses a non-empty one.
	// os.Rename refuses any existing folder, even an empty one, so the
	// system call is used directly.
	if err := syscall.Rename(tmp, dir); err != nil {
		return fmt.Errorf("move the new data folder into place: %w", err)
	}
	return nil
}

// initMarker is in a data folder while createIn makes it.
const initMarker = ".latch-init-incomplete"

// createIn fills the existing, empty folder dir: in a temporary folder
// inside it, whose entries are then moved up, the manifest last.
func createIn(dir string, fill func(tmp string) error) (err error) {
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, initMarker), nil, 0o600); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			emptyDir(dir)
		}
	}()
	tmp, err := os.MkdirTemp(dir, ".latch-init-*")
	if err != nil {
		return err
	}
	if err := fill(tmp); err != nil {
		return err
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	slices.SortFunc(entries, func(a, b fs.DirEntry) int {
		return cmp.Compare(boolInt(a.Name() == ManifestFile), boolInt(b.Name() == ManifestFile))
	})
	for _, e := range entries {
		if err := os.Rename(filepath.Join(tmp, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("move the new data folder into place: %w", err)
		}
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	os.Remove(tmp)
	return os.Remove(filepath.Join(dir, initMarker))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// emptyDir removes everything in dir but lost+found, and not dir.
func emptyDir(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != lostFound {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// lostFound is what mkfs leaves at the top of a new ext4 file system (a
// fly.io volume): a folder that holds it counts as empty.
const lostFound = "lost+found"

// syncDir makes dir's entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// checkFreshDir accepts a folder that does not exist or is empty (but for
// lost+found), or one that createIn began and did not finish (which it
// empties).
func checkFreshDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, ManifestFile)); err == nil {
		return fmt.Errorf("%s is already initialised; nothing was changed (use another --data folder to start afresh)", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, initMarker)); err == nil {
		emptyDir(dir) // an earlier init cut short: all of it is its
		return nil
	}
	for _, e := range entries {
		if e.Name() != lostFound {
			return fmt.Errorf("%s is not empty and is not a latch data folder; nothing was changed (choose an empty or new folder)", dir)
		}
	}
	return nil
}

func writeOperatorTree(dir, name string) error {
	store, err := keys.Create(filepath.Join(dir, KeysDir))
	if err != nil {
		return err
	}
	opKP, _ := nkeys.CreateOperator()
	signKP, _ := nkeys.CreateOperator()
	// SYS and LATCH keep no identity seed: with strict signing-key usage
	// an account's identity key may not sign users, so each gets a signing
	// key, and the operator signing key re-signs the accounts themselves.
	sysKP, _ := nkeys.CreateAccount()
	appKP, _ := nkeys.CreateAccount()
	sysSignKP, _ := nkeys.CreateAccount()
	appSignKP, _ := nkeys.CreateAccount()
	for _, kp := range []nkeys.KeyPair{opKP, signKP, sysSignKP, appSignKP} {
		if err := store.Put(kp); err != nil {
			return err
		}
	}
	opPub, _ := opKP.PublicKey()
	signPub, _ := signKP.PublicKey()
	sysPub, _ := sysKP.PublicKey()
	appPub, _ := appKP.PublicKey()
	sysSignPub, _ := sysSignKP.PublicKey()
	appSignPub, _ := appSignKP.PublicKey()

	m := Manifest{Name: name, Operator: opPub, SigningKey: signPub, Created: time.Now().UTC()}
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = name
	oc.SystemAccount = sysPub
	oc.SigningKeys.Add(signPub)
	// Strict signing-key usage: the server then trusts account JWTs from
	// the operator's signing keys only, so the identity key can be kept
	// offline, and users from account signing keys only.
	oc.StrictSigningKeyUsage = true
	if m.OperatorJWT, err = oc.Encode(opKP); err != nil {
		return err
	}
	sysJWT, err := systemAccountClaims(sysPub, sysSignPub).Encode(signKP)
	if err != nil {
		return err
	}
	appJWT, err := appAccountClaims(appPub, appSignPub).Encode(signKP)
	if err != nil {
		return err
	}
	m.SystemAccount = AccountJWT{Name: "SYS", PublicKey: sysPub, SigningKey: sysSignPub, JWT: sysJWT}
	m.AppAccount = AccountJWT{Name: "LATCH", PublicKey: appPub, SigningKey: appSignPub, JWT: appJWT}

	sysCreds, err := mintUserCreds(sysSignKP, sysPub, "sys", nil)
	if err != nil {
		return err
	}
	if err := keys.WriteFileNew(filepath.Join(dir, SysCredsFile), sysCreds); err != nil {
		return err
	}
	if err := addAdminAccount(dir, store, &m, appSignKP); err != nil {
		return err
	}
	relKP, relPub, err := newReleaseKey()
	if err != nil {
		return err
	}
	if err := store.Put(relKP); err != nil {
		return err
	}
	m.ReleaseKey = relPub
	if err := store.PutSecret(JetStreamKeyName, keys.RandomSecret(32)); err != nil {
		return err
	}
	if err := store.PutSecret(RouteSecretName, keys.RandomSecret(32)); err != nil {
		return err
	}
	// The manifest goes last: its presence is what makes the folder initialised.
	return writeManifest(dir, m)
}

func writeManifest(dir string, m Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return keys.WriteFileReplace(filepath.Join(dir, ManifestFile), append(b, '\n'))
}

// addAdminAccount makes LATCH_ADMIN (keys, JWT) and admin.creds, a user
// of it, and records both in m; appSigner is LATCH's signing key.
func addAdminAccount(dir string, store *keys.Store, m *Manifest, appSigner nkeys.KeyPair) error {
	adminKP, _ := nkeys.CreateAccount()
	adminSignKP, _ := nkeys.CreateAccount()
	if err := store.Put(adminSignKP); err != nil {
		return err
	}
	adminPub, _ := adminKP.PublicKey()
	adminSignPub, _ := adminSignKP.PublicKey()
	signer, err := store.Get(m.SigningKey)
	if err != nil {
		return err
	}
	ac, err := adminAccountClaims(adminPub, adminSignPub, m.AppAccount.PublicKey, appSigner)
	if err != nil {
		return err
	}
	tok, err := ac.Encode(signer)
	if err != nil {
		return err
	}
	m.AdminAccount = AccountJWT{Name: "LATCH_ADMIN", PublicKey: adminPub, SigningKey: adminSignPub, JWT: tok}
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	seed, _ := ukp.Seed()
	ujwt, err := AdminUserJWT(adminSignKP, adminPub, upub, FirstAdminName)
	if err != nil {
		return err
	}
	creds, err := keys.FormatCreds(ujwt, seed)
	if err != nil {
		return err
	}
	m.FirstAdmin = upub
	return keys.WriteFileReplace(filepath.Join(dir, AdminCredsFile), creds)
}

// UpgradeAdminAccount moves a data folder made before LATCH_ADMIN existed
// to it: admin.creds was then a user of LATCH itself, which could read
// the replies to the server's own requests (secrets among them). It makes
// LATCH_ADMIN and a new admin.creds there, and gives LATCH a new signing
// key in place of the one that signed the old admin.creds, so that no
// user made before stays valid in LATCH. It reports whether it changed
// anything; the server must not be running.
func (o *Tree) UpgradeAdminAccount() (bool, error) {
	if o.AdminAccount.PublicKey != "" {
		return false, nil
	}
	signer, err := o.Signer()
	if err != nil {
		return false, err
	}
	ac, err := jwt.DecodeAccountClaims(o.AppAccount.JWT)
	if err != nil {
		return false, fmt.Errorf("LATCH account JWT: %w", err)
	}
	newSign, _ := nkeys.CreateAccount()
	newPub, _ := newSign.PublicKey()
	if err := o.Keys.Put(newSign); err != nil {
		return false, err
	}
	fresh := appAccountClaims(o.AppAccount.PublicKey, newPub)
	ac.SigningKeys, ac.Exports = fresh.SigningKeys, fresh.Exports
	tok, err := ac.Encode(signer)
	if err != nil {
		return false, err
	}
	m := o.Manifest
	old := m.AppAccount.SigningKey
	m.AppAccount.JWT, m.AppAccount.SigningKey = tok, newPub
	if err := addAdminAccount(o.Dir, o.Keys, &m, newSign); err != nil {
		return false, err
	}
	if err := writeManifest(o.Dir, m); err != nil {
		return false, err
	}
	o.Manifest = m
	if o.Keys.Has(old) {
		o.Keys.Remove(old)
	}
	return true, nil
}

// UpgradeAppExports gives LATCH's JWT the exports of this version (the
// device API came after the first folders were made), re-signed by the
// operator signing key. It reports whether it changed anything; the
// server must not be running.
func (o *Tree) UpgradeAppExports() (bool, error) {
	ac, err := jwt.DecodeAccountClaims(o.AppAccount.JWT)
	if err != nil {
		return false, fmt.Errorf("LATCH account JWT: %w", err)
	}
	fresh := appAccountClaims(o.AppAccount.PublicKey, o.AppAccount.SigningKey)
	if exportsEqual(ac.Exports, fresh.Exports) {
		return false, nil
	}
	signer, err := o.Signer()
	if err != nil {
		return false, err
	}
	ac.Exports = fresh.Exports
	tok, err := ac.Encode(signer)
	if err != nil {
		return false, err
	}
	m := o.Manifest
	m.AppAccount.JWT = tok
	if err := writeManifest(o.Dir, m); err != nil {
		return false, err
	}
	o.Manifest = m
	return true, nil
}

// exportsEqual reports whether two lists of exports say the same, in any
// order (encoding a JWT sorts them).
func exportsEqual(a, b jwt.Exports) bool {
	canon := func(e jwt.Exports) string {
		c := slices.Clone(e)
		slices.SortFunc(c, func(x, y *jwt.Export) int { return strings.Compare(string(x.Subject), string(y.Subject)) })
		j, _ := json.Marshal(c)
		return string(j)
	}
	return canon(a) == canon(b)
}

// Preload is the JWTs of latch's own accounts (public key → JWT), which
// the resolver holds before the server starts.
func (o *Tree) Preload() map[string]string {
	m := map[string]string{}
	for _, a := range []AccountJWT{o.SystemAccount, o.AppAccount, o.AdminAccount} {
		if a.PublicKey != "" {
			m[a.PublicKey] = a.JWT
		}
	}
	return m
}

// AdminSigner loads LATCH_ADMIN's signing key, which signs admins' users.
func (o *Tree) AdminSigner() (nkeys.KeyPair, error) {
	kp, err := o.Keys.Get(o.AdminAccount.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("LATCH_ADMIN signing key: %w", err)
	}
	return kp, nil
}

// Load opens an initialised data folder.
func Load(dir string) (*Tree, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(dir); errors.Is(serr, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s does not exist; run `latch init --data %s` or `latch serve --data %s`", ErrNotInitialised, dir, dir, dir)
		}
		return nil, fmt.Errorf("%w: %s has no %s; run `latch init --data %s`", ErrNotInitialised, dir, ManifestFile, dir)
	}
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s is corrupt: %v", filepath.Join(dir, ManifestFile), err)
	}
	if _, err := jwt.DecodeOperatorClaims(m.OperatorJWT); err != nil {
		return nil, fmt.Errorf("%s: the operator JWT is invalid: %v", filepath.Join(dir, ManifestFile), err)
	}
	store, err := keys.Open(filepath.Join(dir, KeysDir))
	if err != nil {
		return nil, err
	}
	return &Tree{Dir: dir, Keys: store, Manifest: m}, nil
}

// Save writes the manifest back.
func (o *Tree) Save() error { return writeManifest(o.Dir, o.Manifest) }

// OperatorClaims decodes the operator JWT.
func (o *Tree) OperatorClaims() (*jwt.OperatorClaims, error) {
	return jwt.DecodeOperatorClaims(o.OperatorJWT)
}

// Signer loads the operator signing key in use.
func (o *Tree) Signer() (nkeys.KeyPair, error) {
	kp, err := o.Keys.Get(o.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("operator signing key: %w", err)
	}
	return kp, nil
}

// JetStreamKey returns the JetStream encryption key: getenv's
// LATCH_JETSTREAM_KEY when set, else the key store's.
func (o *Tree) JetStreamKey(getenv func(string) string) (string, error) {
	if k := getenv("LATCH_JETSTREAM_KEY"); k != "" {
		return k, nil
	}
	b, err := o.Keys.Secret(JetStreamKeyName)
	if errors.Is(err, keys.ErrNotFound) {
		return "", fmt.Errorf("JetStream key: %w; set LATCH_JETSTREAM_KEY or restore the file from a backup", err)
	}
	if err != nil {
		return "", fmt.Errorf("JetStream key: %w", err)
	}
	return string(b), nil
}

// AddSigningKey makes a new operator signing key, adds it to the operator
// JWT (re-signed with the identity key) and makes it the key in use. The
// running server trusts it after a restart, when it also re-signs every
// account with it.
func (o *Tree) AddSigningKey() (string, error) {
	idKP, err := o.identity()
	if err != nil {
		return "", err
	}
	oc, err := o.OperatorClaims()
	if err != nil {
		return "", err
	}
	kp, _ := nkeys.CreateOperator()
	pub, _ := kp.PublicKey()
	if err := o.Keys.Put(kp); err != nil {
		return "", err
	}
	oc.SigningKeys.Add(pub)
	tok, err := oc.Encode(idKP)
	if err != nil {
		o.Keys.Remove(pub)
		return "", err
	}
	o.OperatorJWT, o.SigningKey = tok, pub
	if err := o.Save(); err != nil {
		o.Keys.Remove(pub)
		return "", err
	}
	return pub, nil
}

// RemoveSigningKey drops an operator signing key from the operator JWT and
// deletes its seed. It refuses the key in use and any key that still signs
// an account in the resolver folder, since those accounts would stop
// working.
func (o *Tree) RemoveSigningKey(pub string) error {
	oc, err := o.OperatorClaims()
	if err != nil {
		return err
	}
	if !oc.SigningKeys.Contains(pub) {
		return fmt.Errorf("%s is not a signing key of operator %s; see `latch operator show`", pub, o.Name)
	}
	if pub == o.SigningKey {
		return fmt.Errorf("%s is the signing key in use; add another with `latch operator signing-key add`, restart `latch serve` so it re-signs every account, then remove this one", pub)
	}
	n, err := o.accountsSignedBy(pub)
	if err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("%d accounts are still signed by %s; restart `latch serve` so it re-signs them with %s, then try again", n, pub, o.SigningKey)
	}
	idKP, err := o.identity()
	if err != nil {
		return err
	}
	oc.SigningKeys.Remove(pub)
	tok, err := oc.Encode(idKP)
	if err != nil {
		return err
	}
	o.OperatorJWT = tok
	if err := o.Save(); err != nil {
		return err
	}
	if o.Keys.Has(pub) {
		return o.Keys.Remove(pub)
	}
	return nil
}

// accountsSignedBy counts the accounts whose JWT key issued, each
// account once: the copy in the resolver folder where there is one (it is
// the one in force, and LATCH_ADMIN's is kept up to date only there),
// else the one in the manifest.
func (o *Tree) accountsSignedBy(key string) (int, error) {
	files, err := filepath.Glob(filepath.Join(o.Dir, "resolver", "*.jwt"))
	if err != nil {
		return 0, err
	}
	issuer := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0, err
		}
		if ac, err := jwt.DecodeAccountClaims(string(b)); err == nil {
			issuer[ac.Subject] = ac.Issuer
		}
	}
	for _, t := range []string{o.SystemAccount.JWT, o.AppAccount.JWT, o.AdminAccount.JWT} {
		if ac, err := jwt.DecodeAccountClaims(t); err == nil {
			if _, ok := issuer[ac.Subject]; !ok {
				issuer[ac.Subject] = ac.Issuer
			}
		}
	}
	n := 0
	for _, is := range issuer {
		if is == key {
			n++
		}
	}
	return n, nil
}

// HasIdentityKey reports whether the operator identity seed is in the
// store; it may be kept offline after init.
func (o *Tree) HasIdentityKey() bool { return o.Keys.Has(o.Operator) }

func (o *Tree) identity() (nkeys.KeyPair, error) {
	kp, err := o.Keys.Get(o.Operator)
	if errors.Is(err, keys.ErrNotFound) {
		return nil, fmt.Errorf("the operator identity key %s is offline; copy its seed back to %s to change the operator", o.Operator, o.Keys.Path(o.Operator))
	}
	return kp, err
}

// ResignOwnAccounts re-signs the SYS and LATCH account JWTs with the
// signing key in use when another key signed them, and reports whether it
// changed anything.
func (o *Tree) ResignOwnAccounts() (bool, error) {
	signer, err := o.Signer()
	if err != nil {
		return false, err
	}
	changed := false
	for _, a := range []*AccountJWT{&o.SystemAccount, &o.AppAccount} {
		ac, err := jwt.DecodeAccountClaims(a.JWT)
		if err != nil {
			return false, fmt.Errorf("%s account JWT: %w", a.Name, err)
		}
		if ac.Issuer == o.SigningKey {
			continue
		}
		if a.JWT, err = ac.Encode(signer); err != nil {
			return false, err
		}
		changed = true
	}
	if changed {
		return true, o.Save()
	}
	return false, nil
}

// MintUser makes a user of one of latch's own accounts (SYS or LATCH),
// signed by that account's key, for the server's own connections.
func (o *Tree) MintUser(account AccountJWT, name string) (userJWT string, seed []byte, err error) {
	skp, err := o.Keys.Get(account.SigningKey)
	if err != nil {
		return "", nil, err
	}
	return NewUser(skp, account.PublicKey, name, nil, time.Time{})
}

// CheckKeys loads every seed in the key store and each secret `latch
// serve` needs, so that `latch operator show` reports a corrupt, misplaced
// or world-readable seed file, with how to fix it, before the server
// trips over it.
func (op *Tree) CheckKeys(getenv func(string) string) error {
	pubs, err := op.Keys.List()
	if err != nil {
		return fmt.Errorf("key store %s: %w", op.Keys.Dir(), err)
	}
	for _, pub := range pubs {
		if _, err := op.Keys.Get(pub); err != nil {
			return err
		}
	}
	if _, err := op.Signer(); err != nil {
		return err
	}
	for _, a := range []AccountJWT{op.SystemAccount, op.AppAccount, op.AdminAccount} {
		if a.SigningKey == "" {
			continue // LATCH_ADMIN before `latch serve` upgrades the folder
		}
		if _, err := op.Keys.Get(a.SigningKey); err != nil {
			return fmt.Errorf("%s account signing key: %w", a.Name, err)
		}
	}
	_, err = op.JetStreamKey(getenv)
	return err
}
