package web

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/latch-dev/latch/keys"
	"github.com/latch-dev/latch/views"
	"github.com/nats-io/nats.go/jetstream"
)

// TestPagesNeedLogin: every page and action of the devices, passkeys and
// admin pages sends a visitor who is not logged in to the login page: a
// redirect for a page, HX-Redirect for htmx, 401 for a form post.
func TestPagesNeedLogin(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	c := tw.client(t)
	for _, rt := range []struct{ method, path string }{
		{"GET", "/devices"},
		{"GET", "/events/devices"},
		{"POST", "/devices/UABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRSTUV/revoke"},
		{"POST", "/devices/UABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRSTUV/disconnect"},
		{"POST", "/sessions/end"},
		{"POST", "/sessions/abc/end"},
		{"POST", "/devices/download"},
		{"GET", "/passkeys"},
		{"POST", "/passkeys/abc/rename"},
		{"POST", "/passkeys/abc/remove"},
		{"GET", "/admin"},
		{"GET", "/admin/audit"},
		{"POST", "/admin/persons/bob/disable"},
		{"POST", "/admin/persons/bob/enable"},
		{"POST", "/admin/persons/bob/delete"},
		{"POST", "/admin/invites"},
		{"POST", "/admin/invites/abcdef12/revoke"},
	} {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			var body any
			if rt.method == "POST" {
				body = url.Values{"name": {"x"}}
			}
			resp := c.do(rt.method, rt.path, body)
			if rt.method == "GET" {
				if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
					t.Errorf("got %d to %q, want 303 to /login", resp.StatusCode, resp.Header.Get("Location"))
				}
			} else if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("form post: got %d, want 401", resp.StatusCode)
			}
			resp = c.do(rt.method, rt.path, body, hxRequest, "true")
			if got := resp.Header.Get(hxRedirect); resp.StatusCode != http.StatusOK || got != "/login" {
				t.Errorf("htmx: got %d with HX-Redirect %q, want 200 with /login", resp.StatusCode, got)
			}
		})
	}
}

// TestDevicesPage lists every device of the person with its key's
// fingerprint, how and when it came, its expiry, whether it is online, and
// a Revoke button that asks first; nobody else's devices.
func TestDevicesPage(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	alice := tw.mustPerson(t, "alice", false)
	tw.mustPerson(t, "bob", false)
	laptop := tw.MustIssueDevice(t, "alice", "laptop")
	phone := tw.MustIssueDevice(t, "alice", "phone")
	bobs := tw.MustIssueDevice(t, "bob", "bobs-tablet")
	conn := tw.MustConnect(t, laptop.CredsFile)
	waitOnline(t, tw, alice.Account, laptop.PublicKey)

	resp := tw.loginAs(t, "alice").do("GET", "/devices", nil)
	body := text(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /devices: got %d, want 200: %s", resp.StatusCode, body)
	}
	for _, want := range []string{
		`id="device-` + laptop.PublicKey + `"`,
		`sse-swap="device-` + laptop.PublicKey + `"`,
		`sse-connect="/events/devices"`,
		views.Fingerprint(laptop.PublicKey),
		views.Fingerprint(phone.PublicKey),
		"issued (CLI)",
		laptop.Created.UTC().Format("2006-01-02 15:04 UTC"),
		laptop.Expires.UTC().Format("2006-01-02 15:04 UTC"),
		`hx-post="/devices/` + laptop.PublicKey + `/revoke"`,
		`hx-confirm="Revoke laptop? Its connections close at once."`,
		">Revoke</button>",
		`<button type="submit">Download creds</button>`,
		"expires in 7 days",
		"<code>nats --server " + tw.Server.ClientURL() + " --creds FILE</code>",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("devices page lacks %q", want)
		}
	}
	if got := rowOf(t, body, laptop.PublicKey); !strings.Contains(got, `badge online`) {
		t.Errorf("laptop's row: got %q, want it online", got)
	}
	if got := rowOf(t, body, phone.PublicKey); !strings.Contains(got, "last seen never") || strings.Contains(got, "badge online") {
		t.Errorf("phone's row: got %q, want it never seen", got)
	}
	if strings.Contains(body, bobs.PublicKey) || strings.Contains(body, "bobs-tablet") {
		t.Error("alice's devices page shows bob's device")
	}

	// Behind a proxy that ends TLS from the first byte (fly.io), the
	// nats CLI needs --tlsfirst.
	tw.Web.cfg.TLSFirst = true
	if body := text(t, tw.loginAs(t, "alice").do("GET", "/devices", nil)); !strings.Contains(body, " --tlsfirst --creds FILE</code>") {
		t.Error("the devices page does not tell the nats CLI to do TLS first")
	}
	tw.Web.cfg.TLSFirst = false

	// Offline now: last seen, from presence.
	conn.Close()
	waitOffline(t, tw, alice.Account, laptop.PublicKey)
	body = text(t, tw.loginAs(t, "alice").do("GET", "/devices", nil))
	if got := rowOf(t, body, laptop.PublicKey); strings.Contains(got, "badge online") || !strings.Contains(got, `last seen <time datetime="20`) {
		t.Errorf("laptop's row after disconnect: got %q, want last seen with a date", got)
	}
}

// TestDeviceRevoke: Revoke closes the device's NATS connection at once and
// the answer is its row, revoked; a form post goes back to the page; a
// person cannot revoke another's device.
func TestDeviceRevoke(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Members: []string{"alice", "bob"}})
	laptop := tw.MustIssueDevice(t, "alice", "laptop")
	phone := tw.MustIssueDevice(t, "alice", "phone")
	bobs := tw.MustIssueDevice(t, "bob", "tablet")
	conn := tw.MustConnect(t, laptop.CredsFile)
	bobConn := tw.MustConnect(t, bobs.CredsFile)
	c := tw.loginAs(t, "alice")

	resp := c.do("POST", "/devices/"+laptop.PublicKey+"/revoke", nil, hxRequest, "true")
	row := text(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: got %d, want 200: %s", resp.StatusCode, row)
	}
	select {
	case <-conn.Closed:
	case <-time.After(15 * time.Second):
		t.Fatalf("the device's connection is still open 15s after the revoke (status %v)", conn.Status())
	}
	if !strings.HasPrefix(strings.TrimSpace(row), `<tr id="device-`+laptop.PublicKey+`"`) {
		t.Errorf("revoke answer: got %q, want the device's row", row)
	}
	if !strings.Contains(row, "badge revoked") || strings.Contains(row, ">Revoke</button>") {
		t.Errorf("revoke answer: got %q, want the row revoked, without a Revoke button", row)
	}
	if _, err := tw.Connect(laptop.CredsFile); err == nil {
		t.Error("the revoked device's creds connected again")
	}

	// Without htmx: a redirect back to the page, which shows it revoked.
	resp = c.do("POST", "/devices/"+phone.PublicKey+"/revoke", url.Values{})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/devices" {
		t.Errorf("form post: got %d to %q, want 303 to /devices", resp.StatusCode, resp.Header.Get("Location"))
	}
	page := text(t, c.do("GET", "/devices", nil))
	for _, pub := range []string{laptop.PublicKey, phone.PublicKey} {
		if got := rowOf(t, page, pub); !strings.Contains(got, "badge revoked") {
			t.Errorf("row of %s after revoke: got %q, want revoked", pub, got)
		}
	}

	// Bob's device is not alice's to revoke: it is not found in her account.
	resp = c.do("POST", "/devices/"+bobs.PublicKey+"/revoke", nil, hxRequest, "true")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("revoke another person's device: got %d, want 404", resp.StatusCode)
	}
	if err := bobConn.Flush(); err != nil {
		t.Errorf("bob's device after alice's attempt: %v", err)
	}
	d, err := tw.Service.Device(context.Background(), "bob", bobs.PublicKey)
	if err != nil || d.Revoked() {
		t.Errorf("bob's device: got %+v, %v; want it active", d, err)
	}

	// The audit trail names alice as who revoked.
	evs, err := tw.Service.Audit(context.Background(), 50)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range evs {
		if e.Action == accounts.ActionDeviceRevoke && e.Device == laptop.PublicKey {
			found = true
			if e.Actor != "alice" {
				t.Errorf("audit of the revoke: actor %q, want alice", e.Actor)
			}
		}
	}
	if !found {
		t.Error("the revoke is not on the audit trail")
	}
}

// TestDeviceDownload: Download creds answers with a creds file, marked as
// an attachment and not to be cached, that connects to NATS; the device is
// listed as a download that expires after DownloadTTL; latch keeps no copy
// of its seed in any of its buckets or streams.
func TestDeviceDownload(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Members: []string{"alice"}})
	c := tw.loginAs(t, "alice")

	before := time.Now()
	resp := c.do("POST", "/devices/download", url.Values{"name": {"build-box"}})
	file := text(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("download: got %d, want 200: %s", resp.StatusCode, file)
	}
	for h, want := range map[string]string{
		"Content-Disposition": `attachment; filename="build-box.creds"`,
		"Cache-Control":       "no-store",
		"Content-Type":        "application/octet-stream",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s: got %q, want %q", h, got, want)
		}
	}
	creds, err := keys.ParseCreds([]byte(file))
	if err != nil {
		t.Fatalf("the download is not a creds file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "build-box.creds")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	conn := tw.MustConnect(t, path)
	if _, err := conn.RTT(); err != nil {
		t.Fatalf("the downloaded creds do not work: %v", err)
	}

	d, err := tw.Service.Device(context.Background(), "alice", "build-box")
	if err != nil {
		t.Fatal(err)
	}
	if d.Enrolled != accounts.EnrolledDownload {
		t.Errorf("enrolled: got %q, want %q", d.Enrolled, accounts.EnrolledDownload)
	}
	if d.Expires == nil || d.Expires.Before(before.Add(7*24*time.Hour-time.Minute)) || d.Expires.After(time.Now().Add(7*24*time.Hour+time.Minute)) {
		t.Errorf("expires: got %v, want in 7 days", d.Expires)
	}
	if row := rowOf(t, text(t, c.do("GET", "/devices", nil)), d.PublicKey); !strings.Contains(row, ">download") {
		t.Errorf("row of the download: got %q, want it marked download", row)
	}
	assertNotStored(t, tw, string(creds.Seed))

	// The same name again is refused, on the page, with the name kept.
	resp = c.do("POST", "/devices/download", url.Values{"name": {"build-box"}})
	body := text(t, resp)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, `class="notice error"`) || !strings.Contains(body, `value="build-box"`) {
		t.Errorf("a second download named build-box: got %d, want 409 and the page with the error: %s", resp.StatusCode, body)
	}
	if resp.Header.Get("Content-Disposition") != "" {
		t.Error("a refused download came as a file")
	}
	resp = c.do("POST", "/devices/download", url.Values{"name": {""}}, hxRequest, "true")
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a download without a name: got %d, want 400", resp.StatusCode)
	}
}

func TestAttachmentHeader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, want string }{
		{"laptop.creds", `attachment; filename="laptop.creds"`},
		{`a"b;c.creds`, `attachment; filename="a_b_c.creds"; filename*=UTF-8''a%22b%3Bc.creds`},
		{"café.creds", `attachment; filename="caf__.creds"; filename*=UTF-8''caf%C3%A9.creds`},
	} {
		if got := attachment(tc.name); got != tc.want {
			t.Errorf("attachment(%q): got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// assertNotStored fails when secret is in any key of any bucket or any
// message of any stream of the LATCH account.
func assertNotStored(t *testing.T, tw *testWeb, secret string) {
	t.Helper()
	ctx := context.Background()
	js, err := jetstream.New(tw.App)
	if err != nil {
		t.Fatal(err)
	}
	streams := js.ListStreams(ctx)
	n := 0
	for info := range streams.Info() {
		st, err := js.Stream(ctx, info.Config.Name)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				t.Fatalf("%s #%d: %v", info.Config.Name, seq, err)
			}
			n++
			if strings.Contains(string(m.Data), secret) {
				t.Errorf("the seed is stored in %s, subject %s", info.Config.Name, m.Subject)
			}
		}
	}
	if err := streams.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("read no message at all from the LATCH account's streams")
	}
}

// TestDeviceNameEscaped: a device named like an HTML tag is shown as text,
// in the row and in the confirm question.
func TestDeviceNameEscaped(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Members: []string{"alice"}})
	const name = `<img src=x onerror=alert(1)>`
	if _, _, err := tw.Service.IssueDevice(context.Background(), accounts.NewDevice{Person: "alice", Name: name}); err != nil {
		t.Fatal(err)
	}
	body := text(t, tw.loginAs(t, "alice").do("GET", "/devices", nil))
	if strings.Contains(body, "<img") {
		t.Error("the devices page holds an <img> element: the device name was not escaped")
	}
	if !strings.Contains(body, "&lt;img src=x onerror=alert(1)&gt;") {
		t.Error("the devices page does not show the device name as text")
	}
	if !strings.Contains(body, `hx-confirm="Revoke &lt;img src=x onerror=alert(1)&gt;? Its connections close at once."`) {
		t.Error("the Revoke confirm question does not hold the escaped name")
	}
}

// TestDeviceEvents: the devices page's event stream says at once when a
// device comes online, is revoked (from another tab), or is added, and it
// ends when the browser goes.
func TestDeviceEvents(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Members: []string{"alice", "bob"}})
	laptop := tw.MustIssueDevice(t, "alice", "laptop")
	bobs := tw.MustIssueDevice(t, "bob", "tablet")
	c := tw.loginAs(t, "alice")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	subsBefore := tw.App.NumSubscriptions()
	events := openEvents(t, ctx, c, "/events/devices")
	if tw.App.NumSubscriptions() <= subsBefore {
		t.Error("the open event stream follows no changes")
	}

	// Bob's device is not alice's business; it comes first, so an event
	// about it would arrive before hers.
	tw.MustConnect(t, bobs.CredsFile)
	conn := tw.MustConnect(t, laptop.CredsFile)
	ev := events.next(t, "the laptop online", func(e sseEvent) bool {
		return e.name == "device-"+laptop.PublicKey && strings.Contains(e.data, "badge online")
	})
	if strings.Contains(ev.data, "\n\n") || !strings.HasPrefix(ev.data, `<tr id="device-`+laptop.PublicKey+`"`) {
		t.Errorf("online event: got %q, want the device's row", ev.data)
	}

	// Revoked from another tab: this stream hears of it.
	other := tw.loginAs(t, "alice")
	if resp := other.do("POST", "/devices/"+laptop.PublicKey+"/revoke", nil, hxRequest, "true"); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: got %d", resp.StatusCode)
	}
	events.next(t, "the laptop revoked", func(e sseEvent) bool {
		return e.name == "device-"+laptop.PublicKey && strings.Contains(e.data, "badge revoked")
	})
	<-conn.Closed

	// A new device comes as a new row (the "no devices" row hides itself
	// beside it, in CSS).
	if resp := other.do("POST", "/devices/download", url.Values{"name": {"server"}}); resp.StatusCode != http.StatusOK {
		t.Fatalf("download: got %d", resp.StatusCode)
	}
	ev = events.next(t, "the new device", func(e sseEvent) bool { return e.name == views.DeviceNewEvent })
	if !strings.Contains(ev.data, "server") || !strings.HasPrefix(ev.data, "<tr id=\"device-") {
		t.Errorf("new device event: got %q", ev.data)
	}
	for _, e := range events.seen() {
		if strings.Contains(e.data, bobs.PublicKey) || strings.Contains(e.name, bobs.PublicKey) {
			t.Errorf("alice's stream told of bob's device: %+v", e)
		}
	}

	// The stream ends with the request: its subscription to the
	// account's changes goes.
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := tw.App.NumSubscriptions() - subsBefore
		if n <= 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d event streams still subscribed 10s after the browser went", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Changes made elsewhere reach an open devices page: here by another
// account service on a connection of its own, as another latch process or
// node would make them, never through this web server (issue 9: a revoke
// through the admin API reached no open page).
func TestDeviceEventsFromElsewhere(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Members: []string{"alice"}})
	laptop := tw.MustIssueDevice(t, "alice", "laptop")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	events := openEvents(t, ctx, tw.loginAs(t, "alice"), "/events/devices")

	other := tw.OtherService(t)
	if _, err := other.RenameDevice(ctx, "alice", "laptop", "work-laptop"); err != nil {
		t.Fatal(err)
	}
	events.next(t, "the rename from elsewhere", func(e sseEvent) bool {
		return e.name == "device-"+laptop.PublicKey && strings.Contains(e.data, "work-laptop")
	})
	if _, err := other.RevokeDevice(ctx, "alice", laptop.PublicKey); err != nil {
		t.Fatal(err)
	}
	events.next(t, "the revocation from elsewhere", func(e sseEvent) bool {
		return e.name == "device-"+laptop.PublicKey && strings.Contains(e.data, "badge revoked")
	})
	if _, _, err := other.IssueDevice(ctx, accounts.NewDevice{Person: "alice", Name: "tablet"}); err != nil {
		t.Fatal(err)
	}
	events.next(t, "a device issued elsewhere", func(e sseEvent) bool {
		return e.name == views.DeviceNewEvent && strings.Contains(e.data, "tablet")
	})
}

// TestDeviceEventsEndOnClose: CloseStreams, as the HTTP server's shutdown
// calls it, ends the open event streams, so that the shutdown need not
// wait for browsers to go.
func TestDeviceEventsEndOnClose(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Members: []string{"alice"}})
	events := openEvents(t, context.Background(), tw.loginAs(t, "alice"), "/events/devices")
	tw.Web.CloseStreams()
	select {
	case _, ok := <-events.ch:
		if ok {
			t.Error("got an event, want the stream to end")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the event stream is still open 10s after CloseStreams")
	}
}

// sseEvent is one server-sent event.
type sseEvent struct{ name, data string }

// sseStream reads a server-sent event stream in the background.
type sseStream struct {
	ch  chan sseEvent
	err chan error
	all []sseEvent
}

// openEvents opens an event stream with the client's cookies and checks
// its headers.
func openEvents(t *testing.T, ctx context.Context, c *client, path string) *sseStream {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", strings.Replace(c.base, "localhost", "127.0.0.1", 1)+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	// No client timeout: the stream stays open; ctx ends it.
	resp, err := (&http.Client{Jar: c.c.Jar, CheckRedirect: c.c.CheckRedirect}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: got %d, want 200", path, resp.StatusCode)
	}
	if got := resp.Header.Get("Content-Type"); got != "text/event-stream" {
		t.Fatalf("GET %s: Content-Type %q, want text/event-stream", path, got)
	}
	s := &sseStream{ch: make(chan sseEvent, 64), err: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		var data []string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" || len(data) > 0 {
					ev.data = strings.Join(data, "\n")
					s.ch <- ev
				}
				ev, data = sseEvent{}, nil
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data = append(data, strings.TrimPrefix(line, "data: "))
			}
		}
		s.err <- sc.Err()
		close(s.ch)
	}()
	return s
}

// next waits for the first event that match accepts, keeping the others.
func (s *sseStream) next(t *testing.T, what string, match func(sseEvent) bool) sseEvent {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-s.ch:
			if !ok {
				t.Fatalf("waiting for %s: the stream ended: %v", what, <-s.err)
			}
			s.all = append(s.all, ev)
			if match(ev) {
				return ev
			}
		case <-timeout:
			t.Fatalf("waiting for %s: no such event in 20s; got %d others", what, len(s.all))
		}
	}
}

func (s *sseStream) seen() []sseEvent { return s.all }

// rowOf is the table row of a device in a page.
func rowOf(t *testing.T, page, pub string) string {
	t.Helper()
	i := strings.Index(page, `<tr id="device-`+pub+`"`)
	if i < 0 {
		t.Fatalf("no row for device %s in the page", pub)
	}
	j := strings.Index(page[i:], "</tr>")
	return page[i : i+j]
}

func waitOnline(t *testing.T, tw *testWeb, account, user string) {
	t.Helper()
	waitPresence(t, tw, account, user, true)
}

func waitOffline(t *testing.T, tw *testWeb, account, user string) {
	t.Helper()
	waitPresence(t, tw, account, user, false)
}

func waitPresence(t *testing.T, tw *testWeb, account, user string, online bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for tw.Presence.Online(account, user) != online {
		if time.Now().After(deadline) {
			t.Fatalf("device %s: online is still %v after 15s", user, !online)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Download creds hands out a seed, so it needs a passkey check from the
// last minute; without one nothing is issued.
func TestDownloadCredsNeedsAFreshPasskeyCheck(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	p := tw.mustPerson(t, "erin", false)
	c := tw.loginStale(t, p.Name)
	resp := c.do("POST", "/devices/download", url.Values{"name": {"build-box"}}, "Accept", "application/json")
	var e apiError
	decode(t, resp, &e)
	if resp.StatusCode != http.StatusForbidden || e.Error != "reauth_required" {
		t.Errorf("download with a stale passkey check: got %d %+v, want 403 reauth_required", resp.StatusCode, e)
	}
	if ds, _ := tw.Service.Devices(context.Background(), p.Name); len(ds) != 0 {
		t.Errorf("devices after a refused download: got %d, want 0", len(ds))
	}
}

// Disconnect closes a device's connections without revoking it: the row
// shows how many it had, offers Disconnect while it is online, and the
// device may connect again.
func TestDeviceDisconnect(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	alice := tw.mustPerson(t, "alice", false)
	laptop := tw.MustIssueDevice(t, "alice", "laptop")
	a, b := tw.MustConnect(t, laptop.CredsFile), tw.MustConnect(t, laptop.CredsFile)
	waitOnline(t, tw, alice.Account, laptop.PublicKey)
	c := tw.loginAs(t, "alice")
	for deadline := time.Now().Add(10 * time.Second); ; {
		row := rowOf(t, text(t, c.do("GET", "/devices", nil)), laptop.PublicKey)
		if strings.Contains(row, "2 connections") && strings.Contains(row, ">Disconnect</button>") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("laptop's row with two connections: %s", row)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp := c.do("POST", "/devices/"+laptop.PublicKey+"/disconnect", nil, "HX-Request", "true")
	if body := text(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="device-`+laptop.PublicKey+`"`) {
		t.Fatalf("disconnect: got %d %s", resp.StatusCode, body)
	}
	for _, conn := range []*latchtest.Conn{a, b} {
		select {
		case <-conn.Closed:
		case <-time.After(10 * time.Second):
			t.Fatal("a connection of the laptop is still open after Disconnect")
		}
	}
	again := tw.MustConnect(t, laptop.CredsFile)
	if err := again.Flush(); err != nil {
		t.Errorf("the laptop connecting again after Disconnect: %v", err)
	}
	// Not another person's device.
	tw.mustPerson(t, "bob", false)
	if resp := tw.loginAs(t, "bob").do("POST", "/devices/"+laptop.PublicKey+"/disconnect", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("bob disconnects alice's laptop: got %d, want 404", resp.StatusCode)
	}
}
