package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/nats-io/nkeys"
)

// signedRelease is a release of body signed by kp, as latch signs one.
func signedRelease(t *testing.T, kp nkeys.KeyPair, version string, body []byte) accounts.Release {
	t.Helper()
	sum := sha256.Sum256(body)
	m := accounts.ReleaseManifest{Version: version, OS: runtime.GOOS, Arch: runtime.GOARCH, Kind: accounts.ReleaseClient,
		File: "latch_" + version, Size: int64(len(body)), SHA256: hex.EncodeToString(sum[:]), Published: time.Now().UTC()}
	b, _ := json.Marshal(m)
	sig, _ := kp.Sign(b)
	pub, _ := kp.PublicKey()
	return accounts.Release{SignedManifest: accounts.SignedManifest{Manifest: b, Signature: base64.RawURLEncoding.EncodeToString(sig), Key: pub}, ReleaseManifest: m}
}

// A device installs only a release signed by the key it trusts, for its
// platform, newer than the one running and not withdrawn, and only a file
// that matches the signed manifest; whatever it refuses, the binary it
// runs from is left as it was.
func TestUpdateRefuses(t *testing.T) {
	key, _ := nkeys.CreatePair(nkeys.PrefixByteServer)
	keyPub, _ := key.PublicKey()
	other, _ := nkeys.CreatePair(nkeys.PrefixByteServer)
	good := []byte("the new latch binary")
	files := map[string][]byte{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	defer srv.Close()
	d := &Device{URL: srv.URL, ReleaseKey: keyPub}

	check := func(name string, r accounts.Release, running string, want string) {
		t.Helper()
		if _, err := d.CheckRelease(r, running); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want it refused with %q", name, err, want)
		}
	}
	check("another key", signedRelease(t, other, "2.0.0", good), "1.0.0", "not by the release key this device trusts")
	forged := signedRelease(t, other, "2.0.0", good)
	forged.Key = keyPub
	check("a signature by another key under this key's name", forged, "1.0.0", "does not verify")
	changed := signedRelease(t, key, "2.0.0", good)
	changed.Manifest = json.RawMessage(strings.Replace(string(changed.Manifest), `"2.0.0"`, `"9.0.0"`, 1))
	check("a changed manifest", changed, "1.0.0", "does not verify")
	check("an older version", signedRelease(t, key, "0.9.0", good), "1.0.0", "not newer")
	check("the same version", signedRelease(t, key, "1.0.0", good), "1.0.0", "not newer")
	yanked := signedRelease(t, key, "2.0.0", good)
	now := time.Now()
	yanked.Yanked = &now
	check("a yanked version", yanked, "1.0.0", "withdrawn")
	if _, err := d.CheckRelease(signedRelease(t, key, "2.0.0", good), "1.0.0"); err != nil {
		t.Fatalf("a good release: %v", err)
	}
	if _, err := (&Device{}).CheckRelease(signedRelease(t, key, "2.0.0", good), "1.0.0"); err == nil {
		t.Error("a device that learned no release key trusts a release")
	}
	if _, err := d.CheckRelease(signedRelease(t, key, "2.0.0", good), "1.0.0"); errors.Is(err, ErrUpToDate) {
		t.Error("a newer release is up to date")
	}

	// A file that is not the one the manifest signed is refused, and the
	// binary stays.
	exe := filepath.Join(t.TempDir(), "latch")
	old := []byte("the old latch binary")
	if err := os.WriteFile(exe, old, 0o755); err != nil {
		t.Fatal(err)
	}
	rel := signedRelease(t, key, "2.0.0", good)
	m, err := d.CheckRelease(rel, "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	path := "/downloads/client/" + runtime.GOOS + "/" + runtime.GOARCH + "/2.0.0"
	for name, served := range map[string][]byte{
		"tampered":  []byte("the new latch binarY"),
		"truncated": good[:5],
		"longer":    append(append([]byte{}, good...), "!"...),
	} {
		files[path] = served
		if err := d.Install(context.Background(), Update{Release: rel, Manifest: m}, exe); err == nil || !strings.Contains(err.Error(), "nothing replaced") {
			t.Errorf("%s file: %v, want it refused", name, err)
		}
		if b, _ := os.ReadFile(exe); !bytes.Equal(b, old) {
			t.Fatalf("%s file: the binary was changed", name)
		}
	}
	delete(files, path)
	if err := d.Install(context.Background(), Update{Release: rel, Manifest: m}, exe); err == nil {
		t.Error("a download the server does not have installed something")
	}
	entries, _ := os.ReadDir(filepath.Dir(exe))
	if len(entries) != 1 {
		t.Errorf("refused updates left files beside the binary: %d entries", len(entries))
	}

	// The file the manifest signed replaces the binary.
	files[path] = good
	if err := d.Install(context.Background(), Update{Release: rel, Manifest: m}, exe); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(exe); !bytes.Equal(b, good) {
		t.Error("the binary was not replaced")
	}
	if fi, _ := os.Stat(exe); fi.Mode().Perm()&0o100 == 0 {
		t.Errorf("the new binary is mode %v, not executable", fi.Mode().Perm())
	}
}
