package accounts_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/nats-io/nats.go/jetstream"
)

// deviceRecords connects a new device of person and opens its records.
func deviceRecords(t testing.TB, s *latchtest.Stack, person, name string) jetstream.KeyValue {
	t.Helper()
	d := s.MustIssueDevice(t, person, name)
	return mustRecords(t, s.MustConnect(t, d.CredsFile).Conn)
}

func keysOf(rs []accounts.Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Key
	}
	return out
}

// wantClients waits until the server has n client connections: a records
// session's connection is gone once the call returns, or soon after.
func wantClients(t testing.TB, s *latchtest.Stack, n int, why string) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for s.Server.NumClients() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d client connections, want %d", why, s.Server.NumClients(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRecordsSessionIsShortLived(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	s.MustCreatePerson(t, "alice")
	// The stack's own two (SYS and LATCH), once the connection that made
	// the person's bucket has gone.
	base := 2
	wantClients(t, s, base, "the stack alone")

	rs, err := s.Service.OpenRecords(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if exp := time.Until(rs.Expires()); exp <= 0 || exp > 5*time.Minute {
		t.Errorf("records session expires in %v; want within 5 minutes", exp)
	}
	wantClients(t, s, base+1, "session open")
	rs.Close()
	wantClients(t, s, base, "session closed")

	// The one-shot calls leave no connection behind.
	if _, err := s.Service.Records(ctx, "alice", accounts.RecordQuery{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Service.Record(ctx, "alice", "nothing", 0); !errors.Is(err, accounts.ErrNotFound) {
		t.Errorf("record of an empty bucket: got %v, want not found", err)
	}
	wantClients(t, s, base, "after listing and reading records")

	if _, err := s.Service.OpenRecords(ctx, "nobody"); !errors.Is(err, accounts.ErrNotFound) {
		t.Errorf("records of nobody: got %v, want not found", err)
	}
}

func TestRecords(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	s.MustCreatePerson(t, "alice")
	s.MustCreatePerson(t, "bob")
	kv := deviceRecords(t, s, "alice", "laptop")
	for i := range 25 {
		mustPut(t, kv, fmt.Sprintf("notes.%02d", i), fmt.Sprintf("note %d", i))
	}
	mustPut(t, kv, "todo", "milk")
	mustPut(t, kv, "todo", "milk, eggs")
	mustPut(t, kv, "gone", "soon")
	if err := kv.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}

	page, err := s.Service.Records(ctx, "alice", accounts.RecordQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"notes.00", "notes.01", "notes.02", "notes.03", "notes.04", "notes.05", "notes.06", "notes.07", "notes.08", "notes.09"}
	if got := keysOf(page.Records); !slices.Equal(got, want) || page.Total != 26 || !page.More || page.Before != 0 {
		t.Errorf("first page: got %q, total %d, more %v, before %d; want %q, 26, true, 0", got, page.Total, page.More, page.Before, want)
	}
	if page.Revision != 29 {
		t.Errorf("page revision: got %d, want 29 (the bucket's last)", page.Revision)
	}
	if r := page.Records[0]; r.Size != len("note 0") || r.Revision != 1 || r.Op != accounts.RecordPut || time.Since(r.Time) > time.Minute {
		t.Errorf("notes.00: got %+v, want size 6, revision 1, a put of just now", r)
	}

	page, err = s.Service.Records(ctx, "alice", accounts.RecordQuery{After: "notes.19", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"notes.20", "notes.21", "notes.22", "notes.23", "notes.24", "todo"}
	if got := keysOf(page.Records); !slices.Equal(got, want) || page.More || page.Before != 20 {
		t.Errorf("last page: got %q, more %v, before %d; want %q, false, 20 (deleted keys left out)", got, page.More, page.Before, want)
	}
	if todo := page.Records[5]; todo.Revision != 27 || todo.Size != len("milk, eggs") {
		t.Errorf("todo: got revision %d, size %d; want 27, %d", todo.Revision, todo.Size, len("milk, eggs"))
	}

	page, err = s.Service.Records(ctx, "alice", accounts.RecordQuery{Prefix: "notes.1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != 10 || page.Total != 10 || page.Records[0].Key != "notes.10" {
		t.Errorf("prefix notes.1: got %q, total %d; want notes.10 to notes.19", keysOf(page.Records), page.Total)
	}

	// A key with its history, newest first.
	d, err := s.Service.Record(ctx, "alice", "todo", 0)
	if err != nil {
		t.Fatal(err)
	}
	if string(d.Value) != "milk, eggs" || d.Revision != 27 || d.Latest != 27 || len(d.History) != 2 || d.History[1].Revision != 26 {
		t.Errorf("todo: got %q at %d (latest %d), history %+v; want \"milk, eggs\" at 27, history 27, 26", d.Value, d.Revision, d.Latest, d.History)
	}
	d, err = s.Service.Record(ctx, "alice", "todo", 26)
	if err != nil || string(d.Value) != "milk" || d.Latest != 27 {
		t.Errorf("todo at 26: got %q, latest %d, %v; want \"milk\", 27", d.Value, d.Latest, err)
	}
	if _, err := s.Service.Record(ctx, "alice", "todo", 3); !errors.Is(err, accounts.ErrNotFound) {
		t.Errorf("todo at a revision of another key: got %v, want not found", err)
	}
	d, err = s.Service.Record(ctx, "alice", "gone", 0)
	if err != nil || !d.Deleted() || d.Op != accounts.RecordDelete || len(d.History) != 2 {
		t.Errorf("deleted key: got %+v, %v; want its delete and a history of 2", d.Record, err)
	}
	if _, err := s.Service.Record(ctx, "alice", "bad key!", 0); !errors.Is(err, accounts.ErrInvalid) {
		t.Errorf("invalid key: got %v, want invalid", err)
	}

	// Each person reads their own bucket only.
	if _, err := s.Service.Record(ctx, "bob", "todo", 0); !errors.Is(err, accounts.ErrNotFound) {
		t.Errorf("bob reads todo: got %v, want not found (alice's records are not his)", err)
	}
	if page, err := s.Service.Records(ctx, "bob", accounts.RecordQuery{}); err != nil || page.Total != 0 {
		t.Errorf("bob's records: got %d keys, %v; want none", page.Total, err)
	}

	// A delete from the GUI is a delete the devices see.
	w, err := kv.Watch(ctx, "todo", jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	del, err := s.Service.DeleteRecord(ctx, "alice", "todo")
	if err != nil {
		t.Fatal(err)
	}
	// A purge: the key's earlier revisions go, and their room.
	if del.Op != accounts.RecordPurge || del.Revision != 30 {
		t.Errorf("delete: got %+v, want a purge at revision 30", del)
	}
	if e := nextUpdate(t, w); e.Operation() != jetstream.KeyValuePurge || e.Revision() != 30 {
		t.Errorf("device watch: got %v at %d, want the purge at 30", e.Operation(), e.Revision())
	}
	if h, err := kv.History(ctx, "todo"); err != nil || len(h) != 1 {
		t.Errorf("the key's history after the delete: %d entries, %v; want the purge alone", len(h), err)
	}
	wantNoKey(t, kv, "todo")
	if _, err := s.Service.DeleteRecord(ctx, "alice", "todo"); !errors.Is(err, accounts.ErrNotFound) {
		t.Errorf("delete a deleted key: got %v, want not found", err)
	}
	alice, _ := s.Service.Person(ctx, "alice")
	if es := auditOf(t, s, alice.Account); es[len(es)-1].Action != accounts.ActionRecordDelete {
		t.Errorf("audit: got %q last, want %q", es[len(es)-1].Action, accounts.ActionRecordDelete)
	}
}

// nextChange waits for a change from WatchRecords.
func nextChange(t testing.TB, ch <-chan accounts.RecordChange) accounts.RecordChange {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("the watch ended")
		}
		return c
	case <-time.After(waitFor):
		t.Fatalf("no change within %v", waitFor)
	}
	return accounts.RecordChange{}
}

func TestWatchRecords(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	// The watch's service user lives 3 seconds: the watch must move to a
	// fresh one and lose nothing.
	s.Service.SetWatchTTL(3 * time.Second)
	ctx := testCtx(t)
	s.MustCreatePerson(t, "alice")
	kv := deviceRecords(t, s, "alice", "laptop")
	mustPut(t, kv, "a", "1")                    // 1
	mustPut(t, kv, "b", "1")                    // 2
	if err := kv.Delete(ctx, "b"); err != nil { // 3
		t.Fatal(err)
	}
	page, err := s.Service.Records(ctx, "alice", accounts.RecordQuery{})
	if err != nil {
		t.Fatal(err)
	}

	alice, _ := s.Service.Person(ctx, "alice")
	devices := connectedUsers(t, s, alice.Account)
	wctx, cancel := context.WithCancel(ctx)
	changes, err := s.Service.WatchRecords(wctx, "alice", page.Revision+1, page.Revision)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, kv, "a", "2") // 4: listed at 3
	mustPut(t, kv, "b", "2") // 5: deleted at 3, so not listed
	mustPut(t, kv, "c", "1") // 6: new
	for _, want := range []struct {
		key    string
		rev    uint64
		listed bool
	}{{"a", 4, true}, {"b", 5, false}, {"c", 6, false}} {
		c := nextChange(t, changes)
		if c.Key != want.key || c.Revision != want.rev || c.Listed != want.listed || c.Op != accounts.RecordPut || c.Size != 1 {
			t.Errorf("change: got %+v, want %s at %d, listed %v", c, want.key, want.rev, want.listed)
		}
	}

	// The watch's service user: the account's one user that is no device.
	var first string
	waitUntil(t, "the watch's service user to connect", func() bool {
		first = oneNew(connectedUsers(t, s, alice.Account), devices)
		return first != ""
	})
	// Past that user's lifetime the watch goes on, as a fresh user.
	waitUntil(t, "the watch to move to a fresh service user", func() bool {
		u := oneNew(connectedUsers(t, s, alice.Account), devices)
		return u != "" && u != first
	})
	if err := kv.Delete(ctx, "a"); err != nil { // 7
		t.Fatal(err)
	}
	if c := nextChange(t, changes); c.Key != "a" || c.Revision != 7 || c.Op != accounts.RecordDelete || !c.Listed {
		t.Errorf("change after the user's lifetime: got %+v, want the delete of a at 7", c)
	}

	// A watch that starts again after revision 7, for a listing made at
	// 3: c was put in between, so a page kept up to date shows it.
	again, err := s.Service.WatchRecords(ctx, "alice", 8, page.Revision)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, kv, "c", "2") // 8
	mustPut(t, kv, "d", "1") // 9
	if c := nextChange(t, again); c.Key != "c" || c.Revision != 8 || !c.Listed {
		t.Errorf("resumed watch: got %+v, want c at 8, listed (put at 6)", c)
	}
	if c := nextChange(t, again); c.Key != "d" || c.Listed {
		t.Errorf("resumed watch: got %+v, want d, not listed", c)
	}

	// The watch ends with its context, and with it its connection.
	base := s.Server.NumClients()
	cancel()
	select {
	case _, ok := <-changes:
		for ok {
			_, ok = <-changes
		}
	case <-time.After(waitFor):
		t.Fatal("the watch did not end with its context")
	}
	wantClients(t, s, base-1, "watch ended")
}

// connectedUsers are the user keys connected to an account now, as the
// server's connection list says.
func connectedUsers(t *testing.T, s *latchtest.Stack, account string) map[string]bool {
	t.Helper()
	m, err := s.Sys.Request("$SYS.REQ.ACCOUNT."+account+".CONNZ", []byte(`{"auth":true}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Data struct {
			Conns []struct {
				User string `json:"authorized_user"`
			} `json:"connections"`
		} `json:"data"`
	}
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatalf("connz: %v: %s", err, m.Data)
	}
	out := map[string]bool{}
	for _, c := range r.Data.Conns {
		out[c.User] = true
	}
	return out
}

// oneNew is the one user of now that is not in before, or "".
func oneNew(now, before map[string]bool) string {
	var found []string
	for u := range now {
		if !before[u] {
			found = append(found, u)
		}
	}
	if len(found) != 1 {
		return ""
	}
	return found[0]
}

// waitUntil polls cond for up to a minute.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %s", what)
		}
	}
}
