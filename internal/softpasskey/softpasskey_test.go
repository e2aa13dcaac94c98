package softpasskey

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

type user struct {
	handle []byte
	creds  []webauthn.Credential
}

func (u *user) WebAuthnID() []byte                         { return u.handle }
func (u *user) WebAuthnName() string                       { return "alice" }
func (u *user) WebAuthnDisplayName() string                { return "Alice" }
func (u *user) WebAuthnCredentials() []webauthn.Credential { return u.creds }

// The passkey's answers pass go-webauthn's checks, as latch's server
// makes them: a registration, then discoverable logins whose count goes
// up; a changed answer is refused.
func TestAgainstWebAuthn(t *testing.T) {
	const origin = "http://localhost:8080"
	wa, err := webauthn.New(&webauthn.Config{RPID: "localhost", RPDisplayName: "latch", RPOrigins: []string{origin}})
	if err != nil {
		t.Fatal(err)
	}
	u := &user{handle: []byte("0123456789abcdef0123456789abcdef")}
	opts, session, err := wa.BeginRegistration(u, webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired),
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{UserVerification: protocol.VerificationRequired}))
	if err != nil {
		t.Fatal(err)
	}
	pk, answer, err := Create(origin, mustJSON(t, opts))
	if err != nil {
		t.Fatal(err)
	}
	cred, err := wa.FinishRegistration(u, *session, post(t, answer))
	if err != nil {
		t.Fatalf("the registration: %v", err)
	}
	if !cred.Flags.UserVerified || cred.Flags.BackupEligible {
		t.Errorf("flags %+v: want user verified, not backed up", cred.Flags)
	}
	u.creds = []webauthn.Credential{*cred}

	login := func(tamper bool) (*webauthn.Credential, error) {
		opts, session, err := wa.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
		if err != nil {
			t.Fatal(err)
		}
		answer, err := pk.Get(mustJSON(t, opts))
		if err != nil {
			t.Fatal(err)
		}
		if tamper {
			// The signature of another use (another count): it does not
			// sign this answer's authenticator data.
			other, _ := pk.Get(mustJSON(t, opts))
			var m, o map[string]any
			json.Unmarshal(answer, &m)
			json.Unmarshal(other, &o)
			m["response"].(map[string]any)["signature"] = o["response"].(map[string]any)["signature"]
			answer, _ = json.Marshal(m)
		}
		return wa.FinishDiscoverableLogin(func(rawID, handle []byte) (webauthn.User, error) {
			if !bytes.Equal(handle, u.handle) {
				return nil, protocol.ErrBadRequest.WithDetails("unknown user handle")
			}
			return u, nil
		}, *session, post(t, answer))
	}
	for want := uint32(1); want <= 2; want++ {
		got, err := login(false)
		if err != nil {
			t.Fatalf("login %d: %v", want, err)
		}
		if got.Authenticator.SignCount != want {
			t.Errorf("login %d: sign count %d", want, got.Authenticator.SignCount)
		}
		u.creds[0].Authenticator.SignCount = got.Authenticator.SignCount
	}
	if _, err := login(true); err == nil {
		t.Error("an answer with another use's signature was taken")
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func post(t *testing.T, body []byte) *http.Request {
	t.Helper()
	r, err := http.NewRequest("POST", "http://localhost:8080/finish", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	return r
}
