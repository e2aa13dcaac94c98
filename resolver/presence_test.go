package resolver_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/latch-dev/latch/resolver"
)

// wait is how long a test waits for something the server does by itself.
const wait = 10 * time.Second

func mustWatchPresence(tb testing.TB, s *latchtest.Stack) *resolver.Presence {
	tb.Helper()
	p, err := resolver.WatchPresence(s.Sys, s.Server, nil)
	if err != nil {
		tb.Fatalf("watch presence: %v", err)
	}
	tb.Cleanup(p.Close)
	return p
}

// nextEvent returns the next event about user. Events of other users (the
// service's own short-lived connections in a person account) are skipped.
func nextEvent(tb testing.TB, events <-chan resolver.PresenceEvent, user string) resolver.PresenceEvent {
	tb.Helper()
	timeout := time.After(wait)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				tb.Fatalf("events closed while waiting for one about %s", user)
			}
			if ev.User == user {
				return ev
			}
		case <-timeout:
			tb.Fatalf("no event about %s in %v", user, wait)
		}
	}
}

// noEvent fails if an event about user is waiting.
func noEvent(tb testing.TB, events <-chan resolver.PresenceEvent, user string) {
	tb.Helper()
	for {
		select {
		case ev := <-events:
			if ev.User == user {
				tb.Fatalf("got event %+v, want none", ev)
			}
		default:
			return
		}
	}
}

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not after %v", what, wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPresenceDeviceComesOnline(t *testing.T) {
	s := latchtest.MustStart(t, latchtest.Options{Dir: t.TempDir()})
	alice := s.MustCreatePerson(t, "alice")
	d := s.MustIssueDevice(t, "alice", "laptop")
	p := mustWatchPresence(t, s)
	events, cancel := p.Subscribe("")
	defer cancel()

	if _, seen := p.LastSeen(alice.Account, d.PublicKey); seen {
		t.Fatal("LastSeen of a device never connected: got seen, want not")
	}
	start := time.Now()
	s.MustConnect(t, d.CredsFile)

	ev := nextEvent(t, events, d.PublicKey)
	want := resolver.PresenceEvent{Account: alice.Account, User: d.PublicKey, Online: true, Conns: 1, Time: ev.Time}
	if ev != want {
		t.Fatalf("got %+v, want %+v", ev, want)
	}
	if ev.Time.Before(start.Add(-time.Second)) || ev.Time.After(time.Now().Add(time.Second)) {
		t.Errorf("event time %v, want about %v", ev.Time, start)
	}
	if !p.Online(alice.Account, d.PublicKey) {
		t.Error("Online: got false, want true")
	}
	if last, seen := p.LastSeen(alice.Account, d.PublicKey); !seen || last.Before(start) {
		t.Errorf("LastSeen: got %v, %v; want about now, true", last, seen)
	}
}

func TestPresenceCountsConnections(t *testing.T) {
	s := latchtest.MustStart(t, latchtest.Options{Dir: t.TempDir()})
	alice := s.MustCreatePerson(t, "alice")
	d := s.MustIssueDevice(t, "alice", "laptop")
	p := mustWatchPresence(t, s)
	events, cancel := p.Subscribe(alice.Account)
	defer cancel()
	conns := func() int { return p.Conns(alice.Account, d.PublicKey) }

	c1 := s.MustConnect(t, d.CredsFile)
	if ev := nextEvent(t, events, d.PublicKey); !ev.Online || ev.Conns != 1 {
		t.Fatalf("first connection: got %+v, want online with 1 connection", ev)
	}

	// A second connection of the same device is no transition.
	c2 := s.MustConnect(t, d.CredsFile)
	waitFor(t, "two connections counted", func() bool { return conns() == 2 })
	noEvent(t, events, d.PublicKey)

	// Closing one of the two keeps it online.
	c1.Close()
	waitFor(t, "one connection counted", func() bool { return conns() == 1 })
	noEvent(t, events, d.PublicKey)
	if !p.Online(alice.Account, d.PublicKey) {
		t.Fatal("Online with one connection left: got false, want true")
	}

	c2.Close()
	ev := nextEvent(t, events, d.PublicKey)
	want := resolver.PresenceEvent{Account: alice.Account, User: d.PublicKey, Online: false, Conns: 0, Time: ev.Time}
	if ev != want {
		t.Fatalf("last connection closed: got %+v, want %+v", ev, want)
	}
	if p.Online(alice.Account, d.PublicKey) {
		t.Error("Online after both closed: got true, want false")
	}
	last, seen := p.LastSeen(alice.Account, d.PublicKey)
	if !seen || !last.Equal(ev.Time) {
		t.Errorf("LastSeen: got %v, %v; want %v, true", last, seen, ev.Time)
	}
}

func TestPresenceRevokedDeviceGoesOffline(t *testing.T) {
	s := latchtest.MustStart(t, latchtest.Options{Dir: t.TempDir()})
	alice := s.MustCreatePerson(t, "alice")
	d := s.MustIssueDevice(t, "alice", "laptop")
	p := mustWatchPresence(t, s)
	events, cancel := p.Subscribe(alice.Account)
	defer cancel()

	c := s.MustConnect(t, d.CredsFile)
	if ev := nextEvent(t, events, d.PublicKey); !ev.Online {
		t.Fatalf("got %+v, want online", ev)
	}
	if _, err := s.Service.RevokeDevice(context.Background(), "alice", d.Name); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, events, d.PublicKey); ev.Online || ev.Conns != 0 {
		t.Fatalf("after revocation: got %+v, want offline", ev)
	}
	select {
	case <-c.Closed:
	case <-time.After(wait):
		t.Fatal("the revoked device's connection is still open")
	}
	if p.Online(alice.Account, d.PublicKey) {
		t.Error("Online after revocation: got true, want false")
	}
}

func TestPresenceSubscribeToOneAccount(t *testing.T) {
	s := latchtest.MustStart(t, latchtest.Options{Dir: t.TempDir()})
	alice := s.MustCreatePerson(t, "alice")
	bob := s.MustCreatePerson(t, "bob")
	da := s.MustIssueDevice(t, "alice", "laptop")
	db := s.MustIssueDevice(t, "bob", "phone")
	p := mustWatchPresence(t, s)
	aliceEvents, cancelAlice := p.Subscribe(alice.Account)
	defer cancelAlice()
	all, cancelAll := p.Subscribe("")
	defer cancelAll()

	// Bob's device first: by the time alice's event arrives, bob's has
	// been handed out, so alice's subscriber would already hold it.
	s.MustConnect(t, db.CredsFile)
	if ev := nextEvent(t, all, db.PublicKey); ev.Account != bob.Account {
		t.Fatalf("bob's device: got account %s, want %s", ev.Account, bob.Account)
	}
	s.MustConnect(t, da.CredsFile)
	nextEvent(t, all, da.PublicKey)

	for {
		select {
		case ev := <-aliceEvents:
			if ev.Account != alice.Account {
				t.Fatalf("alice's subscriber got %+v from another account", ev)
			}
			if ev.User == da.PublicKey {
				return
			}
		default:
			t.Fatal("alice's subscriber did not get her device's event")
		}
	}
}

func TestPresenceSeedsConnectedDevices(t *testing.T) {
	s := latchtest.MustStart(t, latchtest.Options{Dir: t.TempDir()})
	alice := s.MustCreatePerson(t, "alice")
	d := s.MustIssueDevice(t, "alice", "laptop")
	s.MustConnect(t, d.CredsFile)
	s.MustConnect(t, d.CredsFile)

	p := mustWatchPresence(t, s)
	if !p.Online(alice.Account, d.PublicKey) {
		t.Fatal("a device connected before the watcher: got offline, want online")
	}
	if got := p.Conns(alice.Account, d.PublicKey); got != 2 {
		t.Errorf("Conns: got %d, want 2", got)
	}
	if _, seen := p.LastSeen(alice.Account, d.PublicKey); !seen {
		t.Error("LastSeen: got not seen, want seen")
	}
}

func TestPresenceWithoutServerDoesNotSeed(t *testing.T) {
	s := latchtest.MustStart(t, latchtest.Options{Dir: t.TempDir()})
	alice := s.MustCreatePerson(t, "alice")
	d := s.MustIssueDevice(t, "alice", "laptop")
	s.MustConnect(t, d.CredsFile)

	p, err := resolver.WatchPresence(s.Sys, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Online(alice.Account, d.PublicKey) {
		t.Fatal("unseeded watcher: got online, want offline")
	}
	events, cancel := p.Subscribe("")
	defer cancel()
	s.MustConnect(t, d.CredsFile)
	if ev := nextEvent(t, events, d.PublicKey); !ev.Online {
		t.Fatalf("got %+v, want online", ev)
	}
}

func TestPresenceCancelStopsDelivery(t *testing.T) {
	s := latchtest.MustStart(t, latchtest.Options{Dir: t.TempDir()})
	alice := s.MustCreatePerson(t, "alice")
	d := s.MustIssueDevice(t, "alice", "laptop")
	p := mustWatchPresence(t, s)
	canceled, cancel := p.Subscribe("")
	events, cancelEvents := p.Subscribe("")
	defer cancelEvents()

	cancel()
	cancel() // twice is fine
	for range canceled {
	}
	s.MustConnect(t, d.CredsFile)
	nextEvent(t, events, d.PublicKey)
	if !p.Online(alice.Account, d.PublicKey) {
		t.Error("Online: got false, want true")
	}
}

func TestPresenceSlowSubscriberDropsEvents(t *testing.T) {
	s := latchtest.MustStart(t, latchtest.Options{Dir: t.TempDir()})
	alice := s.MustCreatePerson(t, "alice")
	d := s.MustIssueDevice(t, "alice", "laptop")
	p := mustWatchPresence(t, s)
	_, cancelSlow := p.Subscribe(alice.Account) // never read
	defer cancelSlow()
	events, cancel := p.Subscribe(alice.Account)
	defer cancel()

	// 40 connections make 80 transitions, more than a subscriber holds.
	for i := range 40 {
		c := s.MustConnect(t, d.CredsFile)
		if ev := nextEvent(t, events, d.PublicKey); !ev.Online {
			t.Fatalf("connection %d: got %+v, want online", i, ev)
		}
		c.Close()
		if ev := nextEvent(t, events, d.PublicKey); ev.Online {
			t.Fatalf("connection %d closed: got %+v, want offline", i, ev)
		}
	}
	if p.Dropped() == 0 {
		t.Error("Dropped: got 0, want the events the slow subscriber missed")
	}
}

func TestPresenceCloseWhileBusy(t *testing.T) {
	s := latchtest.MustStart(t, latchtest.Options{Dir: t.TempDir()})
	alice := s.MustCreatePerson(t, "alice")
	d := s.MustIssueDevice(t, "alice", "laptop")
	p, err := resolver.WatchPresence(s.Sys, s.Server, nil)
	if err != nil {
		t.Fatal(err)
	}
	events, cancel := p.Subscribe("")

	got := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 10 {
			c, err := s.Connect(d.CredsFile)
			if err != nil {
				t.Error(err)
				return
			}
			c.Close()
		}
	})
	wg.Go(func() {
		var once sync.Once
		for ev := range events {
			if ev.User == d.PublicKey {
				once.Do(func() { close(got) })
			}
		}
	})
	select {
	case <-got:
	case <-time.After(wait):
		t.Fatal("no event before Close")
	}
	p.Close()
	p.Close()
	cancel() // after Close is fine
	wg.Wait()

	// The state stays readable, and subscribing to a closed watcher gives a
	// closed channel.
	p.Online(alice.Account, d.PublicKey)
	late, _ := p.Subscribe("")
	if _, ok := <-late; ok {
		t.Error("Subscribe after Close: got an open channel, want closed")
	}
}

// A device connecting and disconnecting while watchers seed must end up
// offline in every watcher: an event that comes during seeding is applied
// after it, and a connection whose DISCONNECT went out just before the
// watcher subscribed is found closed when the watcher checks the server.
func TestPresenceSeedsWhileDevicesChurn(t *testing.T) {
	s := latchtest.MustStart(t, latchtest.Options{Dir: t.TempDir()})
	alice := s.MustCreatePerson(t, "alice")
	d := s.MustIssueDevice(t, "alice", "laptop")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := s.Connect(d.CredsFile)
				if err != nil {
					t.Error(err)
					return
				}
				c.Close()
			}
		})
	}
	var watchers []*resolver.Presence
	for range 20 {
		watchers = append(watchers, mustWatchPresence(t, s))
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	for i, p := range watchers {
		waitFor(t, fmt.Sprintf("watcher %d counts no connection", i), func() bool {
			return p.Conns(alice.Account, d.PublicKey) == 0
		})
	}
}

// A server that dies without a word (kill -9: no SHUTDOWN, no DISCONNECT
// for its clients) stops sending heartbeats; presence takes its devices
// for offline once it has been silent for two heartbeats.
func TestPresenceForgetsSilentServer(t *testing.T) {
	t.Cleanup(resolver.SetSilentAfter(time.Second)) // after the watcher stops
	s := latchtest.MustStart(t, latchtest.Options{Dir: t.TempDir()})
	alice := s.MustCreatePerson(t, "alice")
	d := s.MustIssueDevice(t, "alice", "laptop")
	p := mustWatchPresence(t, s)
	events, cancel := p.Subscribe(alice.Account)
	defer cancel()

	// The CONNECT a server elsewhere in the cluster sends for one of its
	// clients; then that server says nothing more.
	ev := fmt.Sprintf(`{"type":"io.nats.server.advisory.v1.client_connect","server":{"name":"gone","id":"NGONE"},"client":{"id":7,"acc":%q,"user":%q}}`,
		alice.Account, d.PublicKey)
	if err := s.Sys.Publish("$SYS.ACCOUNT."+alice.Account+".CONNECT", []byte(ev)); err != nil {
		t.Fatal(err)
	}
	if got := nextEvent(t, events, d.PublicKey); !got.Online {
		t.Fatalf("first event %+v, want online", got)
	}
	if got := nextEvent(t, events, d.PublicKey); got.Online {
		t.Fatalf("second event %+v, want offline once the server went silent", got)
	}
	if p.Online(alice.Account, d.PublicKey) {
		t.Error("the device of a silent server is still online")
	}
}
