package operator

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/latch-dev/latch/keys"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// IdentityFormat names the format of an identity file; a reader refuses
// any other.
const IdentityFormat = "latch-identity/1"

// Identity is what makes a node a node of a deployment: the manifest (the
// operator JWT, the SYS, LATCH and LATCH_ADMIN accounts), the seeds of
// every signing key the data folder holds, the JetStream key and the route
// secret. It carries no seed of the operator identity key, which a node
// never needs, and no person's keys, which live in JetStream (encrypted,
// replicated to the node by the cluster).
type Identity struct {
	Format   string `json:"format"`
	Manifest `json:"manifest"`
	// Seeds are the signing keys' seeds, by public key.
	Seeds map[string]string `json:"seeds"`
	// Secrets are the named secrets of the key store: JetStreamKeyName,
	// RouteSecretName.
	Secrets map[string]string `json:"secrets"`
	// FirstNodeServed says the identity comes from a deployment's first
	// folder (made with init) after it ran a server: that node may bring
	// its data into the cluster, so the nodes that join with the identity
	// wait for it to make latch's buckets (Manifest.Joined). From a folder
	// that never ran (latch init on a laptop, then every node made from
	// the identity: fly.io), nobody has data to bring, nobody waits.
	FirstNodeServed bool `json:"first_node_served,omitempty"`
}

// Identity exports the tree as an Identity. The JetStream key is the one
// the server runs with: getenv's LATCH_JETSTREAM_KEY when set. A folder
// made before routes had a secret gets one now.
func (o *Tree) Identity(getenv func(string) string) (*Identity, error) {
	if _, err := o.RouteSecret(); err != nil {
		return nil, err
	}
	id := &Identity{Format: IdentityFormat, Manifest: o.Manifest, Seeds: map[string]string{}, Secrets: map[string]string{}}
	id.Joined = false // whoever joins with it is marked so by Join
	id.FirstNodeServed = !o.Joined && o.served()
	pubs, err := o.Keys.List()
	if err != nil {
		return nil, err
	}
	for _, pub := range pubs {
		if pub == o.Operator {
			continue
		}
		kp, err := o.Keys.Get(pub)
		if err != nil {
			return nil, err
		}
		seed, err := kp.Seed()
		if err != nil {
			return nil, err
		}
		id.Seeds[pub] = string(seed)
	}
	jsKey, err := o.JetStreamKey(getenv)
	if err != nil {
		return nil, err
	}
	route, err := o.RouteSecret()
	if err != nil {
		return nil, err
	}
	id.Secrets[JetStreamKeyName], id.Secrets[RouteSecretName] = jsKey, route
	return id, id.check()
}

// Encode is the identity as the file holds it.
func (id *Identity) Encode() ([]byte, error) {
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParseIdentity reads an identity file's contents and checks that it is
// whole: a valid operator JWT, every seed the key its name says, the
// signing keys the deployment needs, its JetStream key and route secret.
func ParseIdentity(b []byte) (*Identity, error) {
	var id Identity
	if err := json.Unmarshal(b, &id); err != nil {
		return nil, fmt.Errorf("identity: not an identity file (%v); make one with `latch identity export`", err)
	}
	if id.Format != IdentityFormat {
		return nil, fmt.Errorf("identity: format %q, want %q; make it again with `latch identity export` of this version", id.Format, IdentityFormat)
	}
	return &id, id.check()
}

// check reports what an identity lacks, or nil when it is whole.
func (id *Identity) check() error {
	oc, err := jwt.DecodeOperatorClaims(id.OperatorJWT)
	if err != nil {
		return fmt.Errorf("identity: the operator JWT is invalid: %v", err)
	}
	if oc.Subject != id.Operator {
		return fmt.Errorf("identity: the operator JWT is of %s, not of %s", oc.Subject, id.Operator)
	}
	for pub, seed := range id.Seeds {
		kp, err := nkeys.FromSeed([]byte(seed))
		if err != nil {
			return fmt.Errorf("identity: the seed of %s is corrupt", pub)
		}
		if got, _ := kp.PublicKey(); got != pub {
			return fmt.Errorf("identity: the seed filed under %s is of %s", pub, got)
		}
		if pub == id.Operator {
			return errors.New("identity: it holds the operator identity key, which stays with the operator; export it again with `latch identity export`")
		}
	}
	for what, pub := range map[string]string{
		"the operator signing key":  id.SigningKey,
		"SYS's signing key":         id.SystemAccount.SigningKey,
		"LATCH's signing key":       id.AppAccount.SigningKey,
		"LATCH_ADMIN's signing key": id.AdminAccount.SigningKey,
	} {
		if _, ok := id.Seeds[pub]; pub == "" || !ok {
			return fmt.Errorf("identity: %s is missing", what)
		}
	}
	for _, name := range []string{JetStreamKeyName, RouteSecretName} {
		if id.Secrets[name] == "" {
			return fmt.Errorf("identity: the secret %q is missing", name)
		}
	}
	return nil
}

// Join makes the data folder dir a node of the identity's deployment: the
// manifest, the signing keys' seeds, the JetStream key, the route secret
// and a sys.creds of its own. dir must not exist or be empty; a failure
// leaves nothing behind. There is no admin.creds: admins bring their own.
func Join(dir string, id *Identity) (*Tree, error) {
	if err := id.check(); err != nil {
		return nil, err
	}
	err := create(dir, func(tmp string) error {
		store, err := keys.Create(filepath.Join(tmp, KeysDir))
		if err != nil {
			return err
		}
		for _, pub := range slices.Sorted(maps.Keys(id.Seeds)) {
			kp, _ := nkeys.FromSeed([]byte(id.Seeds[pub]))
			if err := store.Put(kp); err != nil {
				return err
			}
		}
		for name, v := range id.Secrets {
			if strings.ContainsAny(name, `/\`) || name == "" || name[0] == '.' {
				return fmt.Errorf("identity: a secret named %q", name)
			}
			if err := store.PutSecret(name, []byte(v)); err != nil {
				return err
			}
		}
		sysSigner, err := store.Get(id.SystemAccount.SigningKey)
		if err != nil {
			return err
		}
		sysCreds, err := mintUserCreds(sysSigner, id.SystemAccount.PublicKey, "sys", nil)
		if err != nil {
			return err
		}
		if err := keys.WriteFileNew(filepath.Join(tmp, SysCredsFile), sysCreds); err != nil {
			return err
		}
		m := id.Manifest
		m.Joined = id.FirstNodeServed
		return writeManifest(tmp, m)
	})
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	return Load(dir)
}

// CheckIdentity reports whether the tree is a node of the identity's
// deployment: the same operator and accounts, and the same JetStream key
// (getenv's LATCH_JETSTREAM_KEY when set), without which the node could
// read nothing its peers replicate to it.
func (o *Tree) CheckIdentity(id *Identity, getenv func(string) string) error {
	mismatch := func(what, folder, ident string) error {
		return fmt.Errorf("the identity does not match %s: %s is %s there and %s in the identity (deployment %q vs %q); start this node with an empty --data folder to make it a node of the identity's deployment, or use the identity of this folder's",
			o.Dir, what, folder, ident, o.Name, id.Name)
	}
	for _, c := range [][3]string{
		{"the operator", o.Operator, id.Operator},
		{"SYS", o.SystemAccount.PublicKey, id.SystemAccount.PublicKey},
		{"LATCH", o.AppAccount.PublicKey, id.AppAccount.PublicKey},
		{"LATCH_ADMIN", o.AdminAccount.PublicKey, id.AdminAccount.PublicKey},
	} {
		if c[1] != c[2] {
			return mismatch(c[0], c[1], c[2])
		}
	}
	jsKey, err := o.JetStreamKey(getenv)
	if err != nil {
		return err
	}
	if jsKey != id.Secrets[JetStreamKeyName] {
		return fmt.Errorf("the identity's JetStream key is not the one %s runs with; a node must have its deployment's key (rotate keys on every node alike, then export the identity again)", o.Dir)
	}
	return nil
}

// RouteSecret is the secret the deployment's nodes show each other on
// their routes, made now in a folder made before there was one.
func (o *Tree) RouteSecret() (string, error) {
	b, err := o.Keys.Secret(RouteSecretName)
	if errors.Is(err, keys.ErrNotFound) {
		// Another process may make it at the same moment; its wins.
		perr := o.Keys.PutSecret(RouteSecretName, keys.RandomSecret(32))
		if b, err = o.Keys.Secret(RouteSecretName); err != nil && perr != nil {
			err = perr
		}
	}
	if err != nil {
		return "", fmt.Errorf("route secret: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// served reports whether a server ran on the folder: it has a JetStream
// store, or one set aside when the node joined a cluster.
func (o *Tree) served() bool {
	for _, d := range []string{"jetstream", "standalone"} {
		if entries, err := os.ReadDir(filepath.Join(o.Dir, d)); err == nil && len(entries) > 0 {
			return true
		}
	}
	return false
}
