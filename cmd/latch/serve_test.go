package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

func TestServeSmoke(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "")
	r := s.mustAdmin(t, "account", "add", "alice")
	pub := strings.TrimSpace(r.stdout)
	if !nkeys.IsValidPublicAccountKey(pub) {
		t.Fatalf("account add printed %q, want an account public key", r.stdout)
	}
	out := filepath.Join(t.TempDir(), "laptop.creds")
	r = s.mustAdmin(t, "device", "issue", "--account", "alice", "--name", "laptop", "--out", out)
	if !nkeys.IsValidPublicUserKey(strings.TrimSpace(r.stdout)) {
		t.Fatalf("device issue printed %q, want a user public key", r.stdout)
	}
}

// The setup link is a secret: away from a terminal it goes to a 0600 file
// in the data folder, never into the log, and the file goes once somebody
// has signed up.
func TestSetupLinkStaysOutOfTheLog(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	s := mustServe(t, data)
	file := filepath.Join(data, "setup-link")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("setup link file: %v\n%s", err, s.logs)
	}
	checkMode(t, file, 0o600)
	link := strings.TrimSpace(string(b))
	if !strings.Contains(link, "/setup/") {
		t.Fatalf("setup link file holds %q", link)
	}
	token := link[strings.LastIndex(link, "/")+1:]
	if logs := s.logs.String(); strings.Contains(logs, token) || !strings.Contains(logs, file) {
		t.Errorf("the log holds the token, or does not say where the link is:\n%s", logs)
	}
	resp, err := http.Get(s.http + "/setup/" + token)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET the setup link: got %d, want 200", resp.StatusCode)
	}
	// An admin made on the command line has no passkey, so nobody can log
	// in: the next start makes a new link, and the old one is dead
	// (issue 8: it answered 404 and no new one came).
	s.mustAdmin(t, "account", "add", "alice", "--admin")
	s.stop()
	s = mustServe(t, data)
	b, err = os.ReadFile(file)
	if err != nil {
		t.Fatalf("setup link file after a restart with an admin who has no passkey: %v\n%s", err, s.logs)
	}
	next := strings.TrimSpace(string(b))
	if next == link || !strings.Contains(next, "/setup/") {
		t.Errorf("setup link after the restart: %q, want a new one (the old was %q)", next, link)
	}
	for _, c := range []struct {
		link string
		want int
	}{{link, http.StatusNotFound}, {next, http.StatusOK}} {
		resp, err := http.Get(s.http + c.link[strings.Index(c.link, "/setup/"):])
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("GET %s: got %d, want %d", c.link, resp.StatusCode, c.want)
		}
		if c.want == http.StatusNotFound && !strings.Contains(string(body), "setup link is not valid") {
			t.Errorf("the old setup link's page calls itself something else:\n%s", body)
		}
	}
}

// Once an admin can log in, the start finds no setup to do and removes
// the file of an earlier start.
func TestSetupLinkFileGoes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, setupLinkFile)
	if err := os.WriteFile(file, []byte("http://x/setup/old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	showSetupLink(&out, slog.New(slog.NewTextHandler(&out, nil)), dir, "", false)
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("the setup link file is still there once an admin can log in: %v", err)
	}
	if out.Len() != 0 {
		t.Errorf("printed %q, want nothing", out.String())
	}
}

// latch account consumers lists and clears a records bucket's consumers.
func TestAccountConsumers(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "")
	nc := mustWatch(t, s.nats, mustIssueDevice(t, s, "alice", "laptop"))
	req := `{"stream_name":"KV_records","config":{"durable_name":"hog","ack_policy":"none"}}`
	if m, err := nc.Request("$JS.API.CONSUMER.CREATE.KV_records.hog", []byte(req), 5*time.Second); err != nil || strings.Contains(string(m.Data), `"error"`) {
		t.Fatalf("a device makes a durable consumer: %v", err)
	}
	var r accounts.ConsumersReply
	decodeJSON(t, s.mustAdmin(t, "account", "consumers", "alice", "--json"), &r)
	if len(r.Consumers) != 1 || r.Consumers[0].Name != "hog" || !r.Consumers[0].Durable {
		t.Fatalf("consumers: got %+v", r)
	}
	if out := s.mustAdmin(t, "account", "consumers", "alice").stdout; !strings.Contains(out, "hog") || !strings.Contains(out, "durable") || !strings.Contains(out, "15m0s") {
		t.Errorf("consumers table:\n%s", out)
	}
	decodeJSON(t, s.mustAdmin(t, "account", "consumers", "alice", "--clear", "--json"), &r)
	if r.Cleared != 1 || len(r.Consumers) != 0 {
		t.Errorf("consumers --clear: got %+v, want 1 cleared and none left", r)
	}
}

// latch device ls counts a device's connections; latch device disconnect
// closes them without revoking it.
func TestDeviceDisconnectCommand(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "")
	creds := mustIssueDevice(t, s, "alice", "laptop")
	w := mustWatch(t, s.nats, creds)
	var ds []accounts.Device
	for deadline := time.Now().Add(10 * time.Second); ; {
		decodeJSON(t, s.mustAdmin(t, "device", "ls", "--account", "alice", "--json"), &ds)
		if len(ds) == 1 && ds[0].Conns == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("device ls: got %+v, want laptop with 1 connection", ds)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out := s.mustAdmin(t, "device", "ls", "--account", "alice").stdout; !strings.Contains(out, "SEEN") || !regexp.MustCompile(`(?m)^laptop .* online$`).MatchString(out) {
		t.Errorf("device ls table does not say laptop is online:\n%s", out)
	}
	if out := s.mustAdmin(t, "device", "disconnect", "--account", "alice", "laptop").stdout; !strings.Contains(out, "closed 1 connections of laptop") {
		t.Errorf("device disconnect: %q", out)
	}
	w.waitClosed(t, "device disconnect")
	// Offline now: when it was last seen.
	for deadline := time.Now().Add(10 * time.Second); ; {
		out := s.mustAdmin(t, "device", "ls", "--account", "alice").stdout
		if regexp.MustCompile(`(?m)^laptop .* last seen 20\d\d-`).MatchString(out) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("device ls after the disconnect does not say when laptop was last seen:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if nc, err := connectCreds(s.nats, creds); err != nil {
		t.Errorf("the laptop connecting again: %v", err)
	} else {
		nc.Close()
	}
}

// latch serve --records-history=false says what it gives up, persons get
// no history, and a restore says why it cannot be done; a bad
// $LATCH_RECORDS_HISTORY is refused.
func TestServeWithoutRecordsHistory(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "", "--records-history=false")
	if !strings.Contains(s.logs.String(), "records history is off") {
		t.Errorf("no warning that the records history is off:\n%s", s.logs.String())
	}
	s.mustAdmin(t, "account", "add", "alice")
	r := s.admin(t, "account", "restore", "alice", "--at", time.Now().UTC().Format(time.RFC3339))
	if r.err == nil || !strings.Contains(r.err.Error(), "no history") {
		t.Errorf("a restore without a history: %v\n%s", r.err, r.stdout)
	}
	r = latch(t, map[string]string{"LATCH_RECORDS_HISTORY": "sometimes"}, "serve", "--data", t.TempDir())
	if exitCode(r.err) != 2 || !strings.Contains(r.err.Error(), "LATCH_RECORDS_HISTORY") {
		t.Errorf("a bad $LATCH_RECORDS_HISTORY: %v", r.err)
	}
}

// latch account restore brings a person's records back after a device
// wiped them.
func TestAccountRestore(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "")
	nc := mustWatch(t, s.nats, mustIssueDevice(t, s, "alice", "laptop"))
	js, _ := jetstream.New(nc.Conn)
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, "records")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "note", []byte("keep me")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the history takes the write a moment later
	before := time.Now().UTC().Format(time.RFC3339Nano)
	time.Sleep(50 * time.Millisecond)
	wipe := nats.NewMsg("$KV.records.x")
	wipe.Header.Set("Nats-Rollup", "all")
	if _, err := js.PublishMsg(ctx, wipe); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "note"); err == nil {
		t.Fatal("the wipe left note")
	}
	r := s.admin(t, "account", "restore", "alice")
	if r.err == nil || exitCode(r.err) != 2 {
		t.Errorf("restore without --at: got %v, want exit 2", r.err)
	}
	if r := s.admin(t, "account", "restore", "alice", "--at", "yesterday-ish"); exitCode(r.err) != 2 || !strings.Contains(r.err.Error(), "--at") {
		t.Errorf("restore with a bad --at: got %v", r.err)
	}
	out := s.mustAdmin(t, "account", "restore", "alice", "--at", before).stdout
	if !strings.Contains(out, "1 keys put back, 1 deleted") {
		t.Errorf("restore: %q", out)
	}
	if e, err := kv.Get(ctx, "note"); err != nil || string(e.Value()) != "keep me" {
		t.Errorf("note after the restore: %v %v", e, err)
	}
}
