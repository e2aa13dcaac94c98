package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// renewDevice is a device key the test made, as a device would, and the
// JWT the service gave it.
type renewDevice struct {
	kp  nkeys.KeyPair
	pub string
	jwt string
}

// mustAuthorize enrolls a new device key of person with a JWT lifetime.
func (tw *testWeb) mustAuthorize(tb testing.TB, person, name string, ttl time.Duration) renewDevice {
	tb.Helper()
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	_, tok, err := tw.Service.AuthorizeDevice(context.Background(), accounts.NewDevice{Person: person, Name: name, PublicKey: pub, TTL: ttl})
	if err != nil {
		tb.Fatalf("authorize %s: %v", name, err)
	}
	return renewDevice{kp: kp, pub: pub, jwt: tok}
}

// request is a renewal request as the device API wants it: its JWT, a
// nonce, and its key's signature over "latch-renew:"+nonce.
func (d renewDevice) request(tb testing.TB) renewRequest {
	tb.Helper()
	nonce := "nonce-" + strings.TrimPrefix(nats.NewInbox(), nats.InboxPrefix)
	sig, err := d.kp.Sign([]byte("latch-renew:" + nonce))
	if err != nil {
		tb.Fatal(err)
	}
	return renewRequest{JWT: d.jwt, Nonce: nonce, Signature: b64.EncodeToString(sig)}
}

// renewFrom sends a renewal straight to the handler from an address of
// its own, so that cases do not share a rate limit.
func (tw *testWeb) renewFrom(addr string, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", "/api/devices/renew", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.RemoteAddr = addr + ":40000"
	rec := httptest.NewRecorder()
	tw.Web.ServeHTTP(rec, req)
	return rec
}

func mustJSON(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func TestRenew(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	alice := tw.mustPerson(t, "alice", false)
	dev := tw.mustAuthorize(t, "alice", "laptop", 2*time.Hour)
	old, _ := jwt.DecodeUserClaims(dev.jwt)
	conn, err := nats.Connect(tw.Server.ClientURL(), nats.UserJWTAndSeed(dev.jwt, seedOf(t, dev.kp)), nats.NoReconnect())
	if err != nil {
		t.Fatalf("connect with the first JWT: %v", err)
	}
	defer conn.Close()

	// A JWT's times are whole seconds: once the clock is past the first
	// JWT's second, the new one is visibly later.
	for time.Now().Unix() <= old.IssuedAt {
		time.Sleep(10 * time.Millisecond)
	}
	resp := tw.client(t).do("POST", "/api/devices/renew", dev.request(t))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("renew: got %d %s, want 200", resp.StatusCode, text(t, resp))
	}
	var got struct {
		JWT       string   `json:"jwt"`
		Account   string   `json:"account"`
		Servers   []string `json:"servers"`
		ExpiresAt *string  `json:"expires_at"`
	}
	decode(t, resp, &got)
	uc, err := jwt.DecodeUserClaims(got.JWT)
	if err != nil {
		t.Fatalf("renewed JWT: %v", err)
	}
	if uc.Subject != dev.pub || uc.IssuerAccount != alice.Account || got.Account != alice.Account {
		t.Errorf("renewed JWT: user %s of %s (answer says %s), want %s of %s", uc.Subject, uc.IssuerAccount, got.Account, dev.pub, alice.Account)
	}
	if uc.Expires <= old.Expires || uc.Expires-uc.IssuedAt != old.Expires-old.IssuedAt {
		t.Errorf("renewed JWT: exp %d, lifetime %ds; want later than %d and the same lifetime, %ds",
			uc.Expires, uc.Expires-uc.IssuedAt, old.Expires, old.Expires-old.IssuedAt)
	}
	if want := time.Unix(uc.Expires, 0).UTC().Format(time.RFC3339); got.ExpiresAt == nil || *got.ExpiresAt != want {
		t.Errorf("expires_at: got %v, want %q", got.ExpiresAt, want)
	}
	if len(got.Servers) != 1 || got.Servers[0] != tw.Server.ClientURL() {
		t.Errorf("servers: got %q, want [%q]", got.Servers, tw.Server.ClientURL())
	}
	d, err := tw.Service.Device(context.Background(), "alice", dev.pub)
	if err != nil || d.Expires == nil || d.Expires.Unix() != uc.Expires {
		t.Errorf("device record: expires %v, %v; want %v", d.Expires, err, time.Unix(uc.Expires, 0))
	}

	// The new JWT connects, and the connection made with the old one
	// goes on.
	nc, err := nats.Connect(tw.Server.ClientURL(), nats.UserJWTAndSeed(got.JWT, seedOf(t, dev.kp)), nats.NoReconnect())
	if err != nil {
		t.Fatalf("connect with the renewed JWT: %v", err)
	}
	nc.Close()
	if err := conn.FlushTimeout(5 * time.Second); err != nil {
		t.Errorf("the connection made with the old JWT: %v; want it working", err)
	}

	// Within a day of its expiry, an expired JWT still renews.
	short := tw.mustAuthorize(t, "alice", "sleeper", time.Second)
	if sc, err := jwt.DecodeUserClaims(short.jwt); err != nil {
		t.Fatal(err)
	} else {
		for time.Now().Unix() <= sc.Expires { // until it has expired
			time.Sleep(10 * time.Millisecond)
		}
	}
	if resp := tw.client(t).do("POST", "/api/devices/renew", short.request(t)); resp.StatusCode != http.StatusOK {
		t.Errorf("renew a JWT expired a second ago: got %d %s, want 200", resp.StatusCode, text(t, resp))
	}

	// Revoked, unknown: 403, and the device hears it should enroll again.
	lost := tw.mustAuthorize(t, "alice", "lost", time.Hour)
	if _, err := tw.Service.RevokeDevice(context.Background(), "alice", "lost"); err != nil {
		t.Fatal(err)
	}
	strangerKP, _ := nkeys.CreateUser()
	stranger := renewDevice{kp: strangerKP, jwt: forgedJWT(t, strangerKP, alice.Account, time.Hour)}
	bob := tw.mustPerson(t, "bob", false)
	bobDev := tw.mustAuthorize(t, "bob", "phone", time.Hour)
	if _, err := tw.Service.DeletePerson(context.Background(), bob.Name); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		dev  renewDevice
		code string
	}{
		{"revoked device", lost, "revoked"},
		{"key never enrolled", stranger, "unknown_device"},
		{"device of a deleted person", bobDev, "unknown_device"},
	} {
		resp := tw.client(t).do("POST", "/api/devices/renew", c.dev.request(t))
		var e apiError
		decode(t, resp, &e)
		if resp.StatusCode != http.StatusForbidden || e.Error != c.code || !strings.Contains(e.Description, "enroll it again") {
			t.Errorf("%s: got %d %+v, want 403 %q saying to enroll it again", c.name, resp.StatusCode, e, c.code)
		}
	}
	if es, _ := tw.Service.Audit(context.Background(), 50); !hasAction(es, accounts.ActionDeviceRenew, "laptop") {
		t.Errorf("audit: no %s of laptop", accounts.ActionDeviceRenew)
	}
}

func seedOf(tb testing.TB, kp nkeys.KeyPair) string {
	tb.Helper()
	seed, err := kp.Seed()
	if err != nil {
		tb.Fatal(err)
	}
	return string(seed)
}

func hasAction(es []accounts.AuditEvent, action accounts.Action, device string) bool {
	for _, e := range es {
		if e.Action == action && e.DeviceName == device {
			return true
		}
	}
	return false
}

// forgedJWT is a user JWT for kp's key that names account as its account
// but is signed by a key of nobody's: the shape of a device's JWT, from
// no latch.
func forgedJWT(tb testing.TB, kp nkeys.KeyPair, account string, expiresIn time.Duration) string {
	tb.Helper()
	pub, _ := kp.PublicKey()
	signer, _ := nkeys.CreateAccount()
	uc := jwt.NewUserClaims(pub)
	uc.IssuerAccount = account
	uc.Expires = time.Now().Add(expiresIn).Unix()
	tok, err := uc.Encode(signer)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

func TestRenewBadInput(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	alice := tw.mustPerson(t, "alice", false)
	dev := tw.mustAuthorize(t, "alice", "laptop", time.Hour)
	good := dev.request(t)
	with := func(f func(r *renewRequest)) string {
		r := good
		f(&r)
		return mustJSON(t, r)
	}
	other, _ := nkeys.CreateUser()
	acctKP, _ := nkeys.CreateAccount()
	acctPub, _ := acctKP.PublicKey()
	accountJWT, _ := jwt.NewAccountClaims(acctPub).Encode(acctKP)
	// A user JWT signed by the account's own key, naming no account.
	plainUser := func() string {
		uc := jwt.NewUserClaims(dev.pub)
		tok, _ := uc.Encode(acctKP)
		return tok
	}()
	// Signed by the device's key over the right bytes, for a JWT that
	// expired two days ago.
	stale := renewDevice{kp: dev.kp, pub: dev.pub, jwt: forgedJWT(t, dev.kp, alice.Account, -48*time.Hour)}

	for i, c := range []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{"malformed JSON", `{"jwt":`, 400, "invalid_request"},
		{"empty body", ``, 400, "invalid_request"},
		{"no JWT", with(func(r *renewRequest) { r.JWT = "" }), 400, "invalid_request"},
		{"not a JWT", with(func(r *renewRequest) { r.JWT = "not.a.jwt" }), 400, "invalid_request"},
		{"an account JWT", with(func(r *renewRequest) { r.JWT = accountJWT }), 400, "invalid_request"},
		{"a user JWT of no device key", with(func(r *renewRequest) { r.JWT = plainUser }), 400, "invalid_request"},
		{"short nonce", with(func(r *renewRequest) { r.Nonce = "short" }), 400, "invalid_request"},
		{"signature by another key", with(func(r *renewRequest) {
			sig, _ := other.Sign([]byte("latch-renew:" + r.Nonce))
			r.Signature = b64.EncodeToString(sig)
		}), 400, "invalid_request"},
		{"enrollment prefix", with(func(r *renewRequest) {
			sig, _ := dev.kp.Sign([]byte("latch-enroll:" + r.Nonce))
			r.Signature = b64.EncodeToString(sig)
		}), 400, "invalid_request"},
		{"signature not base64url", with(func(r *renewRequest) { r.Signature = "***" }), 400, "invalid_request"},
		{"JWT expired two days ago", mustJSON(t, stale.request(t)), 403, "expired_token"},
		{"oversized body", `{"jwt":"` + strings.Repeat("a", 9<<10) + `"}`, 413, "invalid_request"},
	} {
		rec := tw.renewFrom(fmt.Sprintf("192.0.2.%d", i+1), c.body)
		var e apiError
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
			t.Errorf("%s: body %q is not a JSON error", c.name, rec.Body)
			continue
		}
		if rec.Code != c.status || e.Error != c.code || e.Description == "" {
			t.Errorf("%s: got %d %+v, want %d %q with a description", c.name, rec.Code, e, c.status, c.code)
		}
	}
	// None of it renewed anything.
	if d, _ := tw.Service.Device(context.Background(), "alice", dev.pub); d.Renewed != nil {
		t.Errorf("device renewed at %v by bad requests; want never", d.Renewed)
	}
	// The good one still works.
	if rec := tw.renewFrom("192.0.2.100", mustJSON(t, good)); rec.Code != http.StatusOK {
		t.Errorf("good request: got %d %s, want 200", rec.Code, rec.Body)
	}
}

func TestRenewRateLimit(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	n := limits["renew"].burst
	for i := range n {
		if rec := tw.renewFrom("192.0.2.9", `{}`); rec.Code != http.StatusBadRequest {
			t.Fatalf("request %d: got %d, want 400 (within the limit)", i+1, rec.Code)
		}
	}
	rec := tw.renewFrom("192.0.2.9", `{}`)
	var e apiError
	json.Unmarshal(rec.Body.Bytes(), &e)
	if rec.Code != http.StatusTooManyRequests || e.Error != "slow_down" || rec.Header().Get("Retry-After") == "" {
		t.Errorf("request %d: got %d %+v, Retry-After %q; want 429 slow_down with Retry-After", n+1, rec.Code, e, rec.Header().Get("Retry-After"))
	}
	if rec := tw.renewFrom("192.0.2.10", `{}`); rec.Code != http.StatusBadRequest {
		t.Errorf("another address: got %d, want 400 (its own limit)", rec.Code)
	}
}

// Downloaded creds last as long as the page said: their key cannot renew.
func TestDownloadedCredsAreNotRenewed(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Members: []string{"fay"}})
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	_, tok, err := tw.Service.AuthorizeDevice(context.Background(), accounts.NewDevice{
		Person: "fay", Name: "kiosk", PublicKey: pub, TTL: 7 * 24 * time.Hour, Enrolled: accounts.EnrolledDownload,
	})
	if err != nil {
		t.Fatal(err)
	}
	d := renewDevice{kp: kp, pub: pub, jwt: tok}
	rec := tw.renewFrom("192.0.2.60", mustJSON(t, d.request(t)))
	var e apiError
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusForbidden || e.Error != "not_renewable" || !strings.Contains(e.Description, "download new ones") {
		t.Errorf("renewing downloaded creds: got %d %+v, want 403 not_renewable", rec.Code, e)
	}
	// A device enrolled with its own key still renews.
	ok := tw.mustAuthorize(t, "fay", "laptop", time.Hour)
	if rec := tw.renewFrom("192.0.2.61", mustJSON(t, ok.request(t))); rec.Code != http.StatusOK {
		t.Errorf("renewing an enrolled device: got %d %s", rec.Code, rec.Body)
	}
}
