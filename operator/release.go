package operator

import (
	"errors"
	"fmt"

	"github.com/nats-io/nkeys"
)

// ReleaseSubjectPrefix is where latch announces releases:
// latch.releases.<os>.<arch>. LATCH exports it as a stream; every person
// account imports it, and the device template lets devices subscribe.
const ReleaseSubjectPrefix = "latch.releases"

// ErrNoReleaseKey is returned for a folder without a release signing key:
// a node made from an identity exported before there were releases.
var ErrNoReleaseKey = errors.New("this data folder has no release signing key; make the node again from a fresh `latch identity export`")

// newReleaseKey makes a release signing key: an nkey (N…) whose seed is
// kept like the other seeds and whose public key devices learn at
// enrollment. It signs each release's manifest, nothing else.
func newReleaseKey() (nkeys.KeyPair, string, error) {
	kp, err := nkeys.CreatePair(nkeys.PrefixByteServer)
	if err != nil {
		return nil, "", err
	}
	pub, err := kp.PublicKey()
	return kp, pub, err
}

// ReleaseSigner is the release signing key's pair.
func (o *Tree) ReleaseSigner() (nkeys.KeyPair, error) {
	if o.ReleaseKey == "" {
		return nil, ErrNoReleaseKey
	}
	return o.Keys.Get(o.ReleaseKey)
}

// UpgradeReleaseKey gives a folder made before releases a release signing
// key. Only a deployment's first folder (the one with the operator
// identity key) makes one: nodes that joined get it with a new identity,
// so that a deployment never has two. It reports whether it changed
// anything; the server must not be running.
func (o *Tree) UpgradeReleaseKey() (bool, error) {
	if o.ReleaseKey != "" || !o.HasIdentityKey() {
		return false, nil
	}
	kp, pub, err := newReleaseKey()
	if err != nil {
		return false, err
	}
	if err := o.Keys.Put(kp); err != nil {
		return false, err
	}
	m := o.Manifest
	m.ReleaseKey = pub
	if err := writeManifest(o.Dir, m); err != nil {
		return false, fmt.Errorf("record the release key: %w", err)
	}
	o.Manifest = m
	return true, nil
}

// AdoptReleaseKey gives a folder without a release key the one id
// carries: a node made from an identity exported before there were
// releases takes the key when started with a newer identity of its
// deployment (CheckIdentity first). A folder that has a key keeps it, and
// one that differs from the identity's is refused. It reports whether it
// changed anything; the server must not be running.
func (o *Tree) AdoptReleaseKey(id *Identity) (bool, error) {
	switch {
	case id.ReleaseKey == "":
		return false, nil
	case o.ReleaseKey == id.ReleaseKey:
		return false, nil
	case o.ReleaseKey != "":
		return false, fmt.Errorf("the identity's release key %s is not this folder's %s: a deployment has one release key", id.ReleaseKey, o.ReleaseKey)
	}
	seed, ok := id.Seeds[id.ReleaseKey]
	if !ok {
		return false, errors.New("the identity names a release key but does not carry its seed; export it again")
	}
	kp, err := nkeys.FromSeed([]byte(seed))
	if err != nil {
		return false, err
	}
	if !o.Keys.Has(id.ReleaseKey) {
		if err := o.Keys.Put(kp); err != nil {
			return false, err
		}
	}
	m := o.Manifest
	m.ReleaseKey = id.ReleaseKey
	if err := writeManifest(o.Dir, m); err != nil {
		return false, fmt.Errorf("record the release key: %w", err)
	}
	o.Manifest = m
	return true, nil
}
