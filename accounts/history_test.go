package accounts_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A device that wipes its person's records (a put with Nats-Rollup: all,
// or a purge of every key) destroys nothing for good: the history keeps
// every write, the device cannot reach it, and a restore brings the
// records back as they were before the wipe.
func TestWipeThenRestore(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	alice := s.MustCreatePerson(t, "alice")
	dev := s.MustConnect(t, s.MustIssueDevice(t, "alice", "laptop").CredsFile)
	kv := mustRecords(t, dev.Conn)
	for k, v := range map[string]string{"note": "one", "todo": "milk", "gone": "soon"} {
		mustPut(t, kv, k, v)
	}
	mustPut(t, kv, "note", "two")
	if err := kv.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	// The history takes what the bucket stored a moment later.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		h, err := s.Service.RecordsHistory(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if h.Writes == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the history holds %d writes, want 5", h.Writes)
		}
	}
	time.Sleep(10 * time.Millisecond)
	before := time.Now()
	time.Sleep(50 * time.Millisecond)

	// The wipe: one message with a rollup of the whole stream, then a
	// purge of the key it left.
	wipe := nats.NewMsg("$KV.records.x")
	wipe.Header.Set("Nats-Rollup", "all")
	wipe.Header.Set("KV-Operation", "PURGE")
	js, _ := jetstream.New(dev.Conn)
	if _, err := js.PublishMsg(ctx, wipe); err != nil {
		t.Fatalf("the wipe: %v", err)
	}
	if err := kv.Purge(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if keys, _ := kv.Keys(ctx); len(keys) != 0 {
		t.Fatalf("after the wipe the bucket still has %v", keys)
	}
	mustPut(t, kv, "after", "the wipe")

	// The device cannot reach the history.
	wantPublishRefused(t, dev, "$JS.API.STREAM.INFO."+accounts.HistoryStream, request("$JS.API.STREAM.INFO."+accounts.HistoryStream))
	wantPublishRefused(t, dev, "$JS.API.STREAM.PURGE."+accounts.HistoryStream, request("$JS.API.STREAM.PURGE."+accounts.HistoryStream))

	r, err := s.Service.RestoreRecords(ctx, "alice", before)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if r.Put != 2 || r.Deleted != 1 {
		t.Errorf("restore: got %+v, want 2 put (note, todo) and 1 deleted (after)", r)
	}
	got := map[string]string{}
	keys, err := kv.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		got[k] = string(e.Value())
	}
	if len(got) != 2 || got["note"] != "two" || got["todo"] != "milk" {
		t.Errorf("records after the restore: got %v, want note=two, todo=milk", got)
	}

	// A restore to a time before the history is refused with where it
	// reaches back to.
	_, err = s.Service.RestoreRecords(ctx, "alice", time.Now().Add(-48*time.Hour))
	if !strings.Contains(errString(err), "reaches back to") {
		t.Errorf("restore to before the history: got %v", err)
	}
	if acts, _ := auditActions(t, s, alice.Account, 20); !slices.Contains(acts, accounts.ActionRecordsRestore) {
		t.Errorf("audit: %v, want %s", acts, accounts.ActionRecordsRestore)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Without the records history (latch serve --records-history=false) a
// person gets a bucket and no history: a restore says why it cannot be
// done. Turned on again, the next start's Refresh gives them one, and it
// takes their writes from then on.
func TestNoRecordsHistory(t *testing.T) {
	dir := t.TempDir()
	ctx := testCtx(t)
	s := latchtest.MustStart(t, latchtest.Options{Dir: dir, NoRecordsHistory: true})
	s.MustCreatePerson(t, "alice")
	creds := s.MustIssueDevice(t, "alice", "laptop").CredsFile
	mustPut(t, mustRecords(t, s.MustConnect(t, creds).Conn), "note", "one")
	_, err := s.Service.RecordsHistory(ctx, "alice")
	if !errors.Is(err, accounts.ErrNotFound) || !strings.Contains(err.Error(), "--records-history=false") {
		t.Fatalf("the history of a person made without one: %v, want not found, naming the flag", err)
	}
	if _, err := s.Service.RestoreRecords(ctx, "alice", time.Now()); !errors.Is(err, accounts.ErrNotFound) {
		t.Fatalf("a restore without a history: %v, want not found", err)
	}
	page, err := s.Service.Records(ctx, "alice", accounts.RecordQuery{})
	if err != nil || len(page.Records) != 1 || !page.NoHistory || page.Usage.History != 0 {
		t.Fatalf("the records page without a history: %+v, %v", page, err)
	}
	// A start without it leaves the person as they are.
	if _, _, err := s.Service.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.Service.Person(ctx, "alice"); p.BucketVersion != 1 {
		t.Fatalf("bucket version %d without a history, want 1", p.BucketVersion)
	}
	s.Stop()

	s = latchtest.MustStart(t, latchtest.Options{Dir: dir})
	if _, _, err := s.Service.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.Service.Person(ctx, "alice"); p.BucketVersion != 2 {
		t.Fatalf("bucket version %d after a start with the history, want 2", p.BucketVersion)
	}
	mustPut(t, mustRecords(t, s.MustConnect(t, creds).Conn), "note", "two")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		h, err := s.Service.RecordsHistory(ctx, "alice")
		if err == nil && h.Writes >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the history after it was turned on: %+v, %v; want the write made since", h, err)
		}
	}
}
