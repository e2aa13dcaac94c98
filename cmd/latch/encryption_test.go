package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/keys"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Encryption at rest, shown on the real thing: a device writes a marker
// through `latch serve`, the server stops cleanly (every block flushed),
// and no file under the data folder holds the marker; the server comes
// back and the device reads it. The control runs a stock nats-server with
// JetStream unencrypted and finds the marker, so the scan can fail.

func randomMarker(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

// filesHolding returns, for each needle, the files under dir (relative)
// whose bytes or path hold it.
func filesHolding(t testing.TB, dir string, needles ...string) map[string][]string {
	t.Helper()
	found := map[string][]string{}
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		files++
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		for _, n := range needles {
			// Names count too: a file named after a key would give it away.
			if bytes.Contains(b, []byte(n)) || strings.Contains(rel, n) {
				found[n] = append(found[n], rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatalf("no files under %s to scan", dir)
	}
	for _, fs := range found {
		sort.Strings(fs)
	}
	return found
}

func TestEncryptionAtRest(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	s := mustServe(t, data)
	creds := mustIssueDevice(t, s, "alice", "laptop")
	marker := randomMarker(t, "latch-marker-")
	key := randomMarker(t, "markerkey")
	nc := mustWatch(t, s.nats, creds)
	// Put returns once the server has stored the message: JetStream acks
	// after the write. A value a few blocks' worth long, and a short one.
	putRecord(t, nc.Conn, key, marker)
	putRecord(t, nc.Conn, "long", strings.Repeat(marker+"\n", 20000))
	nc.Close()
	s.stop() // lame duck, then a clean stop: every block written out

	found := filesHolding(t, data, marker, key, "laptop", "records")
	if fs := found[marker]; len(fs) > 0 {
		t.Errorf("the marker value is in plain text in %q; want it in no file under the data folder", fs)
	}
	if fs := found[key]; len(fs) > 0 {
		t.Errorf("the record's key is in plain text in %q; want it in no file (keys are message subjects, which JetStream encrypts with the message)", fs)
	}
	if fs := found["laptop"]; len(fs) > 0 {
		t.Errorf("the device name is in plain text in %q; want it only in latch's encrypted buckets", fs)
	}
	// Stream names are folder names (…/streams/KV_records/…): JetStream
	// encrypts what is in its files, not their names. docs/security.md
	// says so. Inside files only the records history's source state names
	// the stream it copies (KV_records), as its folder name does.
	for _, f := range found["records"] {
		if dir := filepath.Dir(f); !strings.Contains(dir, "KV_records") && !strings.Contains(dir, "records_history") {
			t.Errorf("%q names the records bucket outside a stream folder's name", f)
		}
	}

	// Back up, the device reads its record through the encryption.
	s = mustServe(t, data)
	nc = mustWatch(t, s.nats, creds)
	if got := getRecord(t, nc.Conn, key); got != marker {
		t.Errorf("after a restart the device reads %q, want %q", got, marker)
	}
}

// TestEncryptionControl is the same scan on a stock nats-server with
// JetStream unencrypted: the marker is found, so the scan above can fail.
func TestEncryptionControl(t *testing.T) {
	t.Parallel()
	store := t.TempDir()
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: store,
	})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats-server did not come up")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, _ := jetstream.New(nc)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "records", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	marker := randomMarker(t, "latch-marker-")
	key := randomMarker(t, "markerkey")
	if _, err := kv.PutString(ctx, key, marker); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	ns.Shutdown()
	ns.WaitForShutdown()

	found := filesHolding(t, store, marker, key)
	if len(found[marker]) == 0 || len(found[key]) == 0 {
		t.Fatalf("unencrypted JetStream: marker in %q, key in %q; want both found (the scan must be able to see plain text)", found[marker], found[key])
	}
}

// TestJetStreamKeyRotation rotates the JetStream key as docs/security.md
// says: stop, put a new key in place, start once with the old key in
// LATCH_JETSTREAM_PREV_KEY (the server writes everything again under the
// new key as it loads), then run with the new key alone.
func TestJetStreamKeyRotation(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	s := mustServe(t, data)
	creds := mustIssueDevice(t, s, "alice", "laptop")
	marker := randomMarker(t, "latch-marker-")
	nc := mustWatch(t, s.nats, creds)
	putRecord(t, nc.Conn, "note", marker)
	nc.Close()
	s.stop()

	keyFile := filepath.Join(data, "keys", "jetstream.key")
	oldKey, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	newKey := string(keys.RandomSecret(32))

	// Once with both keys: everything is read with the old one and
	// written again with the new one.
	s = mustServeEnv(t, data, map[string]string{"LATCH_JETSTREAM_KEY": newKey, "LATCH_JETSTREAM_PREV_KEY": string(oldKey)})
	nc = mustWatch(t, s.nats, creds)
	if got := getRecord(t, nc.Conn, "note"); got != marker {
		t.Fatalf("during the rotation the device reads %q, want %q", got, marker)
	}
	putRecord(t, nc.Conn, "during", "rotation")
	nc.Close()
	s.stop()

	// Then the new key alone, now in the key file: the old one is not
	// needed any more.
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	if err := keys.WriteFileNew(keyFile, []byte(newKey)); err != nil {
		t.Fatal(err)
	}
	s = mustServe(t, data)
	nc = mustWatch(t, s.nats, creds)
	if got := getRecord(t, nc.Conn, "note"); got != marker {
		t.Errorf("after the rotation the device reads %q, want %q", got, marker)
	}
	if got := getRecord(t, nc.Conn, "during"); got != "rotation" {
		t.Errorf("after the rotation the device reads %q, want %q", got, "rotation")
	}
	nc.Close()
	s.stop()
	if found := filesHolding(t, data, marker); len(found[marker]) > 0 {
		t.Errorf("the marker is in plain text in %q after the rotation", found[marker])
	}
}
