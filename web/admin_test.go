package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/latchtest"
)

// TestAdminOnly: a person who is not an admin gets 403 from every admin
// page and action, and nothing changes.
func TestAdminOnly(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Admins: []string{"root"}, Members: []string{"bob"}})
	c := tw.loginAs(t, "bob")
	for _, rt := range []struct{ method, path string }{
		{"GET", "/admin"},
		{"GET", "/admin/audit"},
		{"POST", "/admin/persons/root/disable"},
		{"POST", "/admin/persons/root/enable"},
		{"POST", "/admin/persons/root/delete"},
		{"POST", "/admin/invites"},
		{"POST", "/admin/invites/abcdef12/revoke"},
		{"POST", "/admin/persons/root/invite"},
	} {
		for _, htmx := range []bool{false, true} {
			var hdr []string
			if htmx {
				hdr = []string{hxRequest, "true"}
			}
			resp := c.do(rt.method, rt.path, url.Values{"admin": {"true"}}, hdr...)
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s (htmx %v): got %d, want 403", rt.method, rt.path, htmx, resp.StatusCode)
			}
		}
	}
	if p, err := tw.Service.Person(context.Background(), "root"); err != nil || p.Status != accounts.StatusActive {
		t.Errorf("root after bob's tries: got %+v, %v; want active", p, err)
	}
	if invs, _ := tw.Service.Invites(context.Background()); len(invs) != 0 {
		t.Errorf("bob made %d invites", len(invs))
	}
	// The nav shows no Admin link to bob.
	if body := text(t, c.do("GET", "/devices", nil)); strings.Contains(body, `href="/admin"`) {
		t.Error("bob's pages link to /admin")
	}
}

// TestAdminPage lists persons with role, status and active devices, the
// server's status (or that there is none), and the audit trail newest
// first.
func TestAdminPage(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Admins: []string{"root"}, Members: []string{"bob"}})
	tw.MustIssueDevice(t, "bob", "one")
	tw.MustIssueDevice(t, "bob", "two")
	gone := tw.MustIssueDevice(t, "bob", "three")
	if _, err := tw.Service.RevokeDevice(context.Background(), "bob", gone.PublicKey); err != nil {
		t.Fatal(err)
	}
	c := tw.loginAs(t, "root")

	resp := c.do("GET", "/admin", nil)
	body := text(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /admin: got %d, want 200: %s", resp.StatusCode, body)
	}
	bob := personRow(t, body, "bob")
	for _, want := range []string{"<td>member</td>", "<td>2</td>", "active", ">Disable</button>", ">Delete</button>",
		`hx-confirm="Delete bob for good?`} {
		if !strings.Contains(bob, want) {
			t.Errorf("bob's row lacks %q: %s", want, bob)
		}
	}
	root := personRow(t, body, "root")
	if !strings.Contains(root, "<td>admin</td>") || strings.Contains(root, "/delete") || strings.Contains(root, "/disable") {
		t.Errorf("root's own row: got %s, want admin and no Disable or Delete", root)
	}
	if !strings.Contains(body, "Server status is not available") {
		t.Error("without a Status the page does not say the status is not available")
	}
	// Newest first: the revoke came after the issues.
	revoke, issue := strings.Index(body, string(accounts.ActionDeviceRevoke)), strings.Index(body, string(accounts.ActionDeviceIssue))
	if revoke < 0 || issue < 0 || revoke > issue {
		t.Errorf("audit trail: %s at %d, %s at %d; want both, newest first", accounts.ActionDeviceRevoke, revoke, accounts.ActionDeviceIssue, issue)
	}

	// With the real server's status.
	tw.Web.cfg.Status = stackStatus{tw}
	body = text(t, c.do("GET", "/admin", nil))
	accts, err := tw.Claims.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"nats-server " + tw.Server.Stats().Version, `<span class="badge online">ok</span>`,
		strconv.Itoa(len(accts)) + " accounts", tw.Server.ClientURL()} {
		if !strings.Contains(body, want) {
			t.Errorf("server status lacks %q", want)
		}
	}

	// The audit trail alone: a fragment for htmx, a page otherwise.
	frag := text(t, c.do("GET", "/admin/audit", nil, hxRequest, "true"))
	if !strings.HasPrefix(strings.TrimSpace(frag), `<section id="audit">`) || !strings.Contains(frag, string(accounts.ActionDeviceRevoke)) {
		t.Errorf("GET /admin/audit with htmx: got %q, want the audit section", frag)
	}
	if page := text(t, c.do("GET", "/admin/audit", nil)); !strings.HasPrefix(page, "<!doctype html>") || !strings.Contains(page, `<section id="audit">`) {
		t.Error("GET /admin/audit is not a page")
	}
}

// TestAdminPersons: disable ends the person's sessions and devices until
// enabled; delete removes them; an admin can do neither to themselves.
func TestAdminPersons(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Admins: []string{"root"}, Members: []string{"bob"}})
	dev := tw.MustIssueDevice(t, "bob", "laptop")
	conn := tw.MustConnect(t, dev.CredsFile)
	c := tw.loginAs(t, "root")
	bobc := tw.loginAs(t, "bob")
	ctx := context.Background()

	resp := c.do("POST", "/admin/persons/bob/disable", nil, hxRequest, "true")
	body := text(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(strings.TrimSpace(body), `<section id="persons">`) {
		t.Fatalf("disable with htmx: got %d, want 200 and the persons section: %s", resp.StatusCode, body)
	}
	if row := personRow(t, body, "bob"); !strings.Contains(row, "disabled") || !strings.Contains(row, ">Enable</button>") {
		t.Errorf("bob's row after disable: %s", row)
	}
	select {
	case <-conn.Closed:
	case <-time.After(15 * time.Second):
		t.Error("bob's device is still connected 15s after bob was disabled")
	}
	// Disabling a person ends their web sessions.
	if resp := bobc.do("GET", "/devices", nil); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("bob's session after disable: got %d to %q, want 303 to /login", resp.StatusCode, resp.Header.Get("Location"))
	}

	resp = c.do("POST", "/admin/persons/bob/enable", url.Values{})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin" {
		t.Errorf("enable by form: got %d to %q, want 303 to /admin", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp := bobc.do("GET", "/devices", nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("bob's ended session after enable: got %d, want 303 to /login", resp.StatusCode)
	}
	if resp := tw.loginAs(t, "bob").do("GET", "/devices", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("bob logged in again after enable: got %d, want 200", resp.StatusCode)
	}
	tw.MustConnect(t, dev.CredsFile)

	for _, action := range []string{"disable", "delete"} {
		resp := c.do("POST", "/admin/persons/root/"+action, nil, hxRequest, "true")
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s yourself: got %d, want 400", action, resp.StatusCode)
		}
	}
	if resp := c.do("POST", "/admin/persons/nobody/disable", nil, hxRequest, "true"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("disable an unknown person: got %d, want 404", resp.StatusCode)
	}

	resp = c.do("POST", "/admin/persons/bob/delete", nil, hxRequest, "true")
	body = text(t, resp)
	if resp.StatusCode != http.StatusOK || strings.Contains(body, `id="person-bob"`) {
		t.Errorf("delete with htmx: got %d, want 200 and bob gone: %s", resp.StatusCode, body)
	}
	if _, err := tw.Service.Person(ctx, "bob"); !errors.Is(err, accounts.ErrNotFound) {
		t.Errorf("bob after delete: got %v, want not found", err)
	}
	if resp := bobc.do("GET", "/devices", nil); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("bob's session after delete: got %d to %q, want 303 to /login", resp.StatusCode, resp.Header.Get("Location"))
	}
	if _, err := tw.Connect(dev.CredsFile); err == nil {
		t.Error("a deleted person's device connected")
	}
}

// TestAdminInvites: a new invite's link is shown once and works; the
// pending invites are listed by ID only; a revoked invite stops working.
func TestAdminInvites(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Admins: []string{"root"}})
	c := tw.loginAs(t, "root")
	ctx := context.Background()
	link := regexp.MustCompile(regexp.QuoteMeta(tw.URL) + `/invite/([A-Za-z0-9_-]+)`)

	resp := c.do("POST", "/admin/invites", url.Values{"admin": {"true"}}, hxRequest, "true")
	body := text(t, resp)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("create invite with htmx: got %d, Cache-Control %q; want 200, no-store", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}
	m := link.FindStringSubmatch(body)
	if m == nil || !strings.HasPrefix(strings.TrimSpace(body), `<section id="invites">`) {
		t.Fatalf("create invite: no link in the invites section: %s", body)
	}
	inv, err := tw.Service.Invite(ctx, m[1])
	if err != nil || !inv.Admin || inv.CreatedBy != "root" {
		t.Fatalf("the invite of the link: got %+v, %v; want an admin invite by root", inv, err)
	}
	if !strings.Contains(body, `id="invite-`+inv.ID+`"`) {
		t.Error("the new invite is not listed")
	}

	// Without htmx: the whole page, with a member invite's link.
	resp = c.do("POST", "/admin/invites", url.Values{})
	body = text(t, resp)
	m2 := link.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || m2 == nil || !strings.Contains(body, `<section id="persons">`) {
		t.Fatalf("create invite by form: got %d, want the admin page with the link", resp.StatusCode)
	}
	if inv2, err := tw.Service.Invite(ctx, m2[1]); err != nil || inv2.Admin {
		t.Errorf("a member invite: got %+v, %v", inv2, err)
	}

	// Shown once: the page lists both invites, with neither link.
	body = text(t, c.do("GET", "/admin", nil))
	if link.MatchString(body) {
		t.Error("the admin page shows an invite link again")
	}
	if !strings.Contains(body, `id="invite-`+inv.ID+`"`) {
		t.Errorf("the admin page does not list invite %s", inv.ID)
	}

	resp = c.do("POST", "/admin/invites/"+inv.ID+"/revoke", nil, hxRequest, "true")
	body = text(t, resp)
	if resp.StatusCode != http.StatusOK || strings.Contains(body, `id="invite-`+inv.ID+`"`) {
		t.Errorf("revoke invite: got %d, want 200 and it gone from the list: %s", resp.StatusCode, body)
	}
	if _, err := tw.Service.Invite(ctx, m[1]); !errors.Is(err, accounts.ErrNotFound) {
		t.Errorf("the revoked invite: got %v, want not found", err)
	}
	if resp := c.do("POST", "/admin/invites/"+inv.ID+"/revoke", url.Values{}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("revoke it again: got %d, want 404", resp.StatusCode)
	}
	evs, err := tw.Service.Audit(ctx, 20)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range evs {
		if e.Actor == "root" {
			actions = append(actions, string(e.Action))
		}
	}
	if got := strings.Join(actions, " "); !strings.Contains(got, "invite.create invite.create invite.revoke") {
		t.Errorf("root's audit entries: got %q, want two invite.create and an invite.revoke", got)
	}
}

// stackStatus is the test stack's server status, made as `latch serve`
// makes it.
type stackStatus struct{ tw *testWeb }

func (s stackStatus) Status(ctx context.Context) (ServerStatus, error) {
	st := s.tw.Server.Stats()
	accts, err := s.tw.Claims.List(ctx)
	out := ServerStatus{
		Name: st.Name, Version: st.Version, Uptime: st.Uptime, Connections: st.Connections,
		JetStream: st.JetStream, StorageUsed: st.StorageUsed, MemoryUsed: st.MemoryUsed,
		Accounts: len(accts), ClientURL: s.tw.Server.ClientURL(),
	}
	if err != nil {
		out.ResolverError = err.Error()
	}
	// As latch serve does (through every node's answer), for the one node.
	if out.Drift, err = s.tw.Service.Drift(ctx); err != nil {
		return out, err
	}
	return out, nil
}

// personRow is the persons table's row of a person.
func personRow(t *testing.T, page, name string) string {
	t.Helper()
	i := strings.Index(page, `<tr id="person-`+name+`"`)
	if i < 0 {
		t.Fatalf("no row for person %s", name)
	}
	j := strings.Index(page[i:], "</tr>")
	return page[i : i+j]
}

// A person made on the command line has no passkey: the admin page offers
// a link that gives them one, and it leads to a page naming them.
func TestAdminPasskeyLink(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Admins: []string{"root"}})
	addTestPasskey(t, tw, "root", "Laptop", false)
	if _, err := tw.Service.CreatePerson(context.Background(), accounts.NewPerson{Name: "carol", DisplayName: "Carol Shaw"}); err != nil {
		t.Fatal(err)
	}
	c := tw.loginAs(t, "root")
	page := text(t, c.do("GET", "/admin", nil))
	if !strings.Contains(page, `action="/admin/persons/carol/invite"`) || strings.Contains(page, `action="/admin/persons/root/invite"`) {
		t.Errorf("the admin page offers carol no passkey link, or root one:\n%s", page)
	}
	resp := c.do("POST", "/admin/persons/carol/invite", nil, hxRequest, "true")
	body := text(t, resp)
	link := regexp.MustCompile(regexp.QuoteMeta(tw.URL) + `/invite/([A-Za-z0-9_-]+)`).FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || link == nil || !strings.Contains(body, "gives carol a passkey") {
		t.Fatalf("passkey link for carol: got %d\n%s", resp.StatusCode, body)
	}
	inv, err := tw.Service.Invite(context.Background(), link[1])
	if err != nil || inv.For != "carol" || inv.CreatedBy != "root" {
		t.Errorf("the link's invite: %+v, %v; want one for carol, by root", inv, err)
	}
	anon := tw.client(t)
	wantHTML(t, "the link's page", anon.mustGet("/invite/"+link[1], http.StatusOK), "Add your passkey", "<strong>Carol Shaw</strong>")
	// Root has a passkey: no such link for root, and none by hand either.
	if resp := c.do("POST", "/admin/persons/root/invite", nil); resp.StatusCode != http.StatusConflict {
		t.Errorf("passkey link for root, who has one: got %d, want 409", resp.StatusCode)
	}
	if resp := c.do("POST", "/admin/persons/nobody/invite", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("passkey link for nobody: got %d, want 404", resp.StatusCode)
	}
}

// A JWT someone else pushed (nsc) is drift, and the admin page says so,
// with what repairs it.
func TestAdminPageShowsDrift(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Admins: []string{"root"}, Status: true})
	root := tw.loginAs(t, "root")
	p, err := tw.Service.CreatePerson(context.Background(), accounts.NewPerson{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	page := root.mustGet("/admin", http.StatusOK)
	if strings.Contains(page, `id="drift"`) {
		t.Fatal("the admin page shows drift before there is any")
	}
	tok, err := tw.Server.StoredJWT(p.Account)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := tw.Operator.Signer()
	if err != nil {
		t.Fatal(err)
	}
	foreign := latchtest.ForeignJWT(t, signer, tok, "by-hand")
	if err := tw.Claims.Push(context.Background(), foreign); err != nil {
		t.Fatal(err)
	}
	page = root.mustGet("/admin", http.StatusOK)
	i := strings.Index(page, `id="drift"`)
	if i < 0 {
		t.Fatal("the admin page does not show the drift")
	}
	if d := page[i:]; !strings.Contains(d, ">alice<") || !strings.Contains(d, p.Account) || !strings.Contains(d, "latch cluster repair") {
		t.Errorf("the drift section does not name alice's account and the repair:\n%.600s", d)
	}
}
