package web

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
)

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	resp := tw.client(t).do("GET", "/login", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /login: got %d, want 200", resp.StatusCode)
	}
	for name, want := range map[string]string{
		"Content-Security-Policy": "script-src 'self'",
		"X-Frame-Options":         "DENY",
		"X-Content-Type-Options":  "nosniff",
		"Vary":                    "HX-Request",
	} {
		if got := resp.Header.Get(name); !strings.Contains(got, want) {
			t.Errorf("%s: got %q, want it to contain %q", name, got, want)
		}
	}
	if strings.Contains(resp.Header.Get("Content-Security-Policy"), "unsafe-inline") {
		t.Errorf("the CSP allows inline script or style: %q", resp.Header.Get("Content-Security-Policy"))
	}
}

func TestLoggedOutIsSentToLogin(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	c := tw.client(t)
	for _, path := range []string{"/", "/devices", "/passkeys", "/admin"} {
		resp := c.do("GET", path, nil)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
			t.Errorf("GET %s logged out: got %d to %q, want 303 to /login", path, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	resp := c.do("GET", "/devices", nil, "HX-Request", "true")
	if resp.Header.Get("HX-Redirect") != "/login" {
		t.Errorf("htmx GET /devices logged out: got HX-Redirect %q, want /login", resp.Header.Get("HX-Redirect"))
	}
	resp = c.do("POST", "/reauth/begin", "{}", "Accept", "application/json")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST /reauth/begin logged out: got %d, want 401", resp.StatusCode)
	}
}

func TestCrossSiteRequestsAreRefused(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	c := tw.loginAs(t, tw.mustPerson(t, "alice", false).Name)
	resp := c.do("POST", "/logout", nil, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site POST /logout: got %d, want 403", resp.StatusCode)
	}
	// Still logged in.
	if resp := c.do("GET", "/login", nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after a refused cross-site logout, GET /login: got %d, want 303 (still logged in)", resp.StatusCode)
	}
}

func TestSetupLink(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	ctx := context.Background()
	token, ok, err := tw.Service.SetupInvite(ctx)
	if err != nil || !ok {
		t.Fatalf("SetupInvite: %v, %v", ok, err)
	}
	c := tw.client(t)
	resp := c.do("GET", "/setup/"+token, nil)
	body := text(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Set up latch") || !strings.Contains(body, "Create a passkey") {
		t.Fatalf("GET /setup/TOKEN: got %d\n%s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Referrer-Policy"); got != "no-referrer" {
		t.Errorf("setup page Referrer-Policy: got %q, want no-referrer", got)
	}
	resp = c.do("GET", "/setup/not-a-token", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /setup/not-a-token: got %d, want 404", resp.StatusCode)
	}

	// Registration begins with a resident key and user verification
	// required, and a ceremony cookie.
	resp = c.do("POST", "/register/begin", map[string]string{"display_name": "Ada", "token": token}, "Accept", "application/json")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /register/begin: got %d: %s", resp.StatusCode, text(t, resp))
	}
	var opts struct {
		PublicKey struct {
			RP                     struct{ ID string }
			User                   struct{ Name string }
			AuthenticatorSelection struct {
				ResidentKey      string `json:"residentKey"`
				UserVerification string `json:"userVerification"`
			} `json:"authenticatorSelection"`
		} `json:"publicKey"`
	}
	decode(t, resp, &opts)
	pk := opts.PublicKey
	if pk.RP.ID != "localhost" || pk.User.Name != "Ada" || pk.AuthenticatorSelection.ResidentKey != "required" ||
		pk.AuthenticatorSelection.UserVerification != "required" {
		t.Errorf("registration options: got %+v, want RP localhost, user Ada, resident key and user verification required", pk)
	}

	// A finish with no valid credential fails and uses up the ceremony;
	// the setup token is still good.
	resp = c.do("POST", "/register/finish", "{}", "Accept", "application/json")
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("POST /register/finish with no credential: got %d, want 400", resp.StatusCode)
	}
	resp = c.do("POST", "/register/finish", "{}", "Accept", "application/json")
	if body := text(t, resp); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "no passkey request") {
		t.Errorf("second POST /register/finish: got %d %s, want 400 saying no passkey request is in progress", resp.StatusCode, body)
	}
	if _, err := tw.Service.Invite(ctx, token); err != nil {
		t.Errorf("the setup token was used up by a failed registration: %v", err)
	}
	if n, _ := tw.Service.PersonCount(ctx); n != 0 {
		t.Errorf("persons after failed registrations: got %d, want 0", n)
	}
}

func TestSignupModes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		mode           string
		open, invite   int // status of GET /signup and GET /invite/TOKEN
		beginWithToken int
	}{
		{mode: SignupInvite, open: http.StatusForbidden, invite: http.StatusOK, beginWithToken: http.StatusOK},
		{mode: SignupOpen, open: http.StatusOK, invite: http.StatusOK, beginWithToken: http.StatusOK},
		{mode: SignupClosed, open: http.StatusForbidden, invite: http.StatusForbidden, beginWithToken: http.StatusForbidden},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			tw := mustWeb(t, webOptions{Signup: tc.mode, Admins: []string{"admin"}})
			token, _, err := tw.Service.CreateInvite(ctx, false)
			if err != nil {
				t.Fatal(err)
			}
			c := tw.client(t)
			if resp := c.do("GET", "/signup", nil); resp.StatusCode != tc.open {
				t.Errorf("GET /signup: got %d, want %d", resp.StatusCode, tc.open)
			}
			if resp := c.do("GET", "/invite/"+token, nil); resp.StatusCode != tc.invite {
				t.Errorf("GET /invite/TOKEN: got %d, want %d", resp.StatusCode, tc.invite)
			}
			resp := c.do("POST", "/register/begin", url.Values{"display_name": {"Bob"}, "token": {token}}, "Accept", "application/json")
			if resp.StatusCode != tc.beginWithToken {
				t.Errorf("POST /register/begin with an invite: got %d, want %d", resp.StatusCode, tc.beginWithToken)
			}
			if resp := c.do("GET", "/invite/bogus", nil); resp.StatusCode < 400 {
				t.Errorf("GET /invite/bogus: got %d, want an error", resp.StatusCode)
			}
		})
	}
}

func TestRegisterBeginRefusesBadNames(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Signup: SignupOpen})
	c := tw.client(t)
	for _, name := range []string{"", "   ", strings.Repeat("x", 65), "tab\tname"} {
		resp := c.do("POST", "/register/begin", map[string]string{"display_name": name}, "Accept", "application/json")
		var e apiError
		decode(t, resp, &e)
		if resp.StatusCode != http.StatusBadRequest || e.Description == "" {
			t.Errorf("display name %q: got %d %+v, want 400 with a description", name, resp.StatusCode, e)
		}
	}
	resp := c.do("POST", "/register/begin", "not json", "Accept", "application/json")
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("malformed JSON: got %d, want 400", resp.StatusCode)
	}
}

func TestLoginBeginIsDiscoverableAndRateLimited(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	c := tw.client(t)
	resp := c.do("POST", "/login/begin", nil, "Accept", "application/json")
	var opts struct {
		PublicKey struct {
			AllowCredentials []any  `json:"allowCredentials"`
			UserVerification string `json:"userVerification"`
			RPID             string `json:"rpId"`
		} `json:"publicKey"`
	}
	decode(t, resp, &opts)
	if len(opts.PublicKey.AllowCredentials) != 0 || opts.PublicKey.UserVerification != "required" || opts.PublicKey.RPID != "localhost" {
		t.Errorf("login options: got %+v, want no allowed credentials (usernameless), user verification required, rpId localhost", opts.PublicKey)
	}
	limited := false
	for range limits["login"].burst + 1 {
		resp := c.do("POST", "/login/begin", nil, "Accept", "application/json")
		if resp.StatusCode == http.StatusTooManyRequests {
			limited = resp.Header.Get("Retry-After") != ""
			break
		}
	}
	if !limited {
		t.Errorf("login/begin was never limited after %d requests, or the 429 had no Retry-After", limits["login"].burst+1)
	}
}

func TestDisabledPersonIsLoggedOut(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	p := tw.mustPerson(t, "carol", false)
	c := tw.loginAs(t, p.Name)
	if resp := c.do("GET", "/login", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logged in GET /login: got %d, want 303 to /devices", resp.StatusCode)
	}
	if _, err := tw.Service.DisablePerson(context.Background(), p.Name); err != nil {
		t.Fatal(err)
	}
	// Disabling ends the person's sessions on the server.
	resp := c.do("POST", "/reauth/begin", "{}", "Accept", "application/json")
	var e apiError
	decode(t, resp, &e)
	if resp.StatusCode != http.StatusUnauthorized || e.Error != "login_required" {
		t.Errorf("disabled person's session: got %d %+v, want 401 login_required", resp.StatusCode, e)
	}
	if ss, err := tw.Service.Sessions(context.Background(), p.Name, time.Now()); err != nil || len(ss) != 0 {
		t.Errorf("sessions of a disabled person: got %d, %v; want none", len(ss), err)
	}
	_, _, err := tw.Service.StartSession(context.Background(), accounts.NewWebSession{Person: p.Name, Now: time.Now()})
	if !errors.Is(err, accounts.ErrDisabled) {
		t.Errorf("a new session of a disabled person: got %v, want it refused as disabled", err)
	}
}

// A logged-in person's ceremonies name their own passkeys: adding one
// excludes those already registered (no second passkey on the same
// authenticator), and the fresh check before an approval allows only them.
func TestCeremoniesOfALoggedInPerson(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	p := tw.mustPerson(t, "dora", false)
	pk := addTestPasskey(t, tw, p.Name, "Laptop", false)
	c := tw.loginAs(t, p.Name)

	type descriptor struct {
		ID string `json:"id"`
	}
	var add struct {
		PublicKey struct {
			User               struct{ ID string }
			ExcludeCredentials []descriptor `json:"excludeCredentials"`
		} `json:"publicKey"`
	}
	resp := c.do("POST", "/passkeys/begin", map[string]string{"name": "Phone"}, "Accept", "application/json")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /passkeys/begin: got %d: %s", resp.StatusCode, text(t, resp))
	}
	decode(t, resp, &add)
	if len(add.PublicKey.ExcludeCredentials) != 1 || add.PublicKey.ExcludeCredentials[0].ID != pk.ID {
		t.Errorf("excluded credentials: got %+v, want exactly %s", add.PublicKey.ExcludeCredentials, pk.ID)
	}
	if add.PublicKey.User.ID != p.Handle {
		t.Errorf("user handle: got %q, want the person's %q", add.PublicKey.User.ID, p.Handle)
	}

	var reauth struct {
		PublicKey struct {
			AllowCredentials []descriptor `json:"allowCredentials"`
			UserVerification string       `json:"userVerification"`
		} `json:"publicKey"`
	}
	resp = c.do("POST", "/reauth/begin", "{}", "Accept", "application/json")
	decode(t, resp, &reauth)
	if len(reauth.PublicKey.AllowCredentials) != 1 || reauth.PublicKey.AllowCredentials[0].ID != pk.ID ||
		reauth.PublicKey.UserVerification != "required" {
		t.Errorf("reauth options: got %+v, want only %s, with user verification", reauth.PublicKey, pk.ID)
	}

	// A finish that answers another ceremony, or none, is refused and
	// changes nothing.
	for _, path := range []string{"/passkeys/finish", "/login/finish", "/register/finish"} {
		resp := c.do("POST", path, "{}", "Accept", "application/json")
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST %s without its ceremony: got %d, want 400", path, resp.StatusCode)
		}
	}
	if pks, _ := tw.Service.Passkeys(context.Background(), p.Name); len(pks) != 1 {
		t.Errorf("passkeys after refused finishes: got %d, want 1", len(pks))
	}
	resp = c.do("POST", "/passkeys/begin", map[string]string{"name": strings.Repeat("n", 65)}, "Accept", "application/json")
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a passkey name of 65 characters: got %d, want 400", resp.StatusCode)
	}
}

// Adding a passkey needs a passkey check from the last minute, so a
// stolen session cannot add a way in of its own.
func TestAddingAPasskeyNeedsAFreshCheck(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	p := tw.mustPerson(t, "gil", false)
	addTestPasskey(t, tw, p.Name, "Laptop", false)
	resp := tw.loginStale(t, p.Name).do("POST", "/passkeys/begin", "{}", "Accept", "application/json")
	var e apiError
	decode(t, resp, &e)
	if resp.StatusCode != http.StatusForbidden || e.Error != "reauth_required" {
		t.Errorf("POST /passkeys/begin with a stale check: got %d %+v, want 403 reauth_required", resp.StatusCode, e)
	}
}

// A passkey answer the server cannot read is the client's problem: 400
// with a clear message, never a 500.
func TestLoginFinishMalformed(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	for _, body := range []string{
		`{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{"clientDataJSON":"bm90IGpzb24","authenticatorData":"AAAA","signature":"AAAA","userHandle":"AAAA"}}`,
		`{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{}}`,
		`{}`,
		`[]`,
		`not json`,
	} {
		c := tw.client(t)
		if r := c.do("POST", "/login/begin", "{}"); r.StatusCode != http.StatusOK {
			t.Fatalf("login/begin: %d", r.StatusCode)
		}
		r := c.do("POST", "/login/finish", body, "Accept", "application/json")
		if r.StatusCode < 400 || r.StatusCode >= 500 {
			t.Errorf("login/finish with %.40q: got %d, want a 4xx", body, r.StatusCode)
		}
	}
}

// Every page names the deployment and latch's version; the login page
// says what a passkey is, and warns when the server's address is plain
// http on another machine, where browsers refuse passkeys.
func TestPagesNameTheSite(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	named, err := New(Config{PublicURL: "http://latch.example.com", Name: "acme", Version: "1.2.3", Accounts: tw.Service})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	named.ServeHTTP(rec, httptest.NewRequest("GET", "http://latch.example.com/login", nil))
	body := rec.Body.String()
	wantHTML(t, "login page of acme", body,
		"<title>Log in · latch · acme</title>", `<span class="deployment">acme</span>`, "latch 1.2.3",
		"A passkey takes the place of a password", "browsers make and use passkeys only over https")

	// On localhost (the test server) no warning, and "latch" names nothing more.
	local := tw.client(t).mustGet("/login", http.StatusOK)
	wantHTML(t, "login page on localhost", local, "A passkey takes the place of a password")
	wantNoHTML(t, "login page on localhost", local, "only over https", `class="deployment"`)
}
