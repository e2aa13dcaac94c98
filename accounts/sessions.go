package accounts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// SessionLifetime is how long a web session lasts from its login,
// however much it is used.
const SessionLifetime = 12 * time.Hour

// sessionTouchEvery is how stale a session's last-used time may get
// before a request writes it again: not every request writes.
const sessionTouchEvery = time.Minute

// A WebSession is one logged-in browser of a person, kept on the server in
// the LATCH bucket latch_sessions. The browser's cookie holds only a
// random token; the bucket holds the token's SHA-256, never the token.
// A session names its person by account key and WebAuthn user handle as
// well as by name, so that a person deleted and made again under the same
// name is somebody else to it.
type WebSession struct {
	// ID is the SHA-256 of the token, in hex: what the Passkeys page shows
	// and ends a session by.
	ID        string    `json:"id"`
	Person    string    `json:"person"`
	Account   string    `json:"account"`
	Handle    string    `json:"handle"`
	Created   time.Time `json:"created"`
	LastUsed  time.Time `json:"last_used"`
	Reauth    time.Time `json:"reauth,omitzero"` // the last passkey check
	Addr      string    `json:"addr,omitempty"`  // the client's address when last used
	UserAgent string    `json:"user_agent,omitempty"`
}

// NewWebSession is a login.
type NewWebSession struct {
	Person    string
	Addr      string
	UserAgent string
	Now       time.Time
}

// Keys of latch_sessions: "s.<id>" holds a session, and "p.<account>.<id>"
// (empty) lists a person's sessions.
func sessionKey(id string) string               { return "s." + id }
func sessionIndexKey(account, id string) string { return "p." + account + "." + id }

// SessionID is the ID of the session of token: its SHA-256, in hex.
func SessionID(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// StartSession logs a person in: it makes a session and returns its token,
// for the cookie. A login is a passkey check, so the session starts with
// a fresh one.
func (s *Service) StartSession(ctx context.Context, ns NewWebSession) (string, WebSession, error) {
	p, err := s.Person(ctx, ns.Person)
	if err != nil {
		return "", WebSession{}, err
	}
	if p.Status != StatusActive {
		return "", WebSession{}, errorf(ErrDisabled, "%s is %s", p.Name, p.Status)
	}
	b := make([]byte, 32)
	rand.Read(b)
	token := base64.RawURLEncoding.EncodeToString(b)
	now := ns.Now.UTC()
	ws := WebSession{
		ID: SessionID(token), Person: p.Name, Account: p.Account, Handle: p.Handle,
		Created: now, LastUsed: now, Reauth: now, Addr: ns.Addr, UserAgent: truncate(ns.UserAgent, 256),
	}
	if _, err := s.sessions.Create(ctx, sessionIndexKey(p.Account, ws.ID), nil); err != nil {
		return "", WebSession{}, fmt.Errorf("start session: %w", err)
	}
	if err := createJSON(ctx, s.sessions, sessionKey(ws.ID), ws); err != nil {
		s.sessions.Delete(ctx, sessionIndexKey(p.Account, ws.ID))
		return "", WebSession{}, fmt.Errorf("start session: %w", err)
	}
	return token, ws, nil
}

// errNoSession is every way a session can be missing or no longer good.
var errNoSession = errorf(ErrNotFound, "no such session; log in")

// Session returns the session of a token and its person, checking that
// the session has not outlived SessionLifetime at now and that the person
// it names still exists with the same account and user handle. A session
// that fails the check is deleted. The person's status is not checked:
// the caller says what a disabled person sees.
func (s *Service) Session(ctx context.Context, token string, now time.Time) (WebSession, Person, error) {
	if token == "" || len(token) > 128 {
		return WebSession{}, Person{}, errNoSession
	}
	id := SessionID(token)
	var ws WebSession
	if _, err := getJSON(ctx, s.sessions, sessionKey(id), &ws); err != nil {
		if isNotFound(err) {
			return WebSession{}, Person{}, errNoSession
		}
		return WebSession{}, Person{}, err
	}
	if now.Sub(ws.Created) > SessionLifetime {
		s.dropSession(ctx, ws)
		return WebSession{}, Person{}, errNoSession
	}
	p, err := s.Person(ctx, ws.Person)
	if errors.Is(err, ErrNotFound) || (err == nil && (p.Account != ws.Account || p.Handle != ws.Handle)) {
		s.dropSession(ctx, ws)
		return WebSession{}, Person{}, errNoSession
	}
	if err != nil {
		return WebSession{}, Person{}, err
	}
	return ws, p, nil
}

// TouchSession records that the session was used at now from addr, at
// most once a minute, and a passkey check when reauth is set.
func (s *Service) TouchSession(ctx context.Context, ws WebSession, now time.Time, addr string, reauth bool) error {
	if !reauth && now.Sub(ws.LastUsed) < sessionTouchEvery && ws.Addr == addr {
		return nil
	}
	ws.LastUsed, ws.Addr = now.UTC(), addr
	if reauth {
		ws.Reauth = ws.LastUsed
	}
	// Update only a session that is still there: a session ended a moment
	// ago must not come back.
	e, err := s.sessions.Get(ctx, sessionKey(ws.ID))
	if err != nil {
		if isNotFound(err) {
			return errNoSession
		}
		return err
	}
	b, err := json.Marshal(ws)
	if err != nil {
		return err
	}
	if _, err := s.sessions.Update(ctx, sessionKey(ws.ID), b, e.Revision()); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) || isNotFound(err) {
			return nil // used or ended at the same moment; either wins
		}
		return err
	}
	return nil
}

// EndSession logs the session of token out.
func (s *Service) EndSession(ctx context.Context, token string) error {
	var ws WebSession
	if _, err := getJSON(ctx, s.sessions, sessionKey(SessionID(token)), &ws); err != nil {
		if isNotFound(err) {
			return nil
		}
		return err
	}
	return s.dropSession(ctx, ws)
}

// Sessions lists the live sessions of a person, newest first.
func (s *Service) Sessions(ctx context.Context, person string, now time.Time) ([]WebSession, error) {
	p, err := s.Person(ctx, person)
	if err != nil {
		return nil, err
	}
	all, err := s.personSessions(ctx, p.Account)
	if err != nil {
		return nil, err
	}
	var out []WebSession
	for _, ws := range all {
		if now.Sub(ws.Created) <= SessionLifetime && ws.Handle == p.Handle {
			out = append(out, ws)
		}
	}
	slices.SortFunc(out, func(a, b WebSession) int { return b.Created.Compare(a.Created) })
	return out, nil
}

// EndSessionID ends one session of a person, by its ID.
func (s *Service) EndSessionID(ctx context.Context, person, id string) error {
	p, err := s.Person(ctx, person)
	if err != nil {
		return err
	}
	if _, err := hex.DecodeString(id); err != nil || len(id) != 64 {
		return errorf(ErrNotFound, "%s has no such session", p.Name)
	}
	var ws WebSession
	if _, err := getJSON(ctx, s.sessions, sessionKey(id), &ws); err != nil || ws.Account != p.Account {
		if err == nil || isNotFound(err) {
			return errorf(ErrNotFound, "%s has no session %s", p.Name, id)
		}
		return err
	}
	if err := s.dropSession(ctx, ws); err != nil {
		return err
	}
	s.auditAfter(ctx, AuditEvent{Action: ActionSessionsEnd, Account: p.Account, AccountName: p.Name, Detail: "one session"})
	return nil
}

// EndSessions ends every session of a person but the one of keep (which
// may be ""), and returns how many it ended.
func (s *Service) EndSessions(ctx context.Context, person, keep string) (int, error) {
	p, err := s.Person(ctx, person)
	if err != nil {
		return 0, err
	}
	n, err := s.dropSessions(ctx, p.Account, keep)
	if err != nil {
		return n, err
	}
	s.auditAfter(ctx, AuditEvent{Action: ActionSessionsEnd, Account: p.Account, AccountName: p.Name, Detail: fmt.Sprintf("%d sessions", n)})
	return n, nil
}

// dropSessions deletes every session of an account but keep's.
func (s *Service) dropSessions(ctx context.Context, account, keep string) (int, error) {
	all, err := s.personSessions(ctx, account)
	if err != nil {
		return 0, err
	}
	keepID := ""
	if keep != "" {
		keepID = SessionID(keep)
	}
	n := 0
	for _, ws := range all {
		if ws.ID == keepID {
			continue
		}
		if err := s.dropSession(ctx, ws); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// personSessions reads the sessions an account's index lists; index
// entries whose session is gone are removed.
func (s *Service) personSessions(ctx context.Context, account string) ([]WebSession, error) {
	lister, err := s.sessions.ListKeysFiltered(ctx, sessionIndexKey(account, ">"))
	if err != nil {
		return nil, err
	}
	var out []WebSession
	for k := range lister.Keys() {
		id := k[strings.LastIndexByte(k, '.')+1:]
		var ws WebSession
		if _, err := getJSON(ctx, s.sessions, sessionKey(id), &ws); err != nil {
			if isNotFound(err) {
				s.sessions.Delete(ctx, k)
				continue
			}
			lister.Stop()
			return nil, err
		}
		out = append(out, ws)
	}
	return out, nil
}

// dropSession deletes a session and its index entry.
func (s *Service) dropSession(ctx context.Context, ws WebSession) error {
	if err := s.sessions.Purge(ctx, sessionKey(ws.ID)); err != nil && !isNotFound(err) {
		return fmt.Errorf("end session: %w", err)
	}
	if err := s.sessions.Purge(ctx, sessionIndexKey(ws.Account, ws.ID)); err != nil && !isNotFound(err) {
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
