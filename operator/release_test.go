package operator_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/latch-dev/latch/operator"
)

// init makes a release signing key; the identity carries it to every node;
// a folder made before releases gets one at its next start, and a node
// that joined never makes one of its own.
func TestReleaseKey(t *testing.T) {
	t.Parallel()
	first, err := operator.Init(filepath.Join(t.TempDir(), "n1"), "acme")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(first.ReleaseKey, "N") {
		t.Fatalf("release key %q, want an N… nkey", first.ReleaseKey)
	}
	kp, err := first.ReleaseSigner()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := kp.Sign([]byte("manifest"))
	if err != nil || kp.Verify([]byte("manifest"), sig) != nil {
		t.Fatalf("the release key signs and verifies: %v", err)
	}
	getenv := func(string) string { return "" }
	id, err := first.Identity(getenv)
	if err != nil {
		t.Fatal(err)
	}
	node, err := operator.Join(filepath.Join(t.TempDir(), "n2"), id)
	if err != nil {
		t.Fatal(err)
	}
	if node.ReleaseKey != first.ReleaseKey {
		t.Errorf("the joined node's release key %q, want the first node's %q", node.ReleaseKey, first.ReleaseKey)
	}
	if _, err := node.ReleaseSigner(); err != nil {
		t.Errorf("the joined node cannot sign releases: %v", err)
	}

	// A folder from before releases: the manifest without the key.
	old := filepath.Join(t.TempDir(), "old")
	if _, err := operator.Init(old, "acme"); err != nil {
		t.Fatal(err)
	}
	dropReleaseKey(t, old)
	op, err := operator.Load(old)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := op.ReleaseSigner(); err == nil {
		t.Fatal("a folder without a release key signs releases")
	}
	if changed, err := op.UpgradeReleaseKey(); err != nil || !changed || op.ReleaseKey == "" {
		t.Fatalf("upgrade: changed %v, %v, key %q; want a key made", changed, err, op.ReleaseKey)
	}
	if again, err := operator.Load(old); err != nil || again.ReleaseKey != op.ReleaseKey {
		t.Errorf("the key made is not in the manifest: %v", err)
	}
	if changed, err := op.UpgradeReleaseKey(); err != nil || changed {
		t.Errorf("second upgrade: changed %v, %v; want nothing to do", changed, err)
	}

	// A node that joined before releases makes none: two nodes would
	// sign with two keys.
	dropReleaseKey(t, node.Dir)
	node, err = operator.Load(node.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := node.UpgradeReleaseKey(); err != nil || changed || node.ReleaseKey != "" {
		t.Errorf("a joined node's upgrade: changed %v, %v, key %q; want nothing made", changed, err, node.ReleaseKey)
	}
	// Started with a newer identity, it takes the deployment's key.
	if changed, err := node.AdoptReleaseKey(id); err != nil || !changed || node.ReleaseKey != first.ReleaseKey {
		t.Fatalf("adopt: changed %v, %v, key %q; want the first node's %q", changed, err, node.ReleaseKey, first.ReleaseKey)
	}
	if _, err := node.ReleaseSigner(); err != nil {
		t.Errorf("the adopted key does not sign: %v", err)
	}
	if changed, err := node.AdoptReleaseKey(id); err != nil || changed {
		t.Errorf("adopt again: changed %v, %v; want nothing to do", changed, err)
	}
	other, err := op.Identity(getenv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := node.AdoptReleaseKey(other); err == nil {
		t.Error("a node took another release key over its own")
	}
}

// dropReleaseKey makes dir's manifest one from before releases.
func dropReleaseKey(t *testing.T, dir string) {
	t.Helper()
	path := filepath.Join(dir, operator.ManifestFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "release_key")
	b, _ = json.Marshal(m)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
