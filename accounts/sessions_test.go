package accounts_test

import (
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/nats-io/nats.go/jetstream"
)

// A session is good for SessionLifetime from its login, for the person it
// was made for: same name, account and user handle.
func TestWebSessions(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	p := s.MustCreatePerson(t, "alice")
	now := time.Now()
	token, ws, err := s.Service.StartSession(ctx, accounts.NewWebSession{Person: "alice", Addr: "192.0.2.1", UserAgent: "browser", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if ws.Account != p.Account || ws.Handle != p.Handle || ws.ID != accounts.SessionID(token) || !ws.Reauth.Equal(ws.Created) {
		t.Errorf("session: got %+v", ws)
	}
	got, gp, err := s.Service.Session(ctx, token, now.Add(time.Minute))
	if err != nil || got.ID != ws.ID || gp.Name != "alice" {
		t.Fatalf("Session: got %+v %q, %v", got, gp.Name, err)
	}
	_, _, err = s.Service.Session(ctx, token+"x", now)
	wantKind(t, "a wrong token", err, accounts.ErrNotFound)
	_, _, err = s.Service.Session(ctx, token, now.Add(accounts.SessionLifetime+time.Second))
	wantKind(t, "a session past its lifetime", err, accounts.ErrNotFound)
	_, _, err = s.Service.Session(ctx, token, now)
	wantKind(t, "a session past its lifetime, asked again", err, accounts.ErrNotFound)

	// Touching records use and a passkey check.
	token, ws, _ = s.Service.StartSession(ctx, accounts.NewWebSession{Person: "alice", Now: now})
	later := now.Add(2 * time.Minute)
	if err := s.Service.TouchSession(ctx, ws, later, "198.51.100.7", true); err != nil {
		t.Fatal(err)
	}
	got, _, _ = s.Service.Session(ctx, token, later)
	if !got.LastUsed.Equal(later.UTC()) || !got.Reauth.Equal(later.UTC()) || got.Addr != "198.51.100.7" {
		t.Errorf("after touch: got %+v", got)
	}

	// Ending all but one.
	keep, _, _ := s.Service.StartSession(ctx, accounts.NewWebSession{Person: "alice", Now: now})
	n, err := s.Service.EndSessions(ctx, "alice", keep)
	if err != nil || n != 1 {
		t.Fatalf("EndSessions: got %d, %v; want 1 ended", n, err)
	}
	if _, _, err := s.Service.Session(ctx, keep, now); err != nil {
		t.Errorf("the kept session: %v", err)
	}
	_, _, err = s.Service.Session(ctx, token, now)
	wantKind(t, "an ended session", err, accounts.ErrNotFound)
	if err := s.Service.TouchSession(ctx, ws, later.Add(time.Hour), "", false); err == nil {
		t.Error("touching an ended session brought it back")
	}
	if _, _, err := s.Service.Session(ctx, token, now); err == nil {
		t.Error("an ended session came back after a touch")
	}

	// A person record that names another account or user handle (as if
	// the person were made again without the sessions being ended) does
	// not match the session.
	kv := mustKV(t, s, accounts.PersonsBucket)
	e, err := kv.Get(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	swapped := strings.Replace(string(e.Value()), p.Handle, accounts.NewHandle(), 1)
	if _, err := kv.Put(ctx, "alice", []byte(swapped)); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Service.Session(ctx, keep, now)
	wantKind(t, "a session whose person has another user handle", err, accounts.ErrNotFound)
	if _, err := kv.Put(ctx, "alice", e.Value()); err != nil {
		t.Fatal(err)
	}
	keep, _, _ = s.Service.StartSession(ctx, accounts.NewWebSession{Person: "alice", Now: now})

	// Another person under the old name is somebody else.
	if _, err := s.Service.DeletePerson(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	s.MustCreatePerson(t, "alice")
	_, _, err = s.Service.Session(ctx, keep, now)
	wantKind(t, "the session of a deleted person whose name was taken again", err, accounts.ErrNotFound)
}

func mustKV(t testing.TB, s *latchtest.Stack, bucket string) jetstream.KeyValue {
	t.Helper()
	js, err := jetstream.New(s.App)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(testCtx(t), bucket)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}
