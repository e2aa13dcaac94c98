package web

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/latch-dev/latch/accounts"
)

// Behind https the session cookies are Secure and carry the __Host- prefix
// (bound to this host, path /); on plain http (localhost) they cannot.
func TestSessionCookies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url          string
		name         string
		secure, hsts bool
	}{
		{url: "https://latch.example.com", name: "__Host-latch", secure: true, hsts: true},
		{url: "http://localhost:8080", name: "latch"},
	} {
		s, err := New(Config{PublicURL: tc.url, Accounts: nopAccounts{}})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		if err := s.sessions.setToken(rec, httptest.NewRequest("GET", "/", nil), "token"); err != nil {
			t.Fatal(err)
		}
		cookies := rec.Result().Cookies()
		if len(cookies) != 1 {
			t.Fatalf("%s: got %d cookies, want 1", tc.url, len(cookies))
		}
		c := cookies[0]
		if c.Name != tc.name || c.Secure != tc.secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" ||
			c.MaxAge != int(sessionLifetime/time.Second) {
			t.Errorf("%s: cookie %+v, want %s, Secure %v, HttpOnly, SameSite=Lax, path /, 12 hours", tc.url, c, tc.name, tc.secure)
		}
		rec = httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest("GET", "/static/latch.css", nil))
		if got := rec.Header().Get("Strict-Transport-Security") != ""; got != tc.hsts {
			t.Errorf("%s: HSTS sent %v, want %v", tc.url, got, tc.hsts)
		}
	}
}

// nopAccounts satisfies Accounts for tests that never reach the service.
type nopAccounts struct{ Accounts }

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{
		{PublicURL: "latch.example.com", Accounts: nopAccounts{}},
		{PublicURL: "ftp://latch.example.com", Accounts: nopAccounts{}},
		{PublicURL: "https://latch.example.com/app", Accounts: nopAccounts{}},
		{PublicURL: "https://10.0.0.1", Accounts: nopAccounts{}}, // passkeys need a host name
		{Signup: "sometimes", Accounts: nopAccounts{}},
		{SessionKeys: [][]byte{randomBytes(64), randomBytes(16)}, Accounts: nopAccounts{}},
		{},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v): no error", cfg)
		}
	}
}

// Behind a trusted proxy the rate limits count per client as the proxy saw
// it; otherwise X-Forwarded-For is ignored and the connection's address
// counts.
func TestTrustProxy(t *testing.T) {
	t.Parallel()
	for _, trust := range []bool{true, false} {
		s, err := New(Config{Accounts: nopAccounts{}, TrustProxy: trust})
		if err != nil {
			t.Fatal(err)
		}
		limited := func(from string) bool {
			req := httptest.NewRequest("POST", "/login/begin", nil)
			req.Header.Set("X-Forwarded-For", "203.0.113.9, "+from)
			req.Header.Set("Accept", "application/json")
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			return rec.Code == http.StatusTooManyRequests
		}
		for range limits["login"].burst {
			limited("198.51.100.1")
		}
		if !limited("198.51.100.1") {
			t.Fatalf("trust %v: the login limit never applied", trust)
		}
		if got := limited("198.51.100.2"); got == trust {
			t.Errorf("trust %v: another forwarded client limited = %v, want %v", trust, got, !trust)
		}
	}
}

// copyOf is a second client holding the same cookies as c, as someone who
// copied them would.
func (tw *testWeb) copyOf(tb testing.TB, c *client) *client {
	tb.Helper()
	u, _ := url.Parse(strings.Replace(tw.URL, "localhost", "127.0.0.1", 1))
	cp := tw.client(tb)
	cp.c.Jar.SetCookies(u, c.c.Jar.Cookies(u))
	return cp
}

// loggedOut reports whether c is sent to the login page from path.
func loggedOut(tb testing.TB, c *client, path string) bool {
	tb.Helper()
	resp := c.do("GET", path, nil)
	return resp.StatusCode == http.StatusSeeOther && resp.Header.Get("Location") == "/login"
}

// A session belongs to one person, not to a name: once victim-vic is
// deleted, their old cookie opens nothing of a new person who signs up
// under the same name, admin pages included.
func TestSessionBelongsToOnePerson(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	ctx := context.Background()
	old, err := tw.Service.CreatePerson(ctx, accounts.NewPerson{DisplayName: "Victim Vic"})
	if err != nil {
		t.Fatal(err)
	}
	stolen := tw.loginAs(t, old.Name)
	if loggedOut(t, stolen, "/devices") {
		t.Fatal("the session does not work before the delete")
	}
	if _, err := tw.Service.DeletePerson(ctx, old.Name); err != nil {
		t.Fatal(err)
	}
	again, err := tw.Service.CreatePerson(ctx, accounts.NewPerson{DisplayName: "Victim Vic", Role: accounts.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	if again.Name != old.Name {
		t.Fatalf("the new person is %q, want the old name %q", again.Name, old.Name)
	}
	for _, path := range []string{"/devices", "/passkeys", "/records", "/admin"} {
		if !loggedOut(t, stolen, path) {
			t.Errorf("the deleted person's cookie opens the new %s's %s", again.Name, path)
		}
	}
	stolen.do("POST", "/admin/invites", url.Values{"admin": {"1"}})
	if invs, err := tw.Service.Invites(ctx); err != nil || len(invs) != 0 {
		t.Errorf("the deleted person's cookie made an admin invite: %+v, %v", invs, err)
	}

	// The new person's own session works.
	fresh := tw.loginAs(t, again.Name)
	if loggedOut(t, fresh, "/admin") {
		t.Fatal("the new person's own session does not work")
	}
}

// Log out ends the session on the server: a copy of the cookie taken
// before is refused after.
func TestLogoutEndsTheSessionOnTheServer(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	p := tw.mustPerson(t, "dora", false)
	c := tw.loginAs(t, p.Name)
	copied := tw.copyOf(t, c)
	if loggedOut(t, copied, "/devices") {
		t.Fatal("the copied cookie does not work before log out")
	}
	if resp := c.do("POST", "/logout", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("log out: got %d, want 303", resp.StatusCode)
	}
	if !loggedOut(t, copied, "/devices") {
		t.Error("a copy of the cookie still works after log out")
	}
	if ss, err := tw.Service.Sessions(context.Background(), p.Name, time.Now()); err != nil || len(ss) != 0 {
		t.Errorf("sessions after log out: got %d, %v; want none", len(ss), err)
	}
}

// The Passkeys page lists the person's sessions (when, from where, which
// browser), and ends one on request; deleting the person ends the rest.
func TestSessionsOnThePasskeysPage(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	p := tw.mustPerson(t, "erin", false)
	here, there := tw.loginAs(t, p.Name), tw.loginAs(t, p.Name)
	page := text(t, here.do("GET", "/passkeys", nil))
	ss, err := tw.Service.Sessions(context.Background(), p.Name, time.Now())
	if err != nil || len(ss) != 2 {
		t.Fatalf("sessions: got %d, %v; want 2", len(ss), err)
	}
	for _, ws := range ss {
		if !strings.Contains(page, `id="session-`+ws.ID[:16]+`"`) {
			t.Errorf("the page does not list session %s", ws.ID[:16])
		}
	}
	if strings.Count(page, ">this one<") != 1 || strings.Count(page, ">End</button>") != 1 || !strings.Contains(page, "192.0.2.1") {
		t.Errorf("the sessions table does not mark this session, offer End for the other and show the address:\n%s", page)
	}
	body := text(t, here.do("POST", "/sessions/"+findOther(t, page)+"/end", nil, "HX-Request", "true"))
	if !strings.Contains(body, "1 session logged out") {
		t.Errorf("End: got %s", body)
	}
	if !loggedOut(t, there, "/devices") || loggedOut(t, here, "/devices") {
		t.Error("End ended the wrong session")
	}
	if resp := here.do("POST", "/sessions/"+ss[0].ID+"00/end", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("End of an unknown session: got %d, want 404", resp.StatusCode)
	}
	if _, err := tw.Service.DeletePerson(context.Background(), p.Name); err != nil {
		t.Fatal(err)
	}
	if !loggedOut(t, here, "/devices") {
		t.Error("a deleted person's session still works")
	}
}

// findOther is the ID in the one End button of a sessions table.
func findOther(t testing.TB, page string) string {
	t.Helper()
	const pre = `hx-post="/sessions/`
	i := strings.Index(page, pre)
	if i < 0 {
		t.Fatalf("no End button:\n%s", page)
	}
	rest := page[i+len(pre):]
	return rest[:strings.Index(rest, "/end")]
}

// A passkey ceremony's challenge is answered at most once: its state is
// on the server, so a browser (or anyone who copied the cookie) sending
// the same ceremony cookie again gets nothing.
func TestCeremonyIsAnsweredOnce(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	rec := httptest.NewRecorder()
	c := ceremony{Kind: ceremonyReauth, Data: webauthn.SessionData{Challenge: "a-challenge"}}
	if err := tw.Web.setCeremony(rec, httptest.NewRequest("POST", "/reauth/begin", nil), c); err != nil {
		t.Fatal(err)
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 || strings.Contains(cookies[0].Value, "a-challenge") {
		t.Fatalf("ceremony cookies: %+v", cookies)
	}
	take := func(kind ceremonyKind) (ceremony, error) {
		req := httptest.NewRequest("POST", "/reauth/finish", nil)
		for _, c := range cookies {
			req.AddCookie(c)
		}
		return tw.Web.takeCeremony(httptest.NewRecorder(), req, kind)
	}
	got, err := take(ceremonyReauth)
	if err != nil || got.Data.Challenge != "a-challenge" {
		t.Fatalf("take the ceremony: got %+v, %v", got, err)
	}
	if _, err := take(ceremonyReauth); !errors.Is(err, errCeremony) {
		t.Errorf("the same ceremony cookie again: got %v, want %v", err, errCeremony)
	}
}

// A body that trickles in holds a connection only so long: the server
// answers 408 and closes it.
func TestSlowBodyIsCut(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{BodyTimeout: 300 * time.Millisecond})
	for _, path := range []string{"/api/enroll/start", "/register/begin"} {
		conn, err := net.Dial("tcp", tw.HTTP.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"name\":", path)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: no answer to a slow body within 10s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("%s: a slow body got %d, want 408", path, resp.StatusCode)
		}
		conn.Close()
	}
}
