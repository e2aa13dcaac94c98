package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/client"
	"github.com/latch-dev/latch/keys"
	"github.com/nats-io/nats.go/jetstream"
)

// mustHome writes a device's home as an enrollment would, for a device the
// stack issues: client.json and device.creds. ttl 0 is the stack's default.
func (s *server) mustHome(tb testing.TB, person, name string, ttl time.Duration) *client.Device {
	tb.Helper()
	d, creds, err := s.Service.IssueDevice(context.Background(), accounts.NewDevice{Person: person, Name: name, TTL: ttl})
	if err != nil {
		tb.Fatalf("issue device %s/%s: %v", person, name, err)
	}
	home := filepath.Join(tb.TempDir(), name)
	if err := os.Mkdir(home, 0o700); err != nil {
		tb.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{
		"url": s.URL, "servers": []string{s.Server.ClientURL()}, "account": d.Account,
		"name": d.Name, "public_key": d.PublicKey, "expires": d.Expires,
	})
	if err := keys.WriteFileNew(filepath.Join(home, client.CredsFile), creds); err != nil {
		tb.Fatal(err)
	}
	if err := keys.WriteFileNew(filepath.Join(home, client.ConfigFile), cfg); err != nil {
		tb.Fatal(err)
	}
	dev, err := client.Open(home)
	if err != nil {
		tb.Fatalf("open the home of %s: %v", name, err)
	}
	return dev
}

// mustRecords connects a device to its records and closes them at the end.
func mustRecords(tb testing.TB, d *client.Device) *client.Records {
	tb.Helper()
	r, err := d.Records(context.Background())
	if err != nil {
		tb.Fatalf("records of %s: %v", d.Name, err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

// mustWatch watches the changes to r's records under prefix until ctx
// ends.
func mustWatch(tb testing.TB, ctx context.Context, r *client.Records, prefix string, opts ...client.WatchOption) <-chan client.Change {
	tb.Helper()
	ch, err := r.Watch(ctx, prefix, opts...)
	if err != nil {
		tb.Fatalf("watch %q: %v", prefix, err)
	}
	return ch
}

// next waits for the next change on a watch.
func next(tb testing.TB, ch <-chan client.Change) client.Change {
	tb.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			tb.Fatal("the watch ended")
		}
		return c
	case <-time.After(30 * time.Second):
		tb.Fatal("no change within 30s")
	}
	return client.Change{}
}

// state is every record's value, as a device sees the bucket.
func state(tb testing.TB, r *client.Records) map[string]string {
	tb.Helper()
	ctx := context.Background()
	list, err := r.List(ctx, "")
	if err != nil {
		tb.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range list {
		got, err := r.Get(ctx, e.Key)
		if err != nil {
			tb.Fatal(err)
		}
		if got.Size != e.Size || got.Revision != e.Revision {
			tb.Errorf("List says %s is %d bytes at revision %d, Get says %d at %d", e.Key, e.Size, e.Revision, got.Size, got.Revision)
		}
		m[e.Key] = string(got.Value)
	}
	return m
}

func TestRecordsSyncBetweenDevices(t *testing.T) {
	t.Parallel()
	s := mustServer(t, "alice")
	a := mustRecords(t, s.mustHome(t, "alice", "laptop", 0))
	b := mustRecords(t, s.mustHome(t, "alice", "phone", 0))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if _, err := a.Put(ctx, "before", []byte("was there")); err != nil {
		t.Fatal(err)
	}
	ch := mustWatch(t, ctx, b, "")
	if c := next(t, ch); c.Op != client.OpPut || c.Key != "before" || string(c.Value) != "was there" {
		t.Errorf("first change %+v, want the current value of before", c)
	}

	rev, err := a.Put(ctx, "note1", []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	c := next(t, ch)
	if c.Op != client.OpPut || c.Key != "note1" || string(c.Value) != "hello" || c.Revision != rev || c.Time.IsZero() {
		t.Errorf("B saw %+v, want put note1 hello at revision %d", c, rev)
	}
	e, err := b.Get(ctx, "note1")
	if err != nil || string(e.Value) != "hello" || e.Revision != rev || e.Size != 5 {
		t.Errorf("B gets %+v (%v), want hello at %d", e, err, rev)
	}

	if err := a.Delete(ctx, "note1"); err != nil {
		t.Fatal(err)
	}
	if c := next(t, ch); c.Op != client.OpDelete || c.Key != "note1" || c.Revision <= rev || len(c.Value) != 0 {
		t.Errorf("B saw %+v, want the delete of note1 after revision %d", c, rev)
	}
	if _, err := b.Get(ctx, "note1"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("get a deleted record: %v, want ErrNotFound", err)
	}
	if err := a.Delete(ctx, "note1"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("delete a deleted record: %v, want ErrNotFound", err)
	}

	// A prefix watch sees its keys only; a prefix need not end at a dot.
	pch := mustWatch(t, ctx, b, "notes.wo")
	for _, k := range []string{"notes.home", "notes.work", "other"} {
		if _, err := a.Put(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	if c := next(t, pch); c.Key != "notes.work" {
		t.Errorf("a watch of notes.wo saw %s first, want notes.work", c.Key)
	}
	list, err := b.List(ctx, "notes.")
	if err != nil || len(list) != 2 || list[0].Key != "notes.home" || list[1].Key != "notes.work" || list[0].Size != len("notes.home") {
		t.Errorf("List notes.: %+v (%v), want notes.home and notes.work with their sizes", list, err)
	}
	if list, err := b.List(ctx, "nothing"); err != nil || len(list) != 0 {
		t.Errorf("List of a prefix without keys: %+v (%v), want none", list, err)
	}
}

// TestRecordsResume takes device B offline while A makes 100 changes; B
// resumes from the revision it last applied and ends with A's state.
func TestRecordsResume(t *testing.T) {
	t.Parallel()
	s := mustServer(t, "alice")
	a := mustRecords(t, s.mustHome(t, "alice", "laptop", 0))
	bdev := s.mustHome(t, "alice", "phone", 0)
	ctx := context.Background()

	// B's copy of the records, kept by applying changes in order.
	local := map[string]string{}
	apply := func(d *client.Device, c client.Change) {
		switch c.Op {
		case client.OpPut:
			local[c.Key] = string(c.Value)
		case client.OpDelete:
			delete(local, c.Key)
		}
		if err := d.SetApplied("", c.Revision); err != nil {
			t.Fatal(err)
		}
	}

	if _, ok, err := bdev.LastApplied(""); ok || err != nil {
		t.Fatalf("a new device has applied something (%v)", err)
	}
	var last uint64
	for i := range 5 {
		if last, _ = a.Put(ctx, fmt.Sprintf("k%d", i), []byte("v0")); last == 0 {
			t.Fatal("put failed")
		}
	}
	b := mustRecords(t, bdev)
	wctx, stop := context.WithCancel(ctx)
	ch, err := b.Watch(wctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for c := next(t, ch); ; c = next(t, ch) {
		apply(bdev, c)
		if c.Revision >= last {
			break
		}
	}
	stop()
	b.Close()

	// B is away: 100 changes, deletes among them, some keys written
	// more often than the bucket keeps history.
	for i := range 100 {
		key := fmt.Sprintf("k%d", i%6)
		var err error
		if i%7 == 3 {
			if err = a.Delete(ctx, key); errors.Is(err, client.ErrNotFound) {
				err = nil
			}
		} else {
			_, err = a.Put(ctx, key, []byte(fmt.Sprintf("v%d", i)))
		}
		if err != nil {
			t.Fatalf("change %d: %v", i, err)
		}
	}
	last, err = a.Put(ctx, "last", []byte("done"))
	if err != nil {
		t.Fatal(err)
	}

	bdev, err = client.Open(bdev.Home)
	if err != nil {
		t.Fatal(err)
	}
	from, ok, err := bdev.LastApplied("")
	if !ok || err != nil {
		t.Fatalf("B's last applied revision: %d, %v, %v", from, ok, err)
	}
	b = mustRecords(t, bdev)
	ch = mustWatch(t, ctx, b, "", client.ResumeFrom(from))
	prev := from
	sawDelete := false
	for c := next(t, ch); ; c = next(t, ch) {
		if c.Revision <= prev {
			t.Fatalf("revision %d after %d: changes out of order", c.Revision, prev)
		}
		prev = c.Revision
		sawDelete = sawDelete || c.Op == client.OpDelete
		apply(bdev, c)
		if c.Revision >= last {
			break
		}
	}
	if !sawDelete {
		t.Error("the resumed watch delivered no delete")
	}
	if want := state(t, a); !maps.Equal(local, want) {
		t.Errorf("B ends with\n%v\nwant A's\n%v", local, want)
	}
	if rev, _, _ := bdev.LastApplied(""); rev != last {
		t.Errorf("B's last applied revision is %d, want %d", rev, last)
	}
}

func TestRecordsUpdateConflict(t *testing.T) {
	t.Parallel()
	s := mustServer(t, "alice")
	a := mustRecords(t, s.mustHome(t, "alice", "laptop", 0))
	b := mustRecords(t, s.mustHome(t, "alice", "phone", 0))
	ctx := context.Background()

	rev, err := a.Update(ctx, "doc", []byte("one"), 0)
	if err != nil {
		t.Fatalf("create with revision 0: %v", err)
	}
	if _, err := b.Update(ctx, "doc", []byte("also one"), 0); !errors.Is(err, client.ErrConflict) {
		t.Errorf("create over an existing record: %v, want ErrConflict", err)
	}
	rev2, err := b.Update(ctx, "doc", []byte("two"), rev)
	if err != nil {
		t.Fatalf("update at the current revision: %v", err)
	}
	_, err = a.Update(ctx, "doc", []byte("stale"), rev)
	var ce *client.ConflictError
	if !errors.Is(err, client.ErrConflict) || !errors.As(err, &ce) || ce.Current != rev2 || ce.Expected != rev {
		t.Fatalf("update at a stale revision: %v, want a conflict at %d", err, rev2)
	}
	if want := fmt.Sprintf("revision %d, not %d", rev2, rev); !strings.Contains(err.Error(), want) {
		t.Errorf("conflict says %q, want it to say %q", err, want)
	}
	if e, _ := a.Get(ctx, "doc"); string(e.Value) != "two" {
		t.Errorf("after the conflict doc is %q, want two", e.Value)
	}
	// A deleted record can be created again with revision 0.
	if err := a.Delete(ctx, "doc"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Update(ctx, "doc", []byte("again"), 0); err != nil {
		t.Errorf("create a deleted record again: %v", err)
	}
}

func TestRecordsKeys(t *testing.T) {
	t.Parallel()
	s := mustServer(t, "alice")
	r := mustRecords(t, s.mustHome(t, "alice", "laptop", 0))
	ctx := context.Background()
	for _, key := range []string{"", "a b", "ümlaut", ".lead", "trail.", "a..b", "star*", "gt>", "new\nline"} {
		_, err := r.Put(ctx, key, []byte("x"))
		if !errors.Is(err, client.ErrBadKey) || !strings.Contains(err.Error(), client.KeyRule) {
			t.Errorf("put %q: %v, want ErrBadKey stating the rule", key, err)
		}
		if _, err := r.Get(ctx, key); !errors.Is(err, client.ErrBadKey) {
			t.Errorf("get %q: %v, want ErrBadKey", key, err)
		}
	}
	for _, key := range []string{"a", "notes.2024-01-01", "path/to/file_1=x", "UPPER.lower"} {
		if _, err := r.Put(ctx, key, []byte("x")); err != nil {
			t.Errorf("put %q: %v", key, err)
		}
	}
	if _, err := r.Watch(ctx, "bad prefix"); !errors.Is(err, client.ErrBadKey) {
		t.Errorf("watch a bad prefix: %v, want ErrBadKey", err)
	}
}

// TestRecordsQuota fills a person's small quota: the put that does not
// fit says so, and another person's records work on.
func TestRecordsQuota(t *testing.T) {
	t.Parallel()
	s := mustServer(t)
	ctx := context.Background()
	small := accounts.DefaultLimits()
	small.Disk = 64 << 10
	if _, err := s.Service.CreatePerson(ctx, accounts.NewPerson{Name: "tight", Limits: small}); err != nil {
		t.Fatal(err)
	}
	s.MustCreatePerson(t, "roomy")
	tight := mustRecords(t, s.mustHome(t, "tight", "laptop", 0))
	roomy := mustRecords(t, s.mustHome(t, "roomy", "laptop", 0))

	value := bytes.Repeat([]byte("x"), 8<<10)
	var err error
	for i := 0; i < 20 && err == nil; i++ {
		_, err = tight.Put(ctx, fmt.Sprintf("k%d", i), value)
	}
	if !errors.Is(err, client.ErrQuota) || !strings.Contains(err.Error(), "over their storage quota") ||
		!strings.Contains(err.Error(), "latch client rm") || !strings.Contains(err.Error(), "larger quota") {
		t.Fatalf("put past the quota: %v, want ErrQuota saying to delete or ask for more", err)
	}
	u, err := tight.Usage(ctx)
	if err != nil || u.Quota != small.Disk || u.Used < small.Disk-int64(len(value))-1024 || u.Used > small.Disk {
		t.Errorf("usage of full records: %+v, %v; want nearly %d of %d", u, err, small.Disk, small.Disk)
	}
	for i := range 20 {
		if _, err := roomy.Put(ctx, fmt.Sprintf("k%d", i), value); err != nil {
			t.Fatalf("another person's put %d: %v", i, err)
		}
	}
	if _, err := tight.Get(ctx, "k0"); err != nil {
		t.Errorf("read over quota: %v", err)
	}
	testDeleteWhenFull(t, s, tight, value)
	// A value larger than the account's payload limit is refused as such.
	_, err = roomy.Put(ctx, "huge", make([]byte, accounts.DefaultLimits().Payload+1))
	if !errors.Is(err, client.ErrTooLarge) {
		t.Errorf("put a value over the payload limit: %v, want ErrTooLarge", err)
	}
}

// testDeleteWhenFull fills the records to the last byte, so that not
// even a delete fits: the delete goes through the server, the space comes
// back, and a put fits again. A device watching sees the delete.
func testDeleteWhenFull(t *testing.T, s *server, r *client.Records, value []byte) {
	ctx := context.Background()
	ch := mustWatch(t, ctx, r, "")
	// Small values to the last few bytes: nothing, not a delete, fits.
	for i := 0; ; i++ {
		if _, err := r.Put(ctx, fmt.Sprintf("f%d", i), nil); err != nil {
			if !errors.Is(err, client.ErrQuota) {
				t.Fatalf("fill: %v", err)
			}
			break
		}
	}
	raw := jetstreamKV(t, r)
	if err := raw.Delete(ctx, "k1"); err == nil || !strings.Contains(err.Error(), "maximum bytes") {
		t.Fatalf("a plain KV delete on full records: %v, want a refusal for room (else the test did not fill them)", err)
	}
	before, _ := r.Usage(ctx)
	if err := r.Delete(ctx, "k1"); err != nil {
		t.Fatalf("delete on full records: %v", err)
	}
	if _, err := r.Get(ctx, "k1"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("get after the delete: %v, want ErrNotFound", err)
	}
	after, _ := r.Usage(ctx)
	if after.Quota != before.Quota || after.Used >= before.Used {
		t.Errorf("usage before the delete %+v, after %+v: want the space back and the quota as it was", before, after)
	}
	if _, err := r.Put(ctx, "again", value[:4<<10]); err != nil {
		t.Errorf("put after the delete: %v", err)
	}
	// The watcher saw the delete, then the new put.
	deadline := time.After(10 * time.Second)
	for seen := false; !seen; {
		select {
		case c := <-ch:
			if c.Key == "k1" && c.Op == client.OpDelete {
				seen = true
			}
		case <-deadline:
			t.Fatal("the watch did not see the delete")
		}
	}
	// The audit trail says who deleted it, not the key.
	evs, err := s.Service.Audit(ctx, 20)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ev := range evs {
		if ev.Action == accounts.ActionRecordDelete && strings.HasPrefix(ev.Actor, "device:") {
			found = true
		}
	}
	if !found {
		t.Errorf("no %s entry by a device in the audit trail", accounts.ActionRecordDelete)
	}
}

// jetstreamKV opens the records bucket as any NATS client would, on the
// device's connection.
func jetstreamKV(t *testing.T, r *client.Records) jetstream.KeyValue {
	t.Helper()
	js, err := jetstream.New(r.Conn())
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), client.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}
