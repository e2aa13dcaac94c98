package web

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/views"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// testDevice is a device key made as a device makes it.
type testDevice struct {
	kp  nkeys.KeyPair
	pub string
}

func newTestDevice(tb testing.TB) testDevice {
	tb.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		tb.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return testDevice{kp: kp, pub: pub}
}

// startBody is a well-formed start request for the device.
func (d testDevice) startBody(tb testing.TB, name string) map[string]string {
	tb.Helper()
	nonce := "nonce-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-0123456789"
	sig, err := d.kp.Sign([]byte("latch-enroll:" + nonce))
	if err != nil {
		tb.Fatal(err)
	}
	return map[string]string{"public_key": d.pub, "name": name, "platform": "linux/amd64",
		"nonce": nonce, "signature": base64.RawURLEncoding.EncodeToString(sig)}
}

func (d testDevice) seed(tb testing.TB) string {
	s, err := d.kp.Seed()
	if err != nil {
		tb.Fatal(err)
	}
	return string(s)
}

// mustStartEnroll starts an enrollment for the device through the API.
func (tw *testWeb) mustStartEnroll(tb testing.TB, d testDevice, name string) enrollStartResponse {
	tb.Helper()
	resp := tw.client(tb).do("POST", "/api/enroll/start", d.startBody(tb, name))
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("start: got %d, want 200: %s", resp.StatusCode, text(tb, resp))
	}
	var out enrollStartResponse
	decode(tb, resp, &out)
	return out
}

// serveFrom sends a request to the handler as if from addr, with cookies;
// it is for what a real client cannot vary, such as its address.
func (tw *testWeb) serveFrom(tb testing.TB, addr, method, path, ctype, body string, cookies []*http.Cookie) *httptest.ResponseRecorder {
	tb.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = addr + ":40000"
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	tw.Web.ServeHTTP(rec, req)
	return rec
}

// startFrom sends an enrollment start straight to the handler from an
// address of its own, so that cases do not share a rate limit.
func (tw *testWeb) startFrom(tb testing.TB, addr, body string) *httptest.ResponseRecorder {
	tb.Helper()
	return tw.serveFrom(tb, addr, "POST", "/api/enroll/start", "application/json", body, nil)
}

// sessionCookies are the cookies of a login session whose last passkey
// check (the login itself) was at reauth.
func (tw *testWeb) sessionCookies(tb testing.TB, person string, reauth time.Time) []*http.Cookie {
	tb.Helper()
	return tw.sessionCookiesAt(tb, person, reauth)
}

// loginStale is a client logged in as person whose last passkey check is
// older than an approval allows.
func (tw *testWeb) loginStale(tb testing.TB, person string) *client {
	tb.Helper()
	c := tw.client(tb)
	u, _ := url.Parse(strings.Replace(tw.URL, "localhost", "127.0.0.1", 1))
	c.c.Jar.SetCookies(u, tw.sessionCookies(tb, person, time.Now().Add(-2*reauthMaxAge)))
	return c
}

func poll(tb testing.TB, c *client, deviceCode string) (int, map[string]any) {
	tb.Helper()
	resp := c.do("POST", "/api/enroll/poll", map[string]string{"device_code": deviceCode})
	var out map[string]any
	decode(tb, resp, &out)
	return resp.StatusCode, out
}

var userCodeRE = regexp.MustCompile(`^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$`)

func TestEnrollStart(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	d := newTestDevice(t)
	got := tw.mustStartEnroll(t, d, "laptop")
	if !userCodeRE.MatchString(got.UserCode) {
		t.Errorf("user_code %q, want XXXX-XXXX of the RFC 8628 alphabet", got.UserCode)
	}
	if len(got.DeviceCode) < 43 {
		t.Errorf("device_code %q: want 32 random bytes, base64url", got.DeviceCode)
	}
	if want := tw.URL + "/enroll"; got.VerificationURI != want {
		t.Errorf("verification_uri %q, want %q", got.VerificationURI, want)
	}
	if want := tw.URL + "/enroll?code=" + got.UserCode; got.VerificationURIComplete != want {
		t.Errorf("verification_uri_complete %q, want %q", got.VerificationURIComplete, want)
	}
	if got.ExpiresIn < 590 || got.ExpiresIn > 600 {
		t.Errorf("expires_in %d, want about 600", got.ExpiresIn)
	}
	if got.Interval != 5 {
		t.Errorf("interval %d, want 5", got.Interval)
	}
	e, err := tw.Service.PendingEnrollment(context.Background(), got.UserCode)
	if err != nil {
		t.Fatal(err)
	}
	if e.PublicKey != d.pub || e.Name != "laptop" || e.Platform != "linux/amd64" || e.Address != "127.0.0.1" {
		t.Errorf("pending enrollment %+v: want the device's key, name, platform and address", e)
	}

	// A padded signature is read as well.
	d2 := newTestDevice(t)
	body := d2.startBody(t, "desktop")
	body["signature"] = base64.URLEncoding.EncodeToString(mustDecodeSig(t, body["signature"]))
	if resp := tw.client(t).do("POST", "/api/enroll/start", body); resp.StatusCode != http.StatusOK {
		t.Errorf("padded signature: got %d, want 200: %s", resp.StatusCode, text(t, resp))
	}
}

func mustDecodeSig(tb testing.TB, s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestEnrollStartRefusesBadInput(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	d := newTestDevice(t)
	good := func() map[string]string { return d.startBody(t, "laptop") }
	with := func(k, v string) string {
		b := good()
		b[k] = v
		return mustJSON(t, b)
	}
	acct, _ := nkeys.CreateAccount()
	acctPub, _ := acct.PublicKey()
	other := newTestDevice(t)
	otherBody := other.startBody(t, "laptop")
	seed := d.seed(t)
	tests := []struct {
		name   string
		body   string
		status int
		want   string // in error_description
	}{
		{name: "malformed JSON", body: `{"public_key":`, status: 400, want: "JSON"},
		{name: "empty body", body: ``, status: 400, want: "empty"},
		{name: "not an object", body: `["U"]`, status: 400, want: "JSON"},
		{name: "wrong type", body: `{"public_key":5}`, status: 400, want: `"public_key" must be a JSON string`},
		{name: "two objects", body: with("name", "laptop") + `{}`, status: 400, want: "JSON"},
		{name: "account key", body: with("public_key", acctPub), status: 400, want: "not a user public key"},
		{name: "seed sent", body: with("public_key", seed), status: 400, want: "never send the seed"},
		{name: "no key", body: with("public_key", ""), status: 400, want: "not a user public key"},
		{name: "signature by another key", body: with("signature", otherBody["signature"]), status: 400, want: "does not verify"},
		{name: "signature over another nonce", body: with("nonce", "another-nonce-0123456789"), status: 400, want: "does not verify"},
		{name: "signature not base64url", body: with("signature", "not base64!"), status: 400, want: "base64url"},
		{name: "no signature", body: with("signature", ""), status: 400, want: "signature is missing"},
		{name: "short nonce", body: with("nonce", "0123456789abcde"), status: 400, want: "nonce must be 16"},
		{name: "long nonce", body: with("nonce", strings.Repeat("n", 257)), status: 400, want: "nonce must be"},
		{name: "oversized body", body: with("platform", strings.Repeat("x", 5000)), status: 413, want: "larger than 4096 bytes"},
		{name: "no name", body: with("name", ""), status: 400, want: "name"},
		{name: "control character in name", body: with("name", "lap\x07top"), status: 400, want: "name"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A fresh address for each case, so the start limit stays out of it.
			rec := tw.startFrom(t, "10.0.0."+strconv.Itoa(i+1), tt.body)
			if rec.Code != tt.status {
				t.Fatalf("got %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			var e apiError
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if e.Error != "invalid_request" {
				t.Errorf("error %q, want invalid_request", e.Error)
			}
			if !strings.Contains(e.Description, tt.want) {
				t.Errorf("error_description %q, want it to say %q", e.Description, tt.want)
			}
			if strings.Contains(rec.Body.String(), seed) {
				t.Errorf("the answer repeats the seed: %s", rec.Body)
			}
		})
	}

	// Unknown fields are ignored, as OAuth servers ignore unknown parameters.
	b := good()
	b["comment"] = "from a newer client"
	if rec := tw.startFrom(t, "10.0.1.1", mustJSON(t, b)); rec.Code != 200 {
		t.Errorf("unknown field: got %d, want 200: %s", rec.Code, rec.Body)
	}
	// A key that is a device already is not enrolled twice.
	if rec := tw.startFrom(t, "10.0.1.2", mustJSON(t, good())); rec.Code != 200 {
		t.Fatalf("second start with a pending key: got %d: %s", rec.Code, rec.Body)
	}
}

func TestEnrollStartRateLimit(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	c := tw.client(t)
	var last *http.Response
	for i := 0; i < 20; i++ {
		last = c.do("POST", "/api/enroll/start", `{`)
		if last.StatusCode == http.StatusTooManyRequests {
			break
		}
		if last.StatusCode != http.StatusBadRequest {
			t.Fatalf("attempt %d: got %d, want 400", i, last.StatusCode)
		}
	}
	if last.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("20 starts from one address: got %d, want 429 at last", last.StatusCode)
	}
	if ra, err := strconv.Atoi(last.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After %q, want a number of seconds", last.Header.Get("Retry-After"))
	}
	var e apiError
	decode(t, last, &e)
	if e.Error != "slow_down" || e.Description == "" {
		t.Errorf("got %+v, want slow_down with a description", e)
	}
	// Another address is not held back.
	d := newTestDevice(t)
	if rec := tw.startFrom(t, "10.9.9.9", mustJSON(t, d.startBody(t, "laptop"))); rec.Code != 200 {
		t.Errorf("from another address: got %d, want 200: %s", rec.Code, rec.Body)
	}
}

func TestEnrollPoll(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	c := tw.client(t)
	st := tw.mustStartEnroll(t, newTestDevice(t), "laptop")

	status, body := poll(t, c, st.DeviceCode)
	if status != 400 || body["error"] != "authorization_pending" {
		t.Errorf("first poll: got %d %v, want 400 authorization_pending", status, body)
	}
	status, body = poll(t, c, st.DeviceCode)
	if status != 400 || body["error"] != "slow_down" {
		t.Errorf("poll at once again: got %d %v, want 400 slow_down", status, body)
	}
	status, body = poll(t, c, "no-such-device-code")
	if status != 400 || body["error"] != "expired_token" {
		t.Errorf("unknown device code: got %d %v, want 400 expired_token", status, body)
	}
	for _, bad := range []struct{ name, body string }{
		{"missing device_code", `{}`},
		{"malformed JSON", `{"device_code"`},
		{"wrong type", `{"device_code":1}`},
		{"oversized", `{"device_code":"` + strings.Repeat("d", 5000) + `"}`},
	} {
		resp := c.do("POST", "/api/enroll/poll", bad.body)
		var e apiError
		decode(t, resp, &e)
		if resp.StatusCode/100 != 4 || e.Error != "invalid_request" || e.Description == "" {
			t.Errorf("%s: got %d %+v, want 4xx invalid_request with a description", bad.name, resp.StatusCode, e)
		}
	}
}

func TestEnrollPages(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Members: []string{"alice"}})
	alice := tw.loginAs(t, "alice")

	resp := alice.do("GET", "/enroll", nil)
	page := text(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(page, `name="code"`) || !strings.Contains(page, "Enroll a device") {
		t.Fatalf("GET /enroll: got %d, want the code form:\n%s", resp.StatusCode, page)
	}
	if resp := tw.client(t).do("GET", "/enroll", nil); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("GET /enroll logged out: got %d to %q, want 303 to /login", resp.StatusCode, resp.Header.Get("Location"))
	}
	// Following a device's link logged out: the login page says what for.
	resp = tw.client(t).do("GET", "/enroll?code=BCDF-GHJK", nil)
	if page := text(t, resp); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(page, "Log in with a passkey") ||
		!strings.Contains(page, "enrolled with code BCDF-GHJK") {
		t.Errorf("GET /enroll?code= logged out: got %d, want the login page naming the code:\n%s", resp.StatusCode, page)
	}

	d := newTestDevice(t)
	name := `<img src=x onerror=alert(1)>`
	st := tw.mustStartEnroll(t, d, name)

	// Typed in lower case without the dash; followed as a link; by path.
	typed := strings.ToLower(strings.ReplaceAll(st.UserCode, "-", ""))
	for _, r := range []*http.Response{
		alice.do("POST", "/enroll", url.Values{"code": {typed}}),
		alice.do("GET", "/enroll?code="+url.QueryEscape(st.UserCode), nil),
		alice.do("GET", "/enroll/"+st.UserCode, nil),
	} {
		page := text(t, r)
		if r.StatusCode != 200 {
			t.Fatalf("%s %s: got %d, want the review page:\n%s", r.Request.Method, r.Request.URL, r.StatusCode, page)
		}
		for _, want := range []string{
			"&lt;img src=x onerror=alert(1)&gt;", "linux/amd64", "127.0.0.1", st.UserCode,
			views.Fingerprint(d.pub), d.pub, "Compare the code and the key fingerprint",
			`<form method="post" action="/enroll/` + st.UserCode + `/approve" data-passkey="confirm"`,
			`<button type="submit" class="primary">Approve</button>`,
			`<form method="post" action="/enroll/` + st.UserCode + `/deny"`,
			`<button type="submit" class="danger">Deny</button>`,
			"expires in 10 min",
		} {
			if !strings.Contains(page, want) {
				t.Errorf("%s %s: the review page lacks %q", r.Request.Method, r.Request.URL, want)
			}
		}
		if strings.Contains(page, name) {
			t.Errorf("the device name is in the page unescaped")
		}
	}

	// A wrong code says so, and keeps what was typed.
	resp = alice.do("POST", "/enroll", url.Values{"code": {"BCDF-GHJK"}})
	page = text(t, resp)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(page, "wrong code: no device is waiting with code BCDF-GHJK") ||
		!strings.Contains(page, `value="BCDF-GHJK"`) {
		t.Errorf("wrong code: got %d, want 404 saying so:\n%s", resp.StatusCode, page)
	}
	resp = alice.do("POST", "/enroll", url.Values{"code": {"AEIOU"}})
	if page := text(t, resp); resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "is not a device code") {
		t.Errorf("malformed code: got %d, want 400 saying it is not a code:\n%s", resp.StatusCode, page)
	}
}

func TestEnrollCodeRateLimit(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Members: []string{"alice", "bob", "carol"}})
	form := "application/x-www-form-urlencoded"
	guess := func(addr, person string) *httptest.ResponseRecorder {
		return tw.serveFrom(t, addr, "POST", "/enroll", form, "code=BCDF-GHJK", tw.sessionCookies(t, person, time.Now()))
	}
	// One person, from a new address each time: the person's limit.
	var rec *httptest.ResponseRecorder
	n := 0
	for ; n < 20; n++ {
		if rec = guess("10.1.0."+strconv.Itoa(n+1), "alice"); rec.Code != http.StatusNotFound {
			break
		}
	}
	if rec.Code != http.StatusTooManyRequests || n < 3 {
		t.Fatalf("alice's guess %d: got %d, want 429 after a few 404s: %s", n+1, rec.Code, rec.Body)
	}
	if rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "too many attempts") {
		t.Errorf("429 without Retry-After or a message: %v %s", rec.Header(), rec.Body)
	}
	// Even the right code is not looked up while the limit holds.
	st := tw.mustStartEnroll(t, newTestDevice(t), "laptop")
	rec = tw.serveFrom(t, "10.1.1.1", "GET", "/enroll/"+st.UserCode, "", "", tw.sessionCookies(t, "alice", time.Now()))
	if rec.Code != http.StatusTooManyRequests {
		t.Errorf("right code over the limit: got %d, want 429", rec.Code)
	}
	// Someone else is not held back by alice's guesses.
	if rec := guess("10.1.2.1", "bob"); rec.Code != http.StatusNotFound {
		t.Errorf("bob: got %d, want 404", rec.Code)
	}
	// One address, another person each time: the address's limit.
	for n = 0; n < 20; n++ {
		person := []string{"bob", "carol"}[n%2]
		if rec = guess("10.2.0.1", person); rec.Code != http.StatusNotFound {
			break
		}
	}
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("one address: got %d, want 429", rec.Code)
	}
}

func TestEnrollApprove(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	ctx := context.Background()
	alice := tw.mustPerson(t, "alice", false)
	d := newTestDevice(t)
	st := tw.mustStartEnroll(t, d, "laptop")
	api := tw.client(t)
	if status, body := poll(t, api, st.DeviceCode); body["error"] != "authorization_pending" {
		t.Fatalf("poll before approval: got %d %v, want authorization_pending", status, body)
	}

	// Without a recent passkey check: refused, and still pending.
	resp := tw.loginStale(t, "alice").do("POST", "/enroll/"+st.UserCode+"/approve", url.Values{})
	if page := text(t, resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "confirm with your passkey again") {
		t.Fatalf("approve with a stale passkey check: got %d, want 403 asking for the passkey:\n%s", resp.StatusCode, page)
	}
	if _, err := tw.Service.PendingEnrollment(ctx, st.UserCode); err != nil {
		t.Fatalf("after a refused approval the enrollment should still wait: %v", err)
	}
	if resp := tw.client(t).do("POST", "/enroll/"+st.UserCode+"/approve", url.Values{}); resp.StatusCode == http.StatusOK {
		t.Fatalf("approve logged out: got 200")
	}

	// With one: approved.
	c := tw.loginAs(t, "alice")
	resp = c.do("POST", "/enroll/"+st.UserCode+"/approve", url.Values{})
	page := text(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(page, "is enrolled; it will connect in a few seconds") || !strings.Contains(page, "laptop") {
		t.Fatalf("approve: got %d, want the enrolled page:\n%s", resp.StatusCode, page)
	}

	// The waiting device gets its JWT, once.
	status, body := poll(t, api, st.DeviceCode)
	if status != 200 {
		t.Fatalf("poll after approval: got %d %v, want 200", status, body)
	}
	var got enrollPollResponse
	raw, _ := json.Marshal(body)
	json.Unmarshal(raw, &got)
	if got.Account != alice.Account {
		t.Errorf("account %q, want alice's %q", got.Account, alice.Account)
	}
	if len(got.Servers) != 1 || got.Servers[0] != tw.Server.ClientURL() {
		t.Errorf("servers %v, want [%s]", got.Servers, tw.Server.ClientURL())
	}
	if got.ExpiresAt == nil {
		t.Errorf("expires_at is null; the stack issues devices for an hour")
	} else if at, err := time.Parse(time.RFC3339, *got.ExpiresAt); err != nil || time.Until(at) < 50*time.Minute {
		t.Errorf("expires_at %q: want RFC 3339, about an hour from now (%v)", *got.ExpiresAt, err)
	}
	uc, err := jwt.DecodeUserClaims(got.JWT)
	if err != nil || uc.Subject != d.pub || uc.IssuerAccount != alice.Account {
		t.Fatalf("jwt: %v, subject %s, issuer account %s; want the device's key in alice's account", err, uc.Subject, uc.IssuerAccount)
	}
	if status, body := poll(t, api, st.DeviceCode); status != 400 || body["error"] != "expired_token" {
		t.Errorf("second poll after approval: got %d %v, want expired_token (the JWT is handed out once)", status, body)
	}
	devs, err := tw.Service.Devices(ctx, "alice")
	if err != nil || len(devs) != 1 || devs[0].PublicKey != d.pub || devs[0].Enrolled != accounts.EnrolledEnrolled {
		t.Errorf("alice's devices %+v (%v): want the enrolled laptop", devs, err)
	}

	// The device connects with its JWT and its own seed, and syncs records.
	nc, err := nats.Connect(tw.Server.ClientURL(), nats.UserJWTAndSeed(got.JWT, d.seed(t)), nats.NoReconnect())
	if err != nil {
		t.Fatalf("connect as the enrolled device: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, "records")
	if err != nil {
		t.Fatalf("records bucket: %v", err)
	}
	if _, err := kv.Put(ctx, "hello", []byte("world")); err != nil {
		t.Fatalf("put a record: %v", err)
	}

	// The code is used up.
	resp = c.do("POST", "/enroll/"+st.UserCode+"/approve", url.Values{})
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("approve again: got %d, want 404", resp.StatusCode)
	}
	// The same key never starts again.
	if resp := tw.client(t).do("POST", "/api/enroll/start", d.startBody(t, "laptop2")); resp.StatusCode != http.StatusConflict {
		t.Errorf("start with an enrolled key: got %d, want 409: %s", resp.StatusCode, text(t, resp))
	}
}

func TestEnrollDeny(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Members: []string{"alice"}})
	st := tw.mustStartEnroll(t, newTestDevice(t), "laptop")
	c := tw.loginStale(t, "alice") // denying needs no passkey check
	resp := c.do("POST", "/enroll/"+st.UserCode+"/deny", url.Values{})
	if page := text(t, resp); resp.StatusCode != 200 || !strings.Contains(page, "was denied") {
		t.Fatalf("deny: got %d, want the denied page:\n%s", resp.StatusCode, page)
	}
	api := tw.client(t)
	if status, body := poll(t, api, st.DeviceCode); status != 400 || body["error"] != "access_denied" {
		t.Errorf("poll after deny: got %d %v, want 400 access_denied", status, body)
	}
	if resp := c.do("POST", "/enroll/"+st.UserCode+"/deny", url.Values{}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("deny again: got %d, want 404", resp.StatusCode)
	}
	if resp := c.do("GET", "/enroll/"+st.UserCode, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("review a denied code: got %d, want 404", resp.StatusCode)
	}
}

// A device's link opened while logged out asks for a login and comes back
// to the same enrollment afterwards.
func TestEnrollLinkLoggedOutComesBack(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	resp := tw.client(t).do("GET", "/enroll?code=wdjb-mjht", nil)
	body := text(t, resp)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Log in with a passkey") {
		t.Fatalf("GET /enroll?code= logged out: got %d, want 401 and the login page", resp.StatusCode)
	}
	if want := `data-next="/enroll?code=WDJB-MJHT"`; !strings.Contains(body, want) {
		t.Errorf("login page: want %s in\n%s", want, body)
	}
}

// Malformed input gets a 4xx that says what is wrong in the API's words:
// never a 500, never a Go type.
func TestEnrollStartMalformed(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	d := newTestDevice(t)
	withNewline := d.startBody(t, "laptop")
	withNewline["public_key"] += "\n" // base32 decoding ignores it
	for i, body := range []string{
		mustJSON(t, withNewline),
		`[]`,
		`"a string"`,
		`{"public_key": 5}`,
		`{"public_key":`,
		`{} {}`,
	} {
		rec := tw.startFrom(t, fmt.Sprintf("192.0.2.%d", 100+i), body)
		var e apiError
		json.Unmarshal(rec.Body.Bytes(), &e)
		if rec.Code != http.StatusBadRequest || e.Error != "invalid_request" || e.Description == "" {
			t.Errorf("%.40q: got %d %+v, want 400 invalid_request with a description", body, rec.Code, e)
		}
		for _, internal := range []string{"Go ", "web.", "struct", "unmarshal"} {
			if strings.Contains(e.Description, internal) {
				t.Errorf("%.40q: the description speaks Go: %q", body, e.Description)
			}
		}
	}
}
