package web

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// Every public endpoint, and every endpoint of a logged-in person, answers
// whatever a client sends with a 4xx and a message: never a 500.
func TestMalformedInputTable(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Signup: SignupOpen, Members: []string{"alice"}})
	long := strings.Repeat("x", 5000)
	bodies := []string{
		``, `{`, `[]`, `"s"`, `null`, `{"a":1}`, `{"name":` + `"` + long + `"}`,
		`{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{"clientDataJSON":"bm90IGpzb24"}}`,
		`{"display_name":"` + long + `","token":"` + long + `"}`,
		`{"device_code":"` + long + `"}`, `{"jwt":"a.b.c","nonce":"` + long + `","signature":"!!"}`,
	}
	public := []string{"/register/begin", "/register/finish", "/login/begin", "/login/finish",
		"/api/enroll/start", "/api/enroll/poll", "/api/devices/renew", "/logout"}
	person := []string{"/reauth/begin", "/reauth/finish", "/passkeys/begin", "/passkeys/finish",
		"/enroll", "/enroll/" + long + "/approve", "/enroll/BCDF-GHJK/deny", "/sessions/" + long + "/end",
		"/passkeys/" + long + "/rename", "/passkeys/" + long + "/remove", "/devices/" + long + "/revoke",
		"/devices/" + long + "/disconnect", "/devices/download", "/records/restore", "/records/" + long + "/delete"}
	n := 0
	try := func(c *client, path, body string) {
		t.Helper()
		n++
		for _, ct := range []string{"application/json", "application/x-www-form-urlencoded"} {
			var b any = body
			if ct != "application/json" {
				b = url.Values{"at": {body}, "name": {body}, "code": {body}}
			}
			resp := c.do("POST", path, b, "X-Forwarded-For", fmt.Sprintf("192.0.2.%d", n%250))
			if resp.StatusCode >= 500 {
				t.Errorf("POST %.60s with %.40q (%s): got %d\n%.300s", path, body, ct, resp.StatusCode, text(t, resp))
			}
		}
	}
	anon := tw.client(t)
	for _, path := range public {
		for _, body := range bodies {
			try(anon, path, body)
		}
	}
	alice := tw.loginAs(t, "alice")
	for _, path := range person {
		for _, body := range bodies {
			try(alice, path, body)
		}
	}
	for _, path := range []string{"/records/" + long, "/enroll/" + long, "/invite/" + long, "/setup/" + long, "/records?prefix=" + long} {
		if resp := alice.do("GET", path, nil); resp.StatusCode >= 500 {
			t.Errorf("GET %.60s: got %d", path, resp.StatusCode)
		}
	}
}
