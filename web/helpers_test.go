package web

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/latch-dev/latch/resolver"
)

// testWeb is a real latch stack with the web server in front of it on a
// random port.
type testWeb struct {
	*latchtest.Stack
	Web      *Server
	HTTP     *httptest.Server
	Presence *resolver.Presence
	URL      string // http://localhost:PORT, the public URL
}

type webOptions struct {
	Signup string
	// Status shows the stack's server on the admin page.
	Status bool
	Now    func() time.Time
	// BodyTimeout shortens how long a body may take to arrive.
	BodyTimeout time.Duration
	// Admins and Members are persons there from the start, made as
	// mustPerson makes them, admins first.
	Admins, Members []string
	// NoRecordsHistory runs the stack without records histories.
	NoRecordsHistory bool
}

// mustWeb starts a stack and a web server on it.
func mustWeb(tb testing.TB, o webOptions) *testWeb {
	tb.Helper()
	st := latchtest.MustStart(tb, latchtest.Options{Dir: tb.TempDir(), NoRecordsHistory: o.NoRecordsHistory})
	pr, err := resolver.WatchPresence(st.Sys, st.Server, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pr.Close)
	hs := httptest.NewUnstartedServer(nil)
	port := hs.Listener.Addr().(interface{ String() string }).String()
	port = port[strings.LastIndexByte(port, ':')+1:]
	tw := &testWeb{Stack: st, HTTP: hs, Presence: pr, URL: "http://localhost:" + port}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	tw.Web, err = New(Config{
		PublicURL: tw.URL, Signup: o.Signup, Servers: func() []string { return []string{st.Server.ClientURL()} },
		Accounts: st.Service, Presence: testPresence{pr}, Log: log, Now: o.Now, BodyTimeout: o.BodyTimeout,
	})
	if err != nil {
		tb.Fatal(err)
	}
	if o.Status {
		tw.Web.cfg.Status = stackStatus{tw}
	}
	hs.Config.Handler = tw.Web
	hs.Start()
	tb.Cleanup(hs.Close)
	for _, name := range o.Admins {
		tw.mustPerson(tb, name, true)
	}
	for _, name := range o.Members {
		tw.mustPerson(tb, name, false)
	}
	return tw
}

// client is a browser-like HTTP client: a cookie jar, no redirects
// followed, and the request headers a same-origin fetch sends.
type client struct {
	tb   testing.TB
	base string
	c    *http.Client
}

func (tw *testWeb) client(tb testing.TB) *client {
	jar, _ := cookiejar.New(nil)
	return &client{tb: tb, base: tw.URL, c: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}}
}

// do sends a request; body is JSON-encoded unless it is a url.Values
// (sent as a form) or nil. hdr adds headers as name, value pairs.
func (c *client) do(method, path string, body any, hdr ...string) *http.Response {
	c.tb.Helper()
	var rd io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case url.Values:
		rd, ctype = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	case string:
		rd, ctype = strings.NewReader(b), "application/json"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			c.tb.Fatal(err)
		}
		rd, ctype = strings.NewReader(string(j)), "application/json"
	}
	req, err := http.NewRequest(method, strings.Replace(c.base, "localhost", "127.0.0.1", 1)+path, rd)
	if err != nil {
		c.tb.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.tb.Fatalf("%s %s: %v", method, path, err)
	}
	c.tb.Cleanup(func() { resp.Body.Close() })
	return resp
}

// text reads a response's body.
func text(tb testing.TB, resp *http.Response) string {
	tb.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// decode reads a JSON response into v.
func decode(tb testing.TB, resp *http.Response, v any) {
	tb.Helper()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		tb.Fatalf("decode %s response: %v", resp.Request.URL.Path, err)
	}
}

// mustPerson creates a person with a passkey handle, as sign-up would.
func (tw *testWeb) mustPerson(tb testing.TB, name string, admin bool) accounts.Person {
	tb.Helper()
	role := accounts.RoleMember
	if admin {
		role = accounts.RoleAdmin
	}
	p, err := tw.Service.CreatePerson(context.Background(), accounts.NewPerson{Name: name, DisplayName: "Person " + name, Role: role})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// loginAs returns a client logged in as person, with a fresh passkey
// check, without a passkey ceremony: the session is started by the
// account service as a login would, and its cookie made by the server's
// own session store. The ceremonies themselves are tested in the browser
// test.
func (tw *testWeb) loginAs(tb testing.TB, person string) *client {
	tb.Helper()
	c := tw.client(tb)
	now := time.Now()
	if tw.Web.cfg.Now != nil {
		now = tw.Web.cfg.Now()
	}
	u, _ := url.Parse(strings.Replace(tw.URL, "localhost", "127.0.0.1", 1))
	c.c.Jar.SetCookies(u, tw.sessionCookiesAt(tb, person, now))
	return c
}

// sessionCookiesAt starts a session of person logged in (and so with a
// passkey check) at t, and returns its cookie.
func (tw *testWeb) sessionCookiesAt(tb testing.TB, person string, t time.Time) []*http.Cookie {
	tb.Helper()
	token, _, err := tw.Service.StartSession(context.Background(), accounts.NewWebSession{Person: person, Addr: "192.0.2.1", UserAgent: "test", Now: t})
	if err != nil {
		tb.Fatal(err)
	}
	rec := httptest.NewRecorder()
	if err := tw.Web.sessions.setToken(rec, httptest.NewRequest("GET", "/", nil), token); err != nil {
		tb.Fatal(err)
	}
	return rec.Result().Cookies()
}

// testPresence gives web the watcher's events in web's type, as the
// server's wiring does.
type testPresence struct{ *resolver.Presence }

func (p testPresence) Subscribe(account string) (<-chan PresenceEvent, func()) {
	in, cancel := p.Presence.Subscribe(account)
	out := make(chan PresenceEvent, cap(in))
	go func() {
		defer close(out)
		for ev := range in {
			select {
			case out <- PresenceEvent{Account: ev.Account, User: ev.User, Online: ev.Online}:
			default:
			}
		}
	}()
	return out, cancel
}
