package operator_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	found := false
	for _, e := range ac.Exports {
		found = found || string(e.Subject) == operator.DeviceAPISubject && e.Type == jwt.Service && !e.TokenReq
	}
	if !found || len(ac.Exports) != 3 {
		t.Errorf("LATCH's exports after the upgrade: %+v, want the admin's and the device service's", ac.Exports)
	}
	if changed, err := op.UpgradeAppExports(); err != nil || changed {
		t.Errorf("second upgrade: changed %v, %v; want nothing to do", changed, err)
	}
}
