package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/gorilla/sessions"
	"github.com/latch-dev/latch/accounts"
)

// Session lifetimes.
const (
	sessionLifetime  = accounts.SessionLifetime
	ceremonyLifetime = 5 * time.Minute
	// reauthMaxAge is how fresh a passkey check must be to approve an
	// enrollment.
	reauthMaxAge = 60 * time.Second
)

// sessionStore keeps two encrypted cookies: the login session's token, and
// the state of one passkey ceremony between its begin and finish requests.
type sessionStore struct {
	store            *sessions.CookieStore
	name, ceremonies string
}

// sessionKeysOf derives the session cookie's keys, an authentication key
// and an encryption key, with distinct labels from a shared secret.
func sessionKeysOf(secret []byte) [][]byte {
	auth := sha256.Sum256(append([]byte("latch web session auth\x00"), secret...))
	enc := sha256.Sum256(append([]byte("latch web session enc\x00"), secret...))
	return [][]byte{auth[:], enc[:]}
}

func newSessionStore(keyPairs [][]byte, secure bool) (*sessionStore, error) {
	if len(keyPairs) == 0 {
		keyPairs = [][]byte{randomBytes(64), randomBytes(32)}
	}
	if len(keyPairs)%2 != 0 {
		return nil, errors.New("web: session keys come in pairs: authentication key, encryption key")
	}
	for i := 1; i < len(keyPairs); i += 2 {
		if n := len(keyPairs[i]); n != 32 {
			return nil, fmt.Errorf("web: session encryption key is %d bytes, want 32", n)
		}
	}
	st := sessions.NewCookieStore(keyPairs...)
	// gorilla's defaults (SameSite=None, 30 days, no HttpOnly) are not
	// what a login cookie wants.
	st.Options = &sessions.Options{
		Path:     "/",
		MaxAge:   int(sessionLifetime / time.Second),
		HttpOnly: true,
		Secure:   secure,
		SameSite: http.SameSiteLaxMode,
	}
	s := &sessionStore{store: st, name: "latch", ceremonies: "latch-ceremony"}
	if secure {
		// __Host- cookies are bound to this exact host, https, path /.
		s.name, s.ceremonies = "__Host-latch", "__Host-latch-ceremony"
	}
	return s, nil
}

// The login cookie holds only the session's random token, encrypted and
// authenticated; the session itself is on the server (accounts.WebSession).

func (s *sessionStore) token(r *http.Request) string {
	sess, _ := s.store.Get(r, s.name) // a bad or old cookie reads as no session
	t, _ := sess.Values["t"].(string)
	return t
}

func (s *sessionStore) setToken(w http.ResponseWriter, r *http.Request, token string) error {
	sess, _ := s.store.Get(r, s.name)
	delete(sess.Values, "login") // the cookie of an older latch
	sess.Values["t"] = token
	return sess.Save(r, w)
}

func (s *sessionStore) clear(w http.ResponseWriter, r *http.Request) error {
	sess, _ := s.store.Get(r, s.name)
	sess.Values = map[any]any{}
	sess.Options = &sessions.Options{Path: "/", MaxAge: -1, HttpOnly: true, Secure: s.store.Options.Secure, SameSite: http.SameSiteLaxMode}
	return sess.Save(r, w)
}

// ceremony is one passkey ceremony in flight: the library's session data,
// passed back to it verbatim, and what the ceremony is for.
// ceremonyKind is which passkey ceremony a ceremony is.
type ceremonyKind string

const (
	ceremonyRegister ceremonyKind = "register" // a new person's first passkey
	ceremonyAdd      ceremonyKind = "add"      // another passkey of a person
	ceremonyLogin    ceremonyKind = "login"
	ceremonyReauth   ceremonyKind = "reauth" // a fresh passkey check
)

type ceremony struct {
	Kind ceremonyKind
	Data webauthn.SessionData
	// For registration of a new person.
	Handle      []byte
	DisplayName string
	Token       string
	// For adding a passkey.
	PasskeyName string
}

// setCeremony keeps a ceremony's state on the server (the account
// service) and its token in the ceremony cookie.
func (s *Server) setCeremony(w http.ResponseWriter, r *http.Request, c ceremony) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	token, err := s.cfg.Accounts.SaveCeremony(r.Context(), b, s.cfg.Now())
	if err != nil {
		return err
	}
	sess, _ := s.sessions.store.Get(r, s.sessions.ceremonies)
	sess.Values = map[any]any{"t": token}
	sess.Options = &sessions.Options{Path: "/", MaxAge: int(ceremonyLifetime / time.Second), HttpOnly: true,
		Secure: s.sessions.store.Options.Secure, SameSite: http.SameSiteStrictMode}
	return sess.Save(r, w)
}

// takeCeremony returns the ceremony in flight of the given kind and ends it
// on the server: each challenge is answered at most once, whatever the
// outcome, and a browser sending the same cookie again gets nothing.
func (s *Server) takeCeremony(w http.ResponseWriter, r *http.Request, kind ceremonyKind) (ceremony, error) {
	sess, _ := s.sessions.store.Get(r, s.sessions.ceremonies)
	token, _ := sess.Values["t"].(string)
	sess.Values = map[any]any{}
	sess.Options = &sessions.Options{Path: "/", MaxAge: -1, HttpOnly: true, Secure: s.sessions.store.Options.Secure, SameSite: http.SameSiteStrictMode}
	if err := sess.Save(r, w); err != nil {
		return ceremony{}, err
	}
	b, err := s.cfg.Accounts.TakeCeremony(r.Context(), token, s.cfg.Now())
	if errors.Is(err, accounts.ErrNotFound) {
		return ceremony{}, errCeremony
	}
	if err != nil {
		return ceremony{}, err
	}
	var c ceremony
	if json.Unmarshal(b, &c) != nil || c.Kind != kind {
		return ceremony{}, errCeremony
	}
	return c, nil
}

var errCeremony = errors.New("no passkey request is in progress, or it expired; start again")

// randomBytes returns n bytes from the system's random source.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand panics on a broken source)
	return b
}

// beginCeremony answers a ceremony's first step with what the passkey
// library made of it: the session data kept on the server as c, the
// options sent to the browser.
func (s *Server) beginCeremony(w http.ResponseWriter, r *http.Request, opts any, data *webauthn.SessionData, err error, c ceremony) {
	if err != nil {
		s.fail(w, r, ceremonyError(err))
		return
	}
	c.Data = *data
	if err := s.setCeremony(w, r, c); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, opts)
}

// ceremonyAnswered takes the ceremony a finish step answers; false when
// there is none (it has answered the request then).
func (s *Server) ceremonyAnswered(w http.ResponseWriter, r *http.Request, kind ceremonyKind) (ceremony, bool) {
	c, err := s.takeCeremony(w, r, kind)
	if err != nil {
		s.fail(w, r, errStatus(http.StatusBadRequest, err.Error()))
		return ceremony{}, false
	}
	return c, true
}

// personCeremony takes the ceremony a finish step of the person p
// answers, and p as the passkey library sees them; false when it failed
// and said so.
func (s *Server) personCeremony(w http.ResponseWriter, r *http.Request, kind ceremonyKind, p accounts.Person) (ceremony, *waUser, bool) {
	c, ok := s.ceremonyAnswered(w, r, kind)
	if !ok {
		return ceremony{}, nil, false
	}
	u, err := s.userOf(r.Context(), p)
	if err != nil {
		s.fail(w, r, err)
		return ceremony{}, nil, false
	}
	return c, u, true
}

// sessionService is what the account service does for web sessions and
// passkey ceremonies kept on the server.
type sessionService interface {
	StartSession(ctx context.Context, ns accounts.NewWebSession) (string, accounts.WebSession, error)
	Session(ctx context.Context, token string, now time.Time) (accounts.WebSession, accounts.Person, error)
	TouchSession(ctx context.Context, ws accounts.WebSession, now time.Time, addr string, reauth bool) error
	EndSession(ctx context.Context, token string) error
	Sessions(ctx context.Context, person string, now time.Time) ([]accounts.WebSession, error)
	EndSessionID(ctx context.Context, person, id string) error
	EndSessions(ctx context.Context, person, keep string) (int, error)
	SaveCeremony(ctx context.Context, state []byte, now time.Time) (string, error)
	TakeCeremony(ctx context.Context, token string, now time.Time) ([]byte, error)
}
