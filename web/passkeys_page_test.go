package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/latch-dev/latch/accounts"
)

// addTestPasskey gives a person a passkey as a registration would store
// it, without an authenticator: the credential's keys are random bytes,
// which is enough for a page that lists and renames it.
func addTestPasskey(t *testing.T, tw *testWeb, person, name string, synced bool) accounts.Passkey {
	t.Helper()
	cred := webauthn.Credential{
		ID: randomBytes(16), PublicKey: randomBytes(65), AttestationType: "none",
		Flags: webauthn.CredentialFlags{UserPresent: true, UserVerified: true, BackupEligible: synced, BackupState: synced},
	}
	raw, err := json.Marshal(cred)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := tw.Service.AddPasskey(context.Background(), accounts.Passkey{
		ID: b64.EncodeToString(cred.ID), Person: person, Name: name, Credential: raw,
		BackupEligible: synced, BackupState: synced,
	})
	if err != nil {
		t.Fatalf("add passkey %q of %s: %v", name, person, err)
	}
	return pk
}

// TestPasskeysPage lists the passkeys with name, dates and kind, warns
// while there is only one and offers no Remove for it, and has the button
// the passkey script drives to add another.
func TestPasskeysPage(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Members: []string{"alice"}})
	first := addTestPasskey(t, tw, "alice", "Laptop <b>key</b>", false)
	c := tw.loginAs(t, "alice")

	resp := c.do("GET", "/passkeys", nil)
	body := text(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /passkeys: got %d, want 200: %s", resp.StatusCode, body)
	}
	for _, want := range []string{
		`id="passkeys"`,
		`value="Laptop &lt;b&gt;key&lt;/b&gt;"`,
		"On one device",
		first.Created.UTC().Format("2006-01-02 15:04 UTC"),
		"never", // not used yet
		`<button data-passkey="add" type="button" class="primary">Add a passkey</button>`,
		`name="name"`,
		"only one passkey",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("passkeys page lacks %q", want)
		}
	}
	if strings.Contains(body, "<b>key") {
		t.Error("the passkey's name is not escaped")
	}
	if strings.Contains(body, "/remove") {
		t.Error("the only passkey has a Remove button")
	}

	second := addTestPasskey(t, tw, "alice", "Phone", true)
	if _, err := tw.Service.UsePasskey(context.Background(), second.ID, second.Credential, 1, true, true); err != nil {
		t.Fatal(err)
	}
	body = text(t, c.do("GET", "/passkeys", nil))
	for _, want := range []string{"Synced", "On one device", "possibly cloned",
		`hx-post="/passkeys/` + first.ID + `/remove"`, `hx-post="/passkeys/` + second.ID + `/remove"`,
		`hx-confirm="Remove the passkey Phone? You can no longer log in with it."`} {
		if !strings.Contains(body, want) {
			t.Errorf("passkeys page with two passkeys lacks %q", want)
		}
	}
	if strings.Contains(body, "only one passkey") {
		t.Error("the warning about a single passkey stays with two")
	}
}

// TestPasskeyRenameRemove: rename and remove answer htmx with the table
// and a form post with a redirect; the last passkey is never removed;
// another person's passkey is not found.
func TestPasskeyRenameRemove(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Members: []string{"alice", "bob"}})
	one := addTestPasskey(t, tw, "alice", "One", false)
	two := addTestPasskey(t, tw, "alice", "Two", true)
	bobs := addTestPasskey(t, tw, "bob", "Bob's", false)
	c := tw.loginAs(t, "alice")
	ctx := context.Background()

	resp := c.do("POST", "/passkeys/"+one.ID+"/rename", url.Values{"name": {" YubiKey <5> "}}, hxRequest, "true")
	body := text(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(strings.TrimSpace(body), `<section id="passkeys">`) {
		t.Fatalf("rename with htmx: got %d, want 200 and the table: %s", resp.StatusCode, body)
	}
	if !strings.Contains(body, `value="YubiKey &lt;5&gt;"`) {
		t.Errorf("rename answer lacks the new name: %s", body)
	}
	if pk, err := tw.Service.Passkey(ctx, one.ID); err != nil || pk.Name != "YubiKey <5>" {
		t.Errorf("after rename: got %q, %v; want %q", pk.Name, err, "YubiKey <5>")
	}
	resp = c.do("POST", "/passkeys/"+one.ID+"/rename", url.Values{"name": {"Key A"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/passkeys" {
		t.Errorf("rename by form: got %d to %q, want 303 to /passkeys", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, tc := range []struct {
		what, id, name string
		want           int
	}{
		{"an empty name", one.ID, "  ", http.StatusBadRequest},
		{"a name of 65 characters", one.ID, strings.Repeat("x", 65), http.StatusBadRequest},
		{"bob's passkey", bobs.ID, "mine", http.StatusNotFound},
		{"an unknown passkey", "AAAA", "x", http.StatusNotFound},
	} {
		resp := c.do("POST", "/passkeys/"+tc.id+"/rename", url.Values{"name": {tc.name}}, hxRequest, "true")
		if resp.StatusCode != tc.want {
			t.Errorf("rename %s: got %d, want %d", tc.what, resp.StatusCode, tc.want)
		}
	}
	if pk, _ := tw.Service.Passkey(ctx, bobs.ID); pk.Name != "Bob's" {
		t.Errorf("bob's passkey: got name %q, want it unchanged", pk.Name)
	}

	// Remove: bob's is not alice's; then one of hers; the last stays.
	if resp := c.do("POST", "/passkeys/"+bobs.ID+"/remove", nil, hxRequest, "true"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("remove bob's passkey: got %d, want 404", resp.StatusCode)
	}
	resp = c.do("POST", "/passkeys/"+two.ID+"/remove", nil, hxRequest, "true")
	body = text(t, resp)
	if resp.StatusCode != http.StatusOK || strings.Contains(body, two.ID) || strings.Contains(body, "/remove") {
		t.Errorf("remove with htmx: got %d, want 200 and the table with one passkey, no Remove: %s", resp.StatusCode, body)
	}
	resp = c.do("POST", "/passkeys/"+one.ID+"/remove", url.Values{})
	body = text(t, resp)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "last passkey cannot be removed") {
		t.Errorf("remove the last passkey: got %d, want 400 saying why: %s", resp.StatusCode, body)
	}
	resp = c.do("POST", "/passkeys/"+one.ID+"/remove", nil, hxRequest, "true")
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("remove the last passkey with htmx: got %d, want 400", resp.StatusCode)
	}
	pks, err := tw.Service.Passkeys(ctx, "alice")
	if err != nil || len(pks) != 1 || pks[0].ID != one.ID {
		t.Errorf("alice's passkeys after all that: got %d, %v; want the one", len(pks), err)
	}
}

// Removing a passkey ends every other session of the person, and so does
// "Log out everywhere else"; the session that did it goes on.
func TestEndingOtherSessions(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	p := tw.mustPerson(t, "fay", false)
	addTestPasskey(t, tw, p.Name, "Laptop", false)
	lost := addTestPasskey(t, tw, p.Name, "Phone", true)
	here, there := tw.loginAs(t, p.Name), tw.loginAs(t, p.Name)
	loggedIn := func(c *client) bool { return c.do("GET", "/devices", nil).StatusCode == http.StatusOK }

	if resp := here.do("POST", "/passkeys/"+lost.ID+"/remove", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("remove a passkey: got %d, want 303", resp.StatusCode)
	}
	if !loggedIn(here) {
		t.Error("the session that removed the passkey was logged out")
	}
	if loggedIn(there) {
		t.Error("another session is still logged in after a passkey was removed")
	}

	elsewhere := tw.loginAs(t, p.Name)
	resp := here.do("POST", "/sessions/end", nil, "HX-Request", "true")
	if body := text(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(body, "1 session logged out") {
		t.Errorf("log out everywhere else: got %d %s", resp.StatusCode, body)
	}
	if !loggedIn(here) || loggedIn(elsewhere) {
		t.Errorf("after logging out everywhere else: here logged in %v (want true), elsewhere %v (want false)", loggedIn(here), loggedIn(elsewhere))
	}
	es, _ := tw.Service.Audit(context.Background(), 1)
	if len(es) != 1 || es[0].Action != accounts.ActionSessionsEnd || es[0].Actor != p.Name {
		t.Errorf("last audit entry: got %+v, want %s by %s", es, accounts.ActionSessionsEnd, p.Name)
	}
}
