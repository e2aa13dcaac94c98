package web

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/nats-io/nats.go/jetstream"
)

// deviceKV connects a new device of person and opens its records bucket,
// as `latch client` would.
func (tw *testWeb) deviceKV(tb testing.TB, person, name string) jetstream.KeyValue {
	tb.Helper()
	d := tw.MustIssueDevice(tb, person, name)
	nc := tw.MustConnect(tb, d.CredsFile)
	js, err := jetstream.New(nc.Conn)
	if err != nil {
		tb.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), accounts.RecordsBucket)
	if err != nil {
		tb.Fatalf("open the records bucket: %v", err)
	}
	return kv
}

func putRecord(tb testing.TB, kv jetstream.KeyValue, key string, value []byte) uint64 {
	tb.Helper()
	rev, err := kv.Put(context.Background(), key, value)
	if err != nil {
		tb.Fatalf("put %s: %v", key, err)
	}
	return rev
}

// mustGet gets a page and checks its status.
func (c *client) mustGet(path string, status int, hdr ...string) string {
	c.tb.Helper()
	resp := c.do("GET", path, nil, hdr...)
	body := text(c.tb, resp)
	if resp.StatusCode != status {
		c.tb.Fatalf("GET %s: got %d, want %d\n%s", path, resp.StatusCode, status, body)
	}
	return body
}

func wantHTML(tb testing.TB, what, body string, subs ...string) {
	tb.Helper()
	for _, s := range subs {
		if !strings.Contains(body, s) {
			tb.Errorf("%s: no %q in\n%s", what, s, body)
		}
	}
}

func wantNoHTML(tb testing.TB, what, body string, subs ...string) {
	tb.Helper()
	for _, s := range subs {
		if strings.Contains(body, s) {
			tb.Errorf("%s: %q should not be there", what, s)
		}
	}
}

func TestRecordsPage(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Members: []string{"alice"}})
	kv := tw.deviceKV(t, "alice", "laptop")
	putRecord(t, kv, "note1", []byte("hello"))
	putRecord(t, kv, "html", []byte(`<script>alert(1)</script><img src=x onerror=alert(2)>`))
	putRecord(t, kv, "cfg.json", []byte(`{"a":1,"b":[true,null]}`))
	putRecord(t, kv, "bin", []byte{0, 1, 2, 0xff, 0xfe, 'A'})
	putRecord(t, kv, "dir/file", []byte("in a folder"))
	putRecord(t, kv, "events", []byte("a record named events"))
	c := tw.loginAs(t, "alice")

	list := c.mustGet("/records", http.StatusOK)
	wantHTML(t, "records page", list,
		`<a href="/records" aria-current="page">Records</a>`,
		`href="/records/note1"`, `href="/records/dir%2Ffile"`, `id="rec-cfg.json"`, `sse-swap="rec-cfg.json"`,
		`sse-connect="/events/records?since=6"`, ">Delete</button>", `hx-confirm="Delete note1?`, "1–6 of 6 keys.")
	wantNoHTML(t, "records page", list, "<script>alert", "<img src=x")
	frag := c.mustGet("/records", http.StatusOK, "HX-Request", "true")
	if strings.Contains(frag, "<html") || !strings.Contains(frag, `id="rec-note1"`) {
		t.Errorf("htmx request: got the whole page or no rows; want the section alone")
	}

	for _, v := range []struct {
		name, path string
		want       []string
	}{
		{"text", "/records/note1", []string{`<pre class="value value-text">hello</pre>`, ">text</span>"}},
		{"HTML as text", "/records/html", []string{"&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"}},
		{"JSON, indented", "/records/cfg.json", []string{">JSON</span>", "{\n  &#34;a&#34;: 1,\n  &#34;b&#34;: [\n    true,\n    null\n  ]\n}"}},
		{"binary as hex", "/records/bin", []string{">binary, as hex</span>", "00000000  00 01 02 ff fe 41", "|.....A|"}},
		{"a key with a slash", "/records/dir%2Ffile", []string{"in a folder", `<h1 class="mono">dir/file</h1>`}},
		{"a key named events", "/records/events", []string{"a record named events"}},
	} {
		body := c.mustGet(v.path, http.StatusOK)
		wantHTML(t, v.name, body, v.want...)
		wantNoHTML(t, v.name, body, "<script>alert", "<img src=x")
	}

	raw := c.do("GET", "/records/bin?revision=4&raw=1", nil)
	if b := text(t, raw); raw.StatusCode != http.StatusOK || b != "\x00\x01\x02\xff\xfeA" ||
		!strings.HasPrefix(raw.Header.Get("Content-Disposition"), "attachment") {
		t.Errorf("raw value: got %d %q (%s), want 200 and the bytes as an attachment", raw.StatusCode, b, raw.Header.Get("Content-Disposition"))
	}

	// History: each revision the bucket keeps, and any one of them.
	putRecord(t, kv, "note1", []byte("hello again"))
	body := c.mustGet("/records/note1", http.StatusOK)
	wantHTML(t, "note1 after a second put", body, "hello again", `href="/records/note1?revision=1"`, "(latest)")
	body = c.mustGet("/records/note1?revision=1", http.StatusOK)
	wantHTML(t, "note1 at revision 1", body, `value-text">hello</pre>`, `(latest is <a href="/records/note1">7</a>)`)
	wantNoHTML(t, "an older revision", body, ">Delete</button>")

	c.mustGet("/records/nothing", http.StatusNotFound)
	c.mustGet("/records/bad%20key", http.StatusBadRequest)
	c.mustGet("/records/note1?revision=x", http.StatusBadRequest)

	// Delete: a form goes back to the list, htmx gets the row, deleted;
	// devices see the delete.
	w, err := kv.Watch(context.Background(), "note1", jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	resp := c.do("POST", "/records/note1/delete", url.Values{})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/records" {
		t.Errorf("delete: got %d to %q, want 303 to /records", resp.StatusCode, resp.Header.Get("Location"))
	}
	select {
	case e := <-w.Updates():
		if e == nil || e.Operation() != jetstream.KeyValuePurge {
			t.Errorf("device watch: got %v, want the delete (a purge) of note1", e)
		}
	case <-time.After(10 * time.Second):
		t.Error("the device did not see the delete")
	}
	if _, err := kv.Get(context.Background(), "note1"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("device reads note1 after the delete: got %v, want ErrKeyNotFound", err)
	}
	body = c.mustGet("/records/note1", http.StatusOK)
	wantHTML(t, "deleted key", body, "This key was deleted at revision 8, with its earlier revisions.")

	resp = c.do("POST", "/records/html/delete", nil, "HX-Request", "true")
	row := text(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(row, `<tr id="rec-html"`) || !strings.Contains(row, ">deleted</span>") || strings.Contains(row, "Delete") {
		t.Errorf("htmx delete: got %d %s, want the row, deleted, without a Delete button", resp.StatusCode, row)
	}
	resp = c.do("POST", "/records/cfg.json/delete", url.Values{"back": {"record"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/records/cfg.json" {
		t.Errorf("delete from the key's page: got %d to %q, want 303 to /records/cfg.json", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp := c.do("POST", "/records/nothing/delete", url.Values{}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("delete a key that is not there: got %d, want 404", resp.StatusCode)
	}
	list = c.mustGet("/records", http.StatusOK)
	wantNoHTML(t, "list after deletes", list, `id="rec-note1"`, `id="rec-html"`, `id="rec-cfg.json"`)
}

func TestRecordsPaging(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Members: []string{"alice"}})
	kv := tw.deviceKV(t, "alice", "laptop")
	for i := range 250 {
		putRecord(t, kv, fmt.Sprintf("k%03d", i), []byte("v"))
	}
	c := tw.loginAs(t, "alice")
	for _, p := range []struct {
		path        string
		rows        int
		first, last string
		next        string
		count       string
	}{
		{"/records", 100, "k000", "k099", "/records?after=k099", "1–100 of 250 keys."},
		{"/records?after=k099", 100, "k100", "k199", "/records?after=k199", "101–200 of 250 keys."},
		{"/records?after=k199", 50, "k200", "k249", "", "201–250 of 250 keys."},
		{"/records?prefix=k24", 10, "k240", "k249", "", "1–10 of 10 keys starting with “k24”."},
	} {
		body := c.mustGet(p.path, http.StatusOK)
		if n := strings.Count(body, `<tr id="rec-`); n != p.rows {
			t.Errorf("%s: %d rows, want %d", p.path, n, p.rows)
		}
		wantHTML(t, p.path, body, `id="rec-`+p.first+`"`, `id="rec-`+p.last+`"`, p.count)
		if p.next != "" {
			wantHTML(t, p.path, body, `<a href="`+strings.ReplaceAll(p.next, "&", "&amp;")+`" rel="next">Next page</a>`)
		} else {
			wantNoHTML(t, p.path, body, "Next page")
		}
	}
	body := c.mustGet("/records?prefix=nope", http.StatusOK)
	wantHTML(t, "no match", body, "No key starts with “nope”.")
}

func TestRecordsAccess(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Members: []string{"alice", "bob"}})
	kv := tw.deviceKV(t, "alice", "laptop")
	putRecord(t, kv, "secret", []byte("alice's"))

	anon := tw.client(t)
	for _, path := range []string{"/records", "/records/secret"} {
		resp := anon.do("GET", path, nil)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
			t.Errorf("GET %s logged out: got %d to %q, want 303 to /login", path, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	if resp := anon.do("POST", "/records/secret/delete", url.Values{}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("delete logged out: got %d, want 401", resp.StatusCode)
	}

	// Bob names alice's key: he gets his own bucket, where it is not.
	bob := tw.loginAs(t, "bob")
	wantNoHTML(t, "bob's records", bob.mustGet("/records", http.StatusOK), "secret")
	bob.mustGet("/records/secret", http.StatusNotFound)
	if resp := bob.do("POST", "/records/secret/delete", url.Values{}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("bob deletes alice's key: got %d, want 404", resp.StatusCode)
	}
	if e, err := kv.Get(context.Background(), "secret"); err != nil || string(e.Value()) != "alice's" {
		t.Errorf("alice's record after bob's tries: %v; want it untouched", err)
	}
}

// recEvent is one server-sent event of a records page.
type recEvent struct{ id, name, data string }

// readRecordEvents reads server-sent events from a response into a channel.
func readRecordEvents(resp *http.Response) <-chan recEvent {
	ch := make(chan recEvent, 16)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev recEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" {
					ch <- ev
				}
				ev = recEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.name = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data += line[6:] + "\n"
			}
		}
	}()
	return ch
}

func nextRecordEvent(tb testing.TB, ch <-chan recEvent) recEvent {
	tb.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			tb.Fatal("the event stream ended")
		}
		return ev
	case <-time.After(10 * time.Second):
		tb.Fatal("no event within 10s")
	}
	return recEvent{}
}

func TestRecordEvents(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Members: []string{"alice"}})
	kv := tw.deviceKV(t, "alice", "laptop")
	putRecord(t, kv, "a", []byte("1"))      // 1
	putRecord(t, kv, "gone", []byte("1"))   // 2
	kv.Delete(context.Background(), "gone") // 3
	c := tw.loginAs(t, "alice")
	page := c.mustGet("/records", http.StatusOK)
	wantHTML(t, "page", page, `sse-connect="/events/records?since=3"`)

	resp := c.do("GET", "/events/records?since=3", nil, "Accept", "text/event-stream")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("event stream: got %d %s, want 200 text/event-stream", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ch := readRecordEvents(resp)

	putRecord(t, kv, "a", []byte("22")) // 4: a row of the page
	ev := nextRecordEvent(t, ch)
	if ev.name != "rec-a" || ev.id != "4" || !strings.Contains(ev.data, `<tr id="rec-a"`) || !strings.Contains(ev.data, "<td>4</td>") {
		t.Errorf("put of a listed key: got %+v, want event rec-a, id 4, its row at revision 4", ev)
	}
	putRecord(t, kv, "gone", []byte("back")) // 5: deleted when listed: a new row
	ev = nextRecordEvent(t, ch)
	if ev.name != "new-record" || !strings.HasPrefix(ev.data, `<tr id="rec-gone" sse-swap="rec-gone"`) {
		t.Errorf("put of a key not listed: got %+v, want a new-record event with its row", ev)
	}
	putRecord(t, kv, "gone", []byte("again")) // 6: now the page shows it
	if ev := nextRecordEvent(t, ch); ev.name != "rec-gone" {
		t.Errorf("second put of the new key: got event %q, want rec-gone", ev.name)
	}
	kv.Delete(context.Background(), "a") // 7
	ev = nextRecordEvent(t, ch)
	if ev.name != "rec-a" || !strings.Contains(ev.data, ">deleted</span>") {
		t.Errorf("delete: got %+v, want the row of a, deleted", ev)
	}
	resp.Body.Close()

	// A filtered page hears of its keys only; a browser that comes back
	// resumes after the last event it saw.
	resp = c.do("GET", "/events/records?prefix=p.&since=7", nil, "Accept", "text/event-stream")
	ch = readRecordEvents(resp)
	putRecord(t, kv, "q.1", []byte("x")) // 8
	putRecord(t, kv, "p.1", []byte("x")) // 9
	if ev := nextRecordEvent(t, ch); ev.id != "9" || ev.name != "new-record" {
		t.Errorf("filtered stream: got %+v, want the new p.1 at 9 first", ev)
	}
	resp.Body.Close()
	putRecord(t, kv, "p.2", []byte("x")) // 10
	resp = c.do("GET", "/events/records?prefix=p.&since=7", nil, "Accept", "text/event-stream", "Last-Event-ID", "9")
	ch = readRecordEvents(resp)
	if ev := nextRecordEvent(t, ch); ev.id != "10" || ev.name != "new-record" || !strings.Contains(ev.data, `id="rec-p.2"`) {
		t.Errorf("resumed stream: got %+v, want p.2 at 10, new", ev)
	}
	// p.1 came as a new row before the browser came back: it has a row.
	putRecord(t, kv, "p.1", []byte("y")) // 11
	if ev := nextRecordEvent(t, ch); ev.id != "11" || ev.name != "rec-p.1" {
		t.Errorf("resumed stream, a key the page gained before: got %+v, want event rec-p.1 at 11", ev)
	}
	resp.Body.Close()

	// A page with no keys gains rows at the top of its table; its "no
	// records" row hides itself beside them (in CSS).
	empty := c.mustGet("/records?prefix=e.", http.StatusOK)
	wantHTML(t, "empty page", empty, `id="records-empty" class="empty"`, `sse-connect="/events/records?prefix=e.&amp;since=11"`)
	resp = c.do("GET", "/events/records?prefix=e.&since=11", nil, "Accept", "text/event-stream")
	ch = readRecordEvents(resp)
	putRecord(t, kv, "e.1", []byte("x")) // 12
	putRecord(t, kv, "e.2", []byte("x")) // 13
	if ev := nextRecordEvent(t, ch); ev.name != "new-record" || !strings.HasPrefix(ev.data, `<tr id="rec-e.1"`) ||
		!strings.Contains(ev.data, `id="records-count" hx-swap-oob="true"`) {
		t.Errorf("first new key on an empty page: got %+v, want its row and the count line replaced", ev)
	}
	if ev := nextRecordEvent(t, ch); ev.name != "new-record" || strings.Contains(ev.data, "records-empty") {
		t.Errorf("second new key: got %+v, want its row alone", ev)
	}
	resp.Body.Close()

	if resp := c.do("GET", "/events/records?since=x", nil, "Accept", "text/event-stream"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("stream with a bad since: got %d, want 400", resp.StatusCode)
	}
}

// Without a records history the Records page says so and offers no
// restore, and a restore posted anyway is refused with the reason.
func TestRecordsWithoutHistory(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Members: []string{"alice"}, NoRecordsHistory: true})
	c := tw.loginAs(t, "alice")
	page := text(t, c.do("GET", "/records", nil))
	if !strings.Contains(page, "No history of your records is kept") || strings.Contains(page, `action="/records/restore"`) {
		t.Fatalf("the Records page without a history:\n%s", page)
	}
	body := text(t, c.do("POST", "/records/restore", url.Values{"at": {"2001-01-01T00:00"}}, "HX-Request", "true"))
	if !strings.Contains(body, "records have no history") || strings.Contains(body, "Restored to") {
		t.Errorf("a restore without a history:\n%s", body)
	}
}

// The Records page brings the records back as they were at a time, after
// a device wiped them.
func TestRecordsRestore(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Members: []string{"alice"}})
	dev := tw.MustConnect(t, tw.MustIssueDevice(t, "alice", "laptop").CredsFile)
	js, _ := jetstream.New(dev.Conn)
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, "records")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "note", []byte("keep me")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if h, err := tw.Service.RecordsHistory(ctx, "alice"); err == nil && h.Writes == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the history never took the write")
		}
	}
	// The form's times are to the second, and mean its end.
	at := time.Now().UTC().Format("2006-01-02T15:04:05")
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1100 * time.Millisecond)))
	if err := kv.Purge(ctx, "note"); err != nil {
		t.Fatal(err)
	}

	c := tw.loginAs(t, "alice")
	page := text(t, c.do("GET", "/records", nil))
	if !strings.Contains(page, `action="/records/restore"`) || !strings.Contains(page, "The history holds") {
		t.Fatalf("the Records page has no restore form or history:\n%s", page)
	}
	body := text(t, c.do("POST", "/records/restore", url.Values{"at": {at}}, "HX-Request", "true"))
	if !strings.Contains(body, "1 keys put back, 0 deleted") {
		t.Fatalf("restore: %s", body)
	}
	if e, err := kv.Get(ctx, "note"); err != nil || string(e.Value()) != "keep me" {
		t.Errorf("note after the restore: %v, %v", e, err)
	}
	body = text(t, c.do("POST", "/records/restore", url.Values{"at": {"2001-01-01T00:00"}}, "HX-Request", "true"))
	if !strings.Contains(body, "reaches back to") {
		t.Errorf("a restore to before the history: %s", body)
	}
	body = text(t, c.do("POST", "/records/restore", url.Values{"at": {"soon"}}, "HX-Request", "true"))
	if !strings.Contains(body, "say when") {
		t.Errorf("a restore with a bad time: %s", body)
	}
}

// TestRecordsFull: the Records page says how full the records are, warns
// when they are nearly full, and deletes even when the bucket has no room
// left for a delete.
func TestRecordsFull(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	ctx := context.Background()
	small := accounts.DefaultLimits()
	small.Disk = 64 << 10
	if _, err := tw.Service.CreatePerson(ctx, accounts.NewPerson{Name: "tight", Limits: small}); err != nil {
		t.Fatal(err)
	}
	kv := tw.deviceKV(t, "tight", "laptop")
	c := tw.loginAs(t, "tight")
	putRecord(t, kv, "first", make([]byte, 1024))
	wantHTML(t, "records page, nearly empty", c.mustGet("/records", http.StatusOK),
		`<meter min="0" max="65536"`, "of 64.0 KiB (1%).")
	wantNoHTML(t, "records page, nearly empty", c.mustGet("/records", http.StatusOK), "nearly full")

	for _, size := range []int{1024, 0} {
		for i := 0; ; i++ {
			if _, err := kv.Put(ctx, fmt.Sprintf("f%d.%d", size, i), make([]byte, size)); err != nil {
				break
			}
		}
	}
	if err := kv.Delete(ctx, "first"); err == nil {
		t.Fatal("a device's delete fit; the test did not fill the records")
	}
	wantHTML(t, "records page, full", c.mustGet("/records", http.StatusOK),
		"of 64.0 KiB (99%).", "Your records are nearly full.", "ask an admin for a larger quota")

	resp := c.do("POST", "/records/first/delete", url.Values{})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete on full records: got %d %s, want 303", resp.StatusCode, text(t, resp))
	}
	if _, err := kv.Get(ctx, "first"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("device reads the deleted key: %v, want ErrKeyNotFound", err)
	}
	if _, err := kv.Put(ctx, "again", make([]byte, 512)); err != nil {
		t.Errorf("a device's put after the delete: %v", err)
	}
}
