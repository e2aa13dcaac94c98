package web

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// Behind https the session cookies are Secure and carry the __Host- prefix
// (bound to this host, path /); on plain http (localhost) they cannot.
func TestSessionCookies(t *testing.T) {
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
		if err := s.sessions.setLogin(rec, httptest.NewRequest("GET", "/", nil), login{Person: "p", At: time.Now()}); err != nil {
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
