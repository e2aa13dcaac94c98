package web

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/latch-dev/latch/accounts"
	latchclient "github.com/latch-dev/latch/client"
	"github.com/latch-dev/latch/internal/browsertest"
	"github.com/latch-dev/latch/views"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestBrowser walks a person through latch in headless Chromium, with a
// virtual passkey authenticator: first-run setup, log out and in, enroll a
// device that made its own key, approve it, use its creds on NATS, revoke
// it from the Devices page, add a second passkey and log in with it. Each
// step is a subtest; they share one browser and run in order. The picture
// of each page goes to the folder browsertest.ScreenshotsEnv names, which
// `make screenshots` sets to docs/screenshots.
func TestBrowser(t *testing.T) {
	chromium := browsertest.FindChromium(t)
	// The web server's clock runs ahead by skew, so a step can make the
	// last passkey check stale without waiting a minute.
	var skew atomic.Int64
	tw := mustWeb(t, webOptions{Status: true, Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
	b := browsertest.Start(t, chromium)
	f := &browserFlow{top: t, tw: tw, b: b, done: map[string]bool{}, skew: &skew}

	for _, step := range []struct {
		name  string
		needs []string
		run   func(t *testing.T)
	}{
		{"Setup", nil, f.setup},
		{"LogOutAndIn", []string{"Setup"}, f.logOutAndIn},
		{"EnrollAndApprove", []string{"Setup"}, f.enrollAndApprove},
		{"DeviceOnlineThenRevoked", []string{"EnrollAndApprove"}, f.deviceOnlineThenRevoked},
		{"SecondPasskey", []string{"Setup"}, f.secondPasskey},
		{"DownloadCreds", []string{"Setup"}, f.downloadCreds},
		{"AdminPage", []string{"Setup"}, f.adminPage},
		{"RevokedElsewhere", []string{"Setup"}, f.revokedElsewhere},
		{"RecordsPage", []string{"EnrollAndApprove"}, f.recordsPage},
		{"PhoneWidth", []string{"RecordsPage"}, f.phoneWidth},
		// After the pictures of the pages that would show the name.
		{"DeviceNameShownAsText", []string{"Setup"}, f.deviceNameShownAsText},
		// Last: it logs the admin out.
		{"PasskeyForAPersonMadeOnTheCLI", []string{"Setup"}, f.passkeyFor},
	} {
		t.Run(step.name, func(t *testing.T) {
			for _, n := range step.needs {
				if !f.done[n] {
					t.Skipf("skipped: it needs step %s, which failed or was skipped", n)
				}
			}
			step.run(t)
			f.done[step.name] = !t.Failed()
		})
	}
	for _, e := range b.PageErrors() {
		t.Errorf("the page's console: %s", e)
	}
}

// browserFlow is the state the steps of TestBrowser hand on.
type browserFlow struct {
	top  *testing.T // for what outlives a step, like the device's connection
	tw   *testWeb
	b    *browsertest.Browser
	done map[string]bool

	person   accounts.Person
	device   *latchclient.Device
	conn     *nats.Conn
	closed   chan struct{} // closed when the device's connection is
	asyncErr chan error    // what the server told the device's connection
	skew     *atomic.Int64 // how far the web server's clock runs ahead
}

const displayName = "Ada Lovelace"

// setup: the first-run link, a display name, a passkey; the person lands
// on their devices.
func (f *browserFlow) setup(t *testing.T) {
	token, ok, err := f.tw.Service.SetupInvite(context.Background())
	if err != nil || !ok {
		t.Fatalf("SetupInvite: ok %v, err %v; want a token", ok, err)
	}
	b := f.b
	b.Do(t, "open the setup link",
		chromedp.Navigate(f.tw.URL+"/setup/"+token),
		chromedp.WaitVisible(chromedp.ID("display_name")),
		chromedp.SendKeys(chromedp.ID("display_name"), displayName),
	)
	b.Screenshot(t, "setup")
	b.Do(t, `click "Create a passkey"`, chromedp.Click(browsertest.ButtonNamed("Create a passkey"), chromedp.NodeVisible))
	b.WaitPath(t, "/devices")

	ps, err := f.tw.Service.Persons(context.Background())
	if err != nil || len(ps) != 1 {
		t.Fatalf("persons after setup: %v, %v; want one", ps, err)
	}
	f.person = ps[0]
	if f.person.Role != accounts.RoleAdmin || f.person.DisplayName != displayName {
		t.Errorf("person: got role %q, display name %q; want %q, %q", f.person.Role, f.person.DisplayName, accounts.RoleAdmin, displayName)
	}
	if n := len(b.Credentials(t)); n != 1 {
		t.Errorf("authenticator holds %d credentials, want 1", n)
	}
}

// logOutAndIn: "Log out", then a discoverable passkey login with no name
// typed.
func (f *browserFlow) logOutAndIn(t *testing.T) {
	b := f.b
	b.Do(t, `click "Log out"`, chromedp.Click(browsertest.ButtonNamed("Log out"), chromedp.NodeVisible))
	b.WaitPath(t, "/login")
	b.Screenshot(t, "login")
	b.Do(t, `click "Log in with a passkey"`, chromedp.Click(browsertest.ButtonNamed("Log in with a passkey"), chromedp.NodeVisible))
	b.WaitPath(t, "/devices")
	if !strings.Contains(b.BodyText(), displayName) {
		t.Errorf("after login the page does not name %q: %q", displayName, b.BodyText())
	}
}

// enrollAndApprove: a device starts enrolling; the person types its code,
// checks its name and fingerprint and approves with a fresh passkey
// check; the device polls, gets its JWT and writes a record over NATS.
func (f *browserFlow) enrollAndApprove(t *testing.T) {
	b := f.b
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The device side is package client, as `latch client enroll` runs it.
	p, err := latchclient.StartEnroll(ctx, latchclient.EnrollOptions{
		URL: f.tw.URL, Name: "laptop", Platform: "linux/amd64", Home: filepath.Join(f.top.TempDir(), "laptop"),
	})
	if err != nil {
		t.Fatalf("StartEnroll: %v", err)
	}
	if !regexp.MustCompile(`^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$`).MatchString(p.UserCode) {
		t.Errorf("user code: got %q, want XXXX-XXXX", p.UserCode)
	}
	type waited struct {
		d   *latchclient.Device
		err error
	}
	wait := make(chan waited, 1)
	go func() {
		d, err := p.Wait(ctx)
		wait <- waited{d, err}
	}()

	b.Do(t, `click "Enroll a device"`,
		chromedp.Navigate(f.tw.URL+"/devices"),
		chromedp.Click(browsertest.ControlNamed("Enroll a device"), chromedp.NodeVisible),
	)
	b.WaitPath(t, "/enroll")
	code := chromedp.CSS(`main form input:not([type=hidden])`)
	b.Do(t, "find the code field", chromedp.WaitVisible(code))
	b.Screenshot(t, "enroll")
	// Typed in lower case without the dash: entry is case- and dash-insensitive.
	typed := strings.ToLower(strings.ReplaceAll(p.UserCode, "-", ""))
	b.Do(t, "type the code", chromedp.SendKeys(code, typed+kb.Enter))

	b.WaitFor(t, "the review page with the device's name and fingerprint",
		fmt.Sprintf(`document.body.innerText.includes(%s) && document.body.innerText.includes(%s) && !!document.evaluate(%s, document, null, 9, null).singleNodeValue`,
			browsertest.JSString(p.Name), browsertest.JSString(p.Fingerprint), browsertest.JSString(string(browsertest.ButtonNamed("Approve")))))
	for _, want := range []string{"Approve", "Deny"} {
		if n := len(browsertest.Value(t, b, "look for "+want, chromedp.Nodes(browsertest.ButtonNamed(want), chromedp.AtLeast(0)))); n != 1 {
			t.Errorf("review page: %d %q buttons, want 1", n, want)
		}
	}
	// The page's own link as a QR code, drawn, to go on with on a phone.
	label := browsertest.Value(t, b, "read the QR code", chromedp.Evaluate[string](`(() => {
		const q = document.querySelector("svg.qr");
		return q && q.getBoundingClientRect().width > 100 && q.querySelector("path").getAttribute("d").length > 100 ? q.getAttribute("aria-label") : "";
	})()`))
	if want := "/enroll?code=" + p.UserCode; !strings.HasSuffix(label, want) {
		t.Errorf("review page's QR code: %q, want one of a link ending %s", label, want)
	}
	b.Screenshot(t, "enroll-review")

	// The virtual authenticator answers the fresh passkey check that the
	// Approve form asks for; then the form posts.
	b.Do(t, `click "Approve"`, chromedp.Click(browsertest.ButtonNamed("Approve"), chromedp.NodeVisible))
	b.WaitFor(t, "the enrollment's result", `/is enrolled/.test(document.getElementById("enroll-result")?.innerText ?? "")`)
	var dev *latchclient.Device
	select {
	case w := <-wait:
		if w.err != nil {
			t.Fatalf("the device's Wait: %v", w.err)
		}
		dev = w.d
	case <-time.After(30 * time.Second):
		t.Fatal("the device got no JWT within 30s of the approval")
	}
	if dev.PublicKey != p.PublicKey {
		t.Errorf("enrolled key: got %s, want the device's own %s", dev.PublicKey, p.PublicKey)
	}
	f.device = dev

	// The devices page is open before the device connects, so that it
	// must learn of the connection over its event stream.
	b.Do(t, "open the devices page", chromedp.Navigate(f.tw.URL+"/devices"))
	row := browsertest.RowJS(dev.Name)
	b.WaitFor(t, "the device's row", "!!"+row)
	b.WaitFor(t, "the page's event stream to open", browsertest.SSEOpen)
	if txt := browsertest.Value(t, b, "read the row", chromedp.Evaluate[string](row+".innerText")); regexp.MustCompile(`(?i)\bonline\b`).MatchString(txt) {
		t.Errorf("device row before the device connected: got %q, want it not online", txt)
	}

	f.closed = make(chan struct{})
	f.asyncErr = make(chan error, 4)
	nc, err := dev.Connect(nats.NoReconnect(),
		nats.ClosedHandler(func(*nats.Conn) { close(f.closed) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case f.asyncErr <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatalf("connect with the enrolled creds: %v", err)
	}
	f.conn = nc
	f.top.Cleanup(nc.Close)
	jsc, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := jsc.KeyValue(ctx, accounts.RecordsBucket)
	if err != nil {
		t.Fatalf("open the records bucket with the device's creds: %v", err)
	}
	if _, err := kv.Put(ctx, "note1", []byte("hello from the browser test")); err != nil {
		t.Fatalf("put a record with the device's creds: %v", err)
	}
}

// deviceOnlineThenRevoked: the Devices page shows the device online
// without a reload; "Revoke", confirmed, closes its connection at once and
// the row says revoked.
func (f *browserFlow) deviceOnlineThenRevoked(t *testing.T) {
	b := f.b
	d := f.device
	// No reload: the row turns online through the page's event stream.
	row := browsertest.RowJS(d.Name)
	if txt := browsertest.Value(t, b, "read the row", chromedp.Evaluate[string](row+".textContent")); !strings.Contains(txt, views.Fingerprint(d.PublicKey)) {
		t.Errorf("device row: got %q, want the fingerprint %q", strings.Join(strings.Fields(txt), " "), views.Fingerprint(d.PublicKey))
	}
	b.WaitFor(t, `the row to say "online"`, fmt.Sprintf(`/\bonline\b/i.test((%s).innerText)`, row))
	b.Screenshot(t, "devices")

	n := b.DialogCount()
	revoke := chromedp.Search(fmt.Sprintf(`//tr[contains(., %s)]//button[normalize-space(.)="Revoke"]`, browsertest.XPathString(d.Name)))
	b.Do(t, `click "Revoke"`, chromedp.Click(revoke, chromedp.NodeVisible))
	select {
	case <-f.closed:
	case <-time.After(15 * time.Second):
		t.Fatalf("the device's NATS connection is still open 15s after Revoke (status %v)", f.conn.Status())
	}
	select {
	case err := <-f.asyncErr:
		if !errors.Is(err, nats.ErrAuthRevoked) {
			t.Errorf("the device was told %v, want %v", err, nats.ErrAuthRevoked)
		}
	default:
		t.Errorf("the device was not told why its connection closed; want %v", nats.ErrAuthRevoked)
	}
	if b.DialogCount() != n+1 {
		t.Errorf("Revoke opened %d dialogs, want 1 confirm", b.DialogCount()-n)
	} else if ev := b.Dialog(n); ev.Type != page.DialogTypeConfirm {
		t.Errorf("Revoke's dialog: got type %q, want confirm", ev.Type)
	}
	if err := b.Poll(fmt.Sprintf(`/\brevoked\b/i.test((%s).innerText)`, row)); err != nil {
		// Tell a page that missed an update from a server that did not
		// revoke: the page is read again.
		shown := b.BodyText()
		b.Do(t, "reload the devices page", chromedp.Reload())
		t.Fatalf("the row did not turn revoked without a reload (%v); page: %q; after a reload: %q", err, shown, b.BodyText())
	}
	if nc, err := d.Connect(nats.NoReconnect()); err == nil {
		nc.Close()
		t.Error("the revoked device's creds connected again")
	}
	devs, err := f.tw.Service.Devices(context.Background(), f.person.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, dv := range devs {
		if dv.PublicKey == d.PublicKey && !dv.Revoked() {
			t.Error("the device is not revoked in the account service")
		}
	}
}

// xssName is a device name that would run script if a page printed it as
// HTML.
const xssName = `<img src=x onerror=alert(1)>`

// deviceNameShownAsText: a device named like an HTML tag shows as that
// text, and no element or dialog comes of it.
func (f *browserFlow) deviceNameShownAsText(t *testing.T) {
	b := f.b
	if _, _, err := f.tw.Service.IssueDevice(context.Background(), accounts.NewDevice{Person: f.person.Name, Name: xssName}); err != nil {
		t.Fatalf("IssueDevice %q: %v", xssName, err)
	}
	n := b.DialogCount()
	b.Do(t, "open the devices page", chromedp.Navigate(f.tw.URL+"/devices"))
	// RowJS matches the row's textContent: the name is there as text.
	b.WaitFor(t, "a row with the name as text", fmt.Sprintf(`!!(%s)`, browsertest.RowJS(xssName)))
	imgs := browsertest.Value(t, b, "count images in the table", chromedp.Evaluate[int](`document.querySelectorAll("main table img").length`))
	if imgs != 0 {
		t.Errorf("the devices table holds %d <img> elements, want 0: the name was rendered as HTML", imgs)
	}
	if got := b.DialogCount() - n; got != 0 {
		t.Errorf("%d dialogs opened on the devices page, want none (first: %q)", got, b.Dialog(n).Message)
	}
	// The admin page's audit trail names the device too.
	b.Do(t, "open the admin page", chromedp.Navigate(f.tw.URL+"/admin"))
	b.WaitFor(t, "the audit trail names the device as text", fmt.Sprintf(`document.querySelector("main").textContent.includes(%s)`, browsertest.JSString(xssName)))
	if n := browsertest.Value(t, b, "count images", chromedp.Evaluate[int](`document.querySelectorAll("main img").length`)); n != 0 {
		t.Errorf("the admin page holds %d <img> elements, want 0: a name was rendered as HTML", n)
	}
	if got := b.DialogCount() - n; got != 0 {
		t.Errorf("%d dialogs opened, want none (first: %q)", got, b.Dialog(n).Message)
	}
}

// secondPasskey: "Add a passkey" registers another one; both are listed;
// logging in with only the second one works and marks it used.
func (f *browserFlow) secondPasskey(t *testing.T) {
	b := f.b
	ctx := context.Background()
	b.Do(t, "open the passkeys page",
		chromedp.Navigate(f.tw.URL+"/devices"),
		chromedp.Click(browsertest.ControlNamed("Passkeys"), chromedp.NodeVisible),
	)
	b.WaitPath(t, "/passkeys")
	first := b.Credentials(t)
	if len(first) != 1 {
		t.Fatalf("authenticator holds %d credentials, want 1", len(first))
	}
	// Adding a passkey needs a passkey check from the last minute. With the
	// server's clock two minutes on, the last one is stale: "Add a passkey"
	// first asks the authenticator for the first passkey, and then to make
	// a new one, which it refuses, since it holds one of this person's
	// (the server excludes those).
	firstID := b64.EncodeToString(first[0].CredentialID)
	f.skew.Store(int64(2 * time.Minute))
	clicked := time.Now()
	b.Do(t, `click "Add a passkey" with a stale passkey check`,
		chromedp.Click(browsertest.ButtonNamed("Add a passkey"), chromedp.NodeVisible))
	b.WaitFor(t, "the page to say the authenticator refused", `!document.getElementById("passkey-error").hidden`)
	if pk, err := f.tw.Service.Passkey(ctx, firstID); err != nil || pk.LastUsed == nil || pk.LastUsed.Before(clicked.Add(-time.Second)) {
		t.Errorf("the first passkey after a stale add: %+v, %v; want it used for a fresh check just now", pk, err)
	}
	if pks, _ := f.tw.Service.Passkeys(ctx, f.person.Name); len(pks) != 1 {
		t.Fatalf("passkeys after a refused add: got %d, want 1", len(pks))
	}

	// So the first leaves the authenticator: the second then stands for a
	// new phone or key. The passkey check just made is still fresh.
	b.RemoveCredential(t, first[0].CredentialID)
	b.Do(t, `name the new passkey and click "Add a passkey"`,
		chromedp.SendKeys(chromedp.ID("passkey-name"), "Backup key"),
		chromedp.Click(browsertest.ButtonNamed("Add a passkey"), chromedp.NodeVisible),
	)
	b.WaitFor(t, "both passkeys listed", `document.querySelectorAll("#passkeys tbody tr").length === 2`)

	pks, err := f.tw.Service.Passkeys(ctx, f.person.Name)
	if err != nil || len(pks) != 2 {
		t.Fatalf("passkeys: %d, %v; want 2", len(pks), err)
	}
	now := b.Credentials(t)
	if len(now) != 1 {
		t.Fatalf("authenticator holds %d credentials, want the new one", len(now))
	}
	second := b64.EncodeToString(now[0].CredentialID)
	if second == b64.EncodeToString(first[0].CredentialID) {
		t.Fatal("the authenticator still holds the first passkey")
	}
	if pk, err := f.tw.Service.Passkey(ctx, second); err != nil || pk.Name != "Backup key" {
		t.Errorf("the new passkey: got %+v, %v; want it named %q", pk, err, "Backup key")
	}
	lastUsed := lastUsedJS(second)
	if got := browsertest.Value(t, b, "read the new passkey's last use", chromedp.Evaluate[string](lastUsed)); got != "never" {
		t.Errorf("the new passkey's last use before any login with it: got %q, want never", got)
	}

	b.Do(t, `click "Log out"`, chromedp.Click(browsertest.ButtonNamed("Log out"), chromedp.NodeVisible))
	b.WaitPath(t, "/login")
	loggedOut := time.Now()
	b.Do(t, `click "Log in with a passkey"`, chromedp.Click(browsertest.ButtonNamed("Log in with a passkey"), chromedp.NodeVisible))
	b.WaitPath(t, "/devices")

	pk, err := f.tw.Service.Passkey(ctx, second)
	if err != nil {
		t.Fatal(err)
	}
	if pk.LastUsed == nil || pk.LastUsed.Before(loggedOut.Add(-time.Second)) {
		t.Errorf("second passkey's last use: got %v, want after %v", pk.LastUsed, loggedOut)
	}
	b.Do(t, "open the passkeys page", chromedp.Navigate(f.tw.URL+"/passkeys"))
	b.WaitFor(t, "the second passkey's row", fmt.Sprintf(`!!document.getElementById(%s)`, browsertest.JSString("passkey-"+second)))
	got := browsertest.Value(t, b, "read the second passkey's last use", chromedp.Evaluate[string](lastUsed))
	zone, err := time.LoadLocation(browsertest.Zone)
	if err != nil {
		t.Fatal(err)
	}
	// In the reader's zone, with the UTC time on hover.
	if stamp := pk.LastUsed.In(zone).Format("2006-01-02 15:04"); !strings.Contains(got, stamp) || strings.Contains(got, "UTC") {
		t.Errorf("second passkey's last use on the page: got %q, want %s, in %s", got, stamp, browsertest.Zone)
	}
	title := browsertest.Value(t, b, "read its title", chromedp.Evaluate[string](lastUsedTitleJS(second)))
	if stamp := pk.LastUsed.UTC().Format("2006-01-02 15:04 UTC"); !strings.Contains(title, stamp) {
		t.Errorf("the last use's title: %q, want %s", title, stamp)
	}
	b.Screenshot(t, "passkeys")
}

// lastUsedJS is a JavaScript expression for the "Last used" cell of a
// passkey's row on the passkeys page.
func lastUsedJS(id string) string {
	return fmt.Sprintf(`(() => {
		const row = document.getElementById(%s);
		const i = [...row.closest("table").querySelectorAll("thead th")].findIndex(th => /last used/i.test(th.textContent));
		return i < 0 ? "no Last used column" : row.cells[i].innerText.trim();
	})()`, browsertest.JSString("passkey-"+id))
}

// lastUsedTitleJS is the title of the time in that cell: the time in UTC.
func lastUsedTitleJS(id string) string {
	return fmt.Sprintf(`(() => {
		const row = document.getElementById(%s);
		const i = [...row.closest("table").querySelectorAll("thead th")].findIndex(th => /last used/i.test(th.textContent));
		const t = i < 0 ? null : row.cells[i].querySelector("time");
		return t ? t.title : "no time in the Last used cell";
	})()`, browsertest.JSString("passkey-"+id))
}

// adminPage: the admin sees persons, invites and the audit trail.
func (f *browserFlow) adminPage(t *testing.T) {
	b := f.b
	// An invite, so that the page (and its screenshot) shows one.
	if _, _, err := f.tw.Service.CreateInvite(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	b.Do(t, "open the admin page",
		chromedp.Navigate(f.tw.URL+"/devices"),
		chromedp.Click(browsertest.ControlNamed("Admin"), chromedp.NodeVisible),
	)
	b.WaitPath(t, "/admin")
	if body := b.BodyText(); !strings.Contains(body, f.person.Name) {
		t.Errorf("admin page does not list %q: %q", f.person.Name, body)
	}
	b.Screenshot(t, "admin")
}

// revokedElsewhere: a device revoked by another account service (as the
// CLI's admin service in another process, or another node, would) shows
// as revoked on the open devices page without a reload.
func (f *browserFlow) revokedElsewhere(t *testing.T) {
	b := f.b
	d := f.tw.MustIssueDevice(t, f.person.Name, "tablet")
	b.Do(t, "open the devices page", chromedp.Navigate(f.tw.URL+"/devices"))
	b.WaitFor(t, "the tablet's row and the live stream", fmt.Sprintf(`!!document.getElementById(%s) && %s`, browsertest.JSString("device-"+d.PublicKey), browsertest.SSEOpen))
	if _, err := f.tw.OtherService(t).RevokeDevice(context.Background(), f.person.Name, d.PublicKey); err != nil {
		t.Fatal(err)
	}
	b.WaitFor(t, "the tablet's row says revoked, without a reload",
		fmt.Sprintf(`document.getElementById(%s).innerText.includes("revoked")`, browsertest.JSString("device-"+d.PublicKey)))
}

// phoneWidth: every page fits a phone's screen, 390 px wide, without
// sideways scrolling (a wide table scrolls inside its own box).
func (f *browserFlow) phoneWidth(t *testing.T) {
	b := f.b
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := latchclient.StartEnroll(ctx, latchclient.EnrollOptions{
		URL: f.tw.URL, Name: "a phone with a rather long device name", Platform: "ios", Home: filepath.Join(t.TempDir(), "phone"),
	})
	if err != nil {
		t.Fatal(err)
	}
	review := strings.TrimPrefix(p.VerificationURIComplete, f.tw.URL)
	b.Do(t, "a phone's screen", chromedp.EmulateViewport(390, 844))
	defer b.Do(t, "back to the desktop's", chromedp.EmulateViewport(1200, 800))
	for _, path := range []string{"/devices", "/enroll", review, "/records", "/records/live-note", "/passkeys", "/admin", "/admin/audit"} {
		b.Do(t, "open "+path, chromedp.Navigate(f.tw.URL+path))
		b.WaitFor(t, path+" loaded", `document.readyState === "complete"`)
		wide := browsertest.Value(t, b, "measure "+path, chromedp.Evaluate[string](`(() => {
			const w = document.documentElement.clientWidth;
			if (document.documentElement.scrollWidth <= w) return "";
			const out = [];
			for (const el of document.querySelectorAll("body *")) {
				const r = el.getBoundingClientRect();
				let p = el.parentElement, inside = false;
				for (; p; p = p.parentElement) {
					const s = getComputedStyle(p).overflowX;
					if (s === "auto" || s === "scroll" || s === "hidden") { inside = true; break; }
				}
				if (!inside && r.right > w + 1) out.push(el.tagName.toLowerCase() + (el.className ? "." + el.className : "") + " to " + Math.round(r.right) + "px: " + el.textContent.trim().slice(0, 40));
			}
			return "the page is " + document.documentElement.scrollWidth + "px wide at " + w + "px: " + out.slice(0, 6).join(" | ");
		})()`))
		if wide != "" {
			t.Errorf("%s on a phone: %s", path, wide)
		}
		if path == "/devices" {
			b.Screenshot(t, "phone-devices")
		}
	}
}

// passkeyFor: a person made on the command line, with no passkey, opens
// the link `latch invite create --for` makes, creates a passkey, and is
// logged in as themselves; the passkey carries their user handle, so a
// login with it finds them.
func (f *browserFlow) passkeyFor(t *testing.T) {
	ctx := context.Background()
	carol, err := f.tw.Service.CreatePerson(ctx, accounts.NewPerson{Name: "carol", DisplayName: "Carol Shaw"})
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := f.tw.Service.CreateInviteFor(ctx, "carol", false)
	if err != nil {
		t.Fatal(err)
	}
	b := f.b
	before := len(b.Credentials(t))
	b.Do(t, `log out`,
		chromedp.Navigate(f.tw.URL+"/devices"),
		chromedp.Click(browsertest.ButtonNamed("Log out"), chromedp.NodeVisible),
	)
	b.WaitPath(t, "/login")
	b.Do(t, "open the link for carol", chromedp.Navigate(f.tw.URL+"/invite/"+token))
	b.WaitFor(t, "the page names carol", `document.body.innerText.includes("Carol Shaw")`)
	b.Do(t, `click "Create a passkey"`, chromedp.Click(browsertest.ButtonNamed("Create a passkey"), chromedp.NodeVisible))
	b.WaitPath(t, "/devices")
	if body := b.BodyText(); !strings.Contains(body, "Carol Shaw") {
		t.Errorf("after the link the page does not name Carol Shaw: %q", body)
	}
	if pks, err := f.tw.Service.Passkeys(ctx, "carol"); err != nil || len(pks) != 1 {
		t.Errorf("carol's passkeys: %d, %v; want 1", len(pks), err)
	}
	ps, _ := f.tw.Service.Persons(ctx)
	if len(ps) != 2 {
		t.Errorf("persons: %d, want the admin and carol, nobody new", len(ps))
	}
	creds := b.Credentials(t)
	if len(creds) != before+1 {
		t.Fatalf("authenticator holds %d credentials, want %d", len(creds), before+1)
	}
	found := false
	for _, c := range creds {
		found = found || base64.RawURLEncoding.EncodeToString(c.UserHandle) == carol.Handle
	}
	if !found {
		t.Errorf("no credential carries carol's user handle %s", carol.Handle)
	}
	// The link works once.
	b.Do(t, "open the link again", chromedp.Navigate(f.tw.URL+"/invite/"+token))
	b.WaitFor(t, "the page says the link is used", `document.body.innerText.includes("not valid")`)
}

// recordsPage: the record the enrolled device wrote is listed, its value
// shows, and a record another device writes meanwhile appears without a
// reload.
func (f *browserFlow) recordsPage(t *testing.T) {
	b := f.b
	b.Do(t, "open the records page",
		chromedp.Navigate(f.tw.URL+"/devices"),
		chromedp.Click(browsertest.ControlNamed("Records"), chromedp.NodeVisible),
	)
	b.WaitPath(t, "/records")
	b.WaitFor(t, "note1 to be listed", `document.getElementById("record-rows") && /note1/.test(document.getElementById("record-rows").innerText)`)
	b.WaitFor(t, "the page's event stream to open", browsertest.SSEOpen)

	// Another device of the same person writes while the page is open.
	d := f.tw.MustIssueDevice(t, f.person.Name, "desktop")
	c := f.tw.MustConnect(t, d.CredsFile)
	js, err := jetstream.New(c.Conn)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), accounts.RecordsBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), "live-note", []byte("written while the page is open")); err != nil {
		t.Fatal(err)
	}
	b.WaitFor(t, "the new record to appear without a reload", `/live-note/.test(document.getElementById("record-rows").innerText)`)
	if got := browsertest.Value(t, b, "read the count line", chromedp.Evaluate[string](`document.getElementById("records-count").innerText`)); got != "1 new key since the page was loaded, at the top." {
		t.Errorf("count line after a live new key: got %q, want it to count the new key", got)
	}
	b.Screenshot(t, "records")

	b.Do(t, "open note1", chromedp.Navigate(f.tw.URL+"/records/note1"))
	if body := b.BodyText(); !strings.Contains(body, "hello from the browser test") {
		t.Errorf("record page of note1: got %q, want its value", body)
	}
}

// downloadCreds: "Download creds" asks for a fresh passkey check (the
// virtual authenticator answers it), then the server issues the device.
func (f *browserFlow) downloadCreds(t *testing.T) {
	b := f.b
	b.Do(t, "open the devices page and ask for creds",
		chromedp.Navigate(f.tw.URL+"/devices"),
		chromedp.SendKeys(chromedp.ID("download-name"), "build-box", chromedp.NodeVisible),
		chromedp.Click(browsertest.ControlNamed("Download creds"), chromedp.NodeVisible),
	)
	deadline := time.Now().Add(browsertest.StepTimeout)
	for {
		ds, err := f.tw.Service.Devices(context.Background(), f.person.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if d.Name == "build-box" {
				if d.Enrolled != accounts.EnrolledDownload || d.Expires == nil {
					t.Errorf("downloaded device: got %+v, want a download with an expiry", d)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no device build-box after %v; page %s: %q", browsertest.StepTimeout, b.Path(), b.BodyText())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBrowserErrorsBesideTheirCause: an htmx request that fails shows its
// error right after the form or button that made it, not in the page's one
// slot at the top. On the Passkeys page a rename and a session's End fail
// at once, and each error stays in its place; a second error from the
// rename form replaces its first; a rename that succeeds takes the notice
// away. On the admin page a person's "Passkey link", which swaps the
// invites elsewhere on the page, fails beside itself in the person's row,
// and its notice goes when it succeeds.
func TestBrowserErrorsBesideTheirCause(t *testing.T) {
	chromium := browsertest.FindChromium(t)
	tw := mustWeb(t, webOptions{})
	b := browsertest.Start(t, chromium)
	b.Shots = t.TempDir() // this test's pictures are not the README's
	f := &browserFlow{top: t, tw: tw, b: b}
	f.setup(t)
	ctx := context.Background()
	me := f.person.Name

	t.Run("PasskeysPage", func(t *testing.T) {
		pks, err := tw.Service.Passkeys(ctx, me)
		if err != nil || len(pks) != 1 {
			t.Fatalf("passkeys after setup: %d, %v; want 1", len(pks), err)
		}
		_, other, err := tw.Service.StartSession(ctx, accounts.NewWebSession{Person: me, Addr: "192.0.2.7", UserAgent: "a browser left logged in", Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		row := fmt.Sprintf(`//tr[@id=%s]`, browsertest.XPathString("passkey-"+pks[0].ID))
		form, name, rename := row+"//form", row+`//input[@name="name"]`, row+`//button[normalize-space(.)="Rename"]`
		end := fmt.Sprintf(`//tr[@id=%s]//button[normalize-space(.)="End"]`, browsertest.XPathString("session-"+other.ID[:16]))
		b.Do(t, "open the passkeys page", chromedp.Navigate(tw.URL+"/passkeys"))
		b.WaitFor(t, "the passkey's row and the other session's End", fmt.Sprintf(`!!%s && !!%s`, xpathJS(form), xpathJS(end)))
		// The other browser is logged out meanwhile, as from another tab.
		if err := tw.Service.EndSessionID(ctx, me, other.ID); err != nil {
			t.Fatal(err)
		}

		// A name of spaces passes the field's "required"; the server,
		// which trims it, finds it empty.
		b.Do(t, "rename the passkey to spaces", chromedp.SetValue(chromedp.Search(name), "   "), chromedp.Click(chromedp.Search(rename), chromedp.NodeVisible))
		b.WaitFor(t, "the rename's error after its form", fmt.Sprintf(`%s.includes("a passkey name is required")`, noticeAfterJS(form)))
		b.Do(t, "end the session ended meanwhile", chromedp.Click(chromedp.Search(end), chromedp.NodeVisible))
		b.WaitFor(t, "the End's error after its button", fmt.Sprintf(`%s.includes("has no session")`, noticeAfterJS(end)))
		if got := browsertest.Value(t, b, "read the rename's error", chromedp.Evaluate[string](noticeAfterJS(form))); !strings.Contains(got, "a passkey name is required") {
			t.Errorf("after the End failed, the rename's error: got %q, want it still there", got)
		}
		wantErrorNotices(t, b, 2)

		// A page whose field lost its maxlength would send this; a
		// script's value is not held to it.
		b.Do(t, "rename the passkey to 65 characters", chromedp.SetValue(chromedp.Search(name), strings.Repeat("x", 65)), chromedp.Click(chromedp.Search(rename), chromedp.NodeVisible))
		b.WaitFor(t, "the second error in place of the first", fmt.Sprintf(`%s.includes("longer than 64")`, noticeAfterJS(form)))
		wantErrorNotices(t, b, 2)

		b.Do(t, "rename the passkey", chromedp.SetValue(chromedp.Search(name), "Laptop key"), chromedp.Click(chromedp.Search(rename), chromedp.NodeVisible))
		b.WaitFor(t, "the renamed passkey, its error gone, the End's left", fmt.Sprintf(
			`%s?.value === "Laptop key" && %s === "" && %s.includes("has no session") && %s`,
			xpathJS(name), noticeAfterJS(form), noticeAfterJS(end), errorNoticesJS+` === 1`))
		if pk, err := tw.Service.Passkey(ctx, pks[0].ID); err != nil || pk.Name != "Laptop key" {
			t.Errorf("the passkey after the rename: %q, %v; want %q", pk.Name, err, "Laptop key")
		}
		// The sessions section comes back whole, without the End's error.
		b.Do(t, `click "Log out everywhere else"`, chromedp.Click(browsertest.ButtonNamed("Log out everywhere else"), chromedp.NodeVisible))
		b.WaitFor(t, "the sessions logged out, no error left", `!!document.querySelector("#sessions .notice.ok") && `+errorNoticesJS+` === 0`)
		wantErrorNotices(t, b, 0)
	})

	t.Run("AdminPage", func(t *testing.T) {
		if _, err := tw.Service.CreatePerson(ctx, accounts.NewPerson{Name: "dave", DisplayName: "Dave"}); err != nil {
			t.Fatal(err)
		}
		link := `//tr[@id="person-dave"]//button[normalize-space(.)="Passkey link"]`
		b.Do(t, "open the admin page", chromedp.Navigate(tw.URL+"/admin"))
		b.WaitFor(t, `dave's "Passkey link"`, "!!"+xpathJS(link))
		// Another admin disables dave meanwhile.
		if _, err := tw.Service.DisablePerson(ctx, "dave"); err != nil {
			t.Fatal(err)
		}
		b.Do(t, `click dave's "Passkey link"`, chromedp.Click(chromedp.Search(link), chromedp.NodeVisible))
		b.WaitFor(t, "the error in dave's row, after the button", fmt.Sprintf(`%s.includes("disabled")`, noticeAfterJS(link)))
		if got := browsertest.Value(t, b, "look for a link", chromedp.Evaluate[bool](`!!document.getElementById("invite-link")`)); got {
			t.Error("a refused passkey link shows a link")
		}
		wantErrorNotices(t, b, 1)

		// Enabled again, the same button works; the link shows among the
		// invites, and the notice in dave's row goes.
		if _, err := tw.Service.EnablePerson(ctx, "dave"); err != nil {
			t.Fatal(err)
		}
		b.Do(t, `click dave's "Passkey link" again`, chromedp.Click(chromedp.Search(link), chromedp.NodeVisible))
		b.WaitFor(t, "the new link, and no error", fmt.Sprintf(`!!document.getElementById("invite-link") && %s === "" && %s === 0`, noticeAfterJS(link), errorNoticesJS))
		wantErrorNotices(t, b, 0)
	})

	for _, e := range b.PageErrors() {
		t.Errorf("the page's console: %s", e)
	}
}

// xpathJS is a JavaScript expression for the first element an XPath finds,
// or null.
func xpathJS(xpath string) string {
	return fmt.Sprintf(`document.evaluate(%s, document, null, XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue`, browsertest.JSString(xpath))
}

// noticeAfterJS is a JavaScript expression for the text of the error
// notice right after the element an XPath finds: "" when the next element
// is none.
func noticeAfterJS(xpath string) string {
	return fmt.Sprintf(`((n) => n && n.matches(".notice.error[role=alert]") ? n.textContent.trim() : "")(%s?.nextElementSibling)`, xpathJS(xpath))
}

// errorNoticesJS counts the error notices htmx requests left on the page:
// those besides the page's own slot.
const errorNoticesJS = `document.querySelectorAll("main .notice.error:not(#passkey-error)").length`

// wantErrorNotices checks that the page shows n htmx error notices, and
// that its slot at the top stays hidden.
func wantErrorNotices(t *testing.T, b *browsertest.Browser, n int) {
	t.Helper()
	if got := browsertest.Value(t, b, "count the error notices", chromedp.Evaluate[int](errorNoticesJS)); got != n {
		t.Errorf("error notices on the page: got %d, want %d; page: %q", got, n, b.BodyText())
	}
	if !browsertest.Value(t, b, "look at the page's error slot", chromedp.Evaluate[bool](`document.getElementById("passkey-error").hidden`)) {
		t.Errorf("the page's error slot #passkey-error shows: %q", b.BodyText())
	}
}
