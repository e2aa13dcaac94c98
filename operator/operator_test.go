package operator_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/latch-dev/latch/operator"
	"github.com/nats-io/jwt/v2"
)

// TestInitIntoEmptyFolder checks that a data folder may exist
// beforehand when it is empty (a fresh volume, `mkdir data`).
func TestInitIntoEmptyFolder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	op, err := operator.Init(dir, "test")
	if err != nil {
		t.Fatalf("init an empty folder: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, operator.ManifestFile)); err != nil {
		t.Errorf("manifest: %v", err)
	}
	if !op.HasIdentityKey() {
		t.Error("HasIdentityKey() = false, want true after init")
	}
	_, err = operator.Init(dir, "test")
	if err == nil || !strings.Contains(err.Error(), "already initialised") {
		t.Errorf("init again: got %v, want an error containing %q", err, "already initialised")
	}
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = operator.Init(full, "test")
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("init a folder with a file in it: got %v, want an error containing %q", err, "not empty")
	}
}

// A volume's mount point is filled where it is: it cannot be replaced by
// a folder made beside it (rename(2) refuses a mount point), and its
// parent may not be writable. An init cut short there is started again.
func TestInitIntoMountPoint(t *testing.T) {
	t.Parallel()
	latchtest.NeedRoot(t, "it bind-mounts a folder")
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mount %s on itself: %v", dir, err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	if err := syscall.Rename(t.TempDir(), dir); err == nil {
		t.Fatal("rename(2) replaced the mount point; the test shows nothing")
	}

	// A new ext4 file system's lost+found, and what an init cut short
	// leaves: its marker, part of the tree.
	if err := os.Mkdir(filepath.Join(dir, "lost+found"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".latch-init-incomplete"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	op, err := operator.Init(dir, "test")
	if err != nil {
		t.Fatalf("init a mount point: %v", err)
	}
	if _, err := operator.Load(dir); err != nil || !op.HasIdentityKey() {
		t.Fatalf("load what init made: %v", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".latch-init") {
			t.Errorf("init left %s behind", e.Name())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "lost+found")); err != nil {
		t.Errorf("lost+found: %v; want it left alone", err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the data folder's mode: %v, %v; want 0700", fi.Mode().Perm(), err)
	}
}

// A data folder made before the device service gets LATCH's export at its
// next start, once: a folder already up to date is left as it is.
func TestUpgradeAppExports(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	op, err := operator.Init(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := op.UpgradeAppExports(); err != nil || changed {
		t.Fatalf("upgrade of a new folder: changed %v, %v; want nothing to do", changed, err)
	}
	// As an older latch made it: the admin exports alone.
	ac, err := jwt.DecodeAccountClaims(op.AppAccount.JWT)
	if err != nil {
		t.Fatal(err)
	}
	var kept jwt.Exports
	for _, e := range ac.Exports {
		if string(e.Subject) != operator.DeviceAPISubject {
			kept = append(kept, e)
		}
	}
	ac.Exports = kept
	signer, err := op.Signer()
	if err != nil {
		t.Fatal(err)
	}
	if op.AppAccount.JWT, err = ac.Encode(signer); err != nil {
		t.Fatal(err)
	}
	if err := op.Save(); err != nil {
		t.Fatal(err)
	}
	op, err = operator.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := op.UpgradeAppExports(); err != nil || !changed {
		t.Fatalf("upgrade of an old folder: changed %v, %v; want the export added", changed, err)
	}
	op, err = operator.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	ac, _ = jwt.DecodeAccountClaims(op.AppAccount.JWT)
	found, releases := false, false
	for _, e := range ac.Exports {
		found = found || string(e.Subject) == operator.DeviceAPISubject && e.Type == jwt.Service && !e.TokenReq
		releases = releases || string(e.Subject) == operator.ReleaseSubjectPrefix+".>" && e.Type == jwt.Stream && !e.TokenReq
	}
	if !found || !releases || len(ac.Exports) != 4 {
		t.Errorf("LATCH's exports after the upgrade: %d, device service %v, releases %v; want the admin's two, the device service's and the releases'",
			len(ac.Exports), found, releases)
	}
	if changed, err := op.UpgradeAppExports(); err != nil || changed {
		t.Errorf("second upgrade: changed %v, %v; want nothing to do", changed, err)
	}
}

// An identity exported from one data folder makes an empty folder a node
// of the same deployment: the same operator, accounts, signing keys,
// JetStream key and route secret, without the operator identity key.
func TestIdentityJoin(t *testing.T) {
	t.Parallel()
	getenv := func(string) string { return "" }
	first, err := operator.Init(filepath.Join(t.TempDir(), "n1"), "acme")
	if err != nil {
		t.Fatal(err)
	}
	id, err := first.Identity(getenv)
	if err != nil {
		t.Fatal(err)
	}
	b, err := id.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := id.Seeds[first.Operator]; ok || strings.Contains(string(b), mustSeed(t, first, first.Operator)) {
		t.Error("the identity carries the operator identity key's seed")
	}
	parsed, err := operator.ParseIdentity(b)
	if err != nil {
		t.Fatalf("parse the exported identity: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "n2")
	node, err := operator.Join(dir, parsed)
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	if node.Operator != first.Operator || node.SigningKey != first.SigningKey || node.AppAccount != first.AppAccount ||
		node.SystemAccount != first.SystemAccount || node.AdminAccount != first.AdminAccount || node.OperatorJWT != first.OperatorJWT {
		t.Errorf("the joined node's manifest differs from the first node's:\n%+v\n%+v", node.Manifest, first.Manifest)
	}
	if node.HasIdentityKey() {
		t.Error("the joined node holds the operator identity key")
	}
	// The first folder never ran a server: nobody waits for it.
	if node.Joined || first.Joined || parsed.FirstNodeServed {
		t.Errorf("joined: the first node's folder %v, the joined node's %v, first node served %v; want all false (it never ran)",
			first.Joined, node.Joined, parsed.FirstNodeServed)
	}
	if err := os.MkdirAll(filepath.Join(first.Dir, "jetstream", "jsa"), 0o700); err != nil {
		t.Fatal(err)
	}
	served, err := first.Identity(getenv)
	if err != nil || !served.FirstNodeServed {
		t.Fatalf("an identity from a first node that ran: first node served %v, %v; want true", served.FirstNodeServed, err)
	}
	if waits, err := operator.Join(filepath.Join(t.TempDir(), "n3"), served); err != nil || !waits.Joined {
		t.Errorf("a node joined with it: joined %v, %v; want true (it waits for the first node)", waits != nil && waits.Joined, err)
	}
	if again, err := node.Identity(getenv); err != nil || again.Joined {
		t.Errorf("an identity exported from a joined node says joined (%v, %v); whoever joins with it is marked so by Join", again.Joined, err)
	}
	for _, pub := range []string{first.SigningKey, first.SystemAccount.SigningKey, first.AppAccount.SigningKey, first.AdminAccount.SigningKey} {
		if mustSeed(t, node, pub) != mustSeed(t, first, pub) {
			t.Errorf("seed of %s differs", pub)
		}
	}
	if err := node.CheckKeys(getenv); err != nil {
		t.Errorf("the joined node's keys: %v", err)
	}
	k1, _ := first.JetStreamKey(getenv)
	k2, _ := node.JetStreamKey(getenv)
	r1, _ := first.RouteSecret()
	r2, _ := node.RouteSecret()
	if k1 != k2 || r1 != r2 || r1 == "" {
		t.Error("the joined node's JetStream key or route secret differs from the first node's")
	}
	if _, err := os.Stat(filepath.Join(dir, operator.SysCredsFile)); err != nil {
		t.Errorf("sys.creds: %v", err)
	}
	if err := node.CheckIdentity(parsed, getenv); err != nil {
		t.Errorf("the joined node against its identity: %v", err)
	}

	// Joining again, or into a folder that holds something, changes nothing.
	if _, err := operator.Join(dir, parsed); err == nil || !strings.Contains(err.Error(), "already initialised") {
		t.Errorf("join an initialised folder: got %v, want already initialised", err)
	}
	// Another deployment's folder is refused, and so is a folder whose
	// JetStream key is not the identity's.
	other, err := operator.Init(filepath.Join(t.TempDir(), "other"), "other")
	if err != nil {
		t.Fatal(err)
	}
	if err := other.CheckIdentity(parsed, getenv); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("another deployment's folder: got %v, want does not match", err)
	}
	rotated := func(k string) string {
		if k == "LATCH_JETSTREAM_KEY" {
			return "another key"
		}
		return ""
	}
	if err := node.CheckIdentity(parsed, rotated); err == nil || !strings.Contains(err.Error(), "JetStream key") {
		t.Errorf("a folder with another JetStream key: got %v, want a JetStream key mismatch", err)
	}
}

// A damaged or incomplete identity is refused with what is wrong, and
// Join leaves nothing behind.
func TestIdentityRefused(t *testing.T) {
	t.Parallel()
	first, err := operator.Init(filepath.Join(t.TempDir(), "n1"), "acme")
	if err != nil {
		t.Fatal(err)
	}
	id, err := first.Identity(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(m map[string]any)
		want   string
	}{
		{"not json", nil, "not an identity file"},
		{"format", func(m map[string]any) { m["format"] = "latch-identity/0" }, "format"},
		{"no signing key", func(m map[string]any) { delete(m["seeds"].(map[string]any), first.SigningKey) }, "operator signing key is missing"},
		{"wrong seed", func(m map[string]any) {
			seeds := m["seeds"].(map[string]any)
			seeds[first.SigningKey] = seeds[first.AppAccount.SigningKey]
		}, "is of"},
		{"no route secret", func(m map[string]any) { delete(m["secrets"].(map[string]any), operator.RouteSecretName) }, "route.secret"},
		{"bad operator JWT", func(m map[string]any) { m["manifest"].(map[string]any)["operator_jwt"] = "x" }, "operator JWT is invalid"},
	} {
		b, _ := id.Encode()
		if tc.change != nil {
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			tc.change(m)
			b, _ = json.Marshal(m)
		} else {
			b = []byte("{not json")
		}
		_, err := operator.ParseIdentity(b)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	// A folder that cannot be made leaves nothing: the parent is a file.
	parent := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(parent, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := operator.Join(filepath.Join(parent, "n2"), id); err == nil {
		t.Error("join under a file: no error")
	}
}

func mustSeed(t *testing.T, o *operator.Tree, pub string) string {
	t.Helper()
	kp, err := o.Keys.Get(pub)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	return string(seed)
}
