package resolver

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Subjects of the events that nats-server publishes in the system account
// (server/events.go). "$SYS.ACCOUNT.*.*" matches exactly the account's
// CONNECT and DISCONNECT events: the other $SYS.ACCOUNT subjects
// (CLAIMS.UPDATE, SERVER.CONNS, LEAFNODE.CONNECT, CLIENT.AUTH.ERR) have
// five tokens.
const (
	subjConnEvents = "$SYS.ACCOUNT.*.*"
	subjShutdown   = "$SYS.SERVER.*.SHUTDOWN"
	// subjStatsz is every server's heartbeat, sent at least every 10 s
	// (nats-server's statsHBInterval).
	subjStatsz = "$SYS.SERVER.*.STATSZ"
	// subjPingConnz asks every server of the cluster for its connections.
	subjPingConnz = "$SYS.REQ.SERVER.PING.CONNZ"
)

// silentAfter is how long a server may go unheard before presence takes
// it for dead and forgets its connections: two missed heartbeats. A
// server killed outright (kill -9, a lost machine) announces nothing, and
// its clients' DISCONNECTs never come.
var silentAfter = 20 * time.Second

// sweepEvery is how often presence looks for silent servers.
const sweepEvery = 2 * time.Second

// subscriberBuffer is how many events a slow subscriber may fall behind
// before it loses events.
const subscriberBuffer = 64

// reconcileAfter is when the connections counted are checked against the
// server's, after seeding; the last interval then repeats.
var reconcileAfter = []time.Duration{time.Second, 5 * time.Second, time.Minute}

// PresenceEvent says a device (user key) of an account came online or went
// offline.
type PresenceEvent struct {
	Account string    // account public key (A…)
	User    string    // user public key (U…)
	Online  bool      // true while the user has at least one connection
	Conns   int       // its connections now
	Time    time.Time // when it happened (server's event time)
}

// Presence keeps the online state and last-seen time of every user that
// connected since it started, from the servers' connect and disconnect
// events, and tells subscribers when a user comes online or goes offline.
type Presence struct {
	nc   *nats.Conn
	srv  *Server
	log  *slog.Logger
	subs []*nats.Subscription
	stop chan struct{}
	wg   sync.WaitGroup

	mu    sync.Mutex
	users map[userKey]*userState
	// conns maps each open connection to its user. A connection is known
	// by its server's ID and its client ID there, so a user's connections
	// to several servers of a cluster are counted apart, and a repeated
	// or unmatched event changes nothing.
	conns map[connKey]userKey
	// dead holds the IDs of servers that announced their shutdown. A
	// server has a new ID at each start, so a late event from a dead one
	// is stale.
	dead map[string]bool
	// heard is when each other server was last heard from (a heartbeat
	// or an event), for finding servers that died without a word.
	heard map[string]time.Time
	// local is the ID of srv, whose connections reconcile checks.
	local    string
	watchers map[*watcher]struct{}
	// seeding holds back events that arrive while the state is read from
	// the server; they are applied after it, in order.
	seeding bool
	pending []*nats.Msg
	closed  bool
	dropped uint64
}

type userKey struct{ account, user string }

type connKey struct {
	server string
	cid    uint64
}

type userState struct {
	conns    int
	lastSeen time.Time // the last disconnect, or when it came online
}

type watcher struct {
	account string // "" for all
	ch      chan PresenceEvent
	dropped uint64
}

// connEvent is the part of server.ConnectEventMsg and
// server.DisconnectEventMsg that presence reads; both have it.
type connEvent struct {
	server.TypedEvent
	Server server.ServerInfo `json:"server"`
	Client server.ClientInfo `json:"client"`
}

// WatchPresence subscribes, over nc (a system-account connection), to the
// connect and disconnect events of every account and to server shutdowns,
// and seeds the state with the connections srv has now; srv may be nil,
// and then only connections made from now on are known.
//
// Seeding reads srv's Connz in-process rather than asking over NATS
// ($SYS.REQ.ACCOUNT.<acc>.CONNZ would need every account's key, and
// $SYS.REQ.SERVER.PING.CONNZ an unknown number of replies). The
// subscriptions are made first, and events that arrive while Connz is
// read are applied after it: a connection that opens or closes meanwhile
// is then counted right whichever of the two saw it first.
//
// One case escapes that: nats-server sends a DISCONNECT from a goroutine
// of its own while another drops the connection from its list, so a
// connection closing just before the subscriptions start can be listed as
// open with its DISCONNECT already gone (a test that churns connections
// hits this often). The watcher therefore checks the connections it counts
// on srv against srv's list, soon after seeding and then every minute, and
// forgets those that are no longer there.
//
// In a cluster only srv's own connections are seeded and checked; those on
// other servers are known from their events, and forgotten when their
// server announces its shutdown. Events missed while nc is reconnecting
// are not recovered.
func WatchPresence(nc *nats.Conn, srv *Server, log *slog.Logger) (*Presence, error) {
	return watchPresence(nc, srv, srv != nil, log)
}

// WatchRemotePresence is WatchPresence for a cluster latch does not run:
// every server is asked for its connections at the start, and each one's
// are forgotten when it announces its shutdown or goes silent.
func WatchRemotePresence(nc *nats.Conn, log *slog.Logger) (*Presence, error) {
	return watchPresence(nc, nil, true, log)
}

func watchPresence(nc *nats.Conn, srv *Server, seed bool, log *slog.Logger) (*Presence, error) {
	if nc == nil {
		return nil, errors.New("presence: no NATS connection")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Presence{
		nc:       nc,
		srv:      srv,
		log:      log.With("component", "presence"),
		stop:     make(chan struct{}),
		users:    make(map[userKey]*userState),
		conns:    make(map[connKey]userKey),
		dead:     make(map[string]bool),
		heard:    make(map[string]time.Time),
		watchers: make(map[*watcher]struct{}),
		seeding:  seed,
	}
	// One subscription carries both CONNECT and DISCONNECT, because
	// nats.go delivers each subscription on its own goroutine: with two, a
	// connection's disconnect could be handled before its connect.
	for _, subj := range []string{subjConnEvents, subjShutdown, subjStatsz} {
		sub, err := nc.Subscribe(subj, p.receive)
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("presence: subscribe %s: %w", subj, err)
		}
		p.subs = append(p.subs, sub)
	}
	// The server holds the subscriptions once it answers a ping; every
	// event from then on reaches p.
	if err := nc.Flush(); err != nil {
		p.Close()
		return nil, fmt.Errorf("presence: %w", err)
	}
	if seed {
		if err := p.seed(srv); err != nil {
			p.Close()
			return nil, err
		}
	}
	if srv != nil {
		p.wg.Go(p.reconcileLoop)
	}
	p.wg.Go(p.sweepLoop)
	return p, nil
}

// seed counts the connections srv has now (with no srv, every server's),
// then applies the events held back meanwhile.
func (p *Presence) seed(srv *Server) error {
	peers := -1 // as many as answer
	if srv != nil {
		cz, err := connz(srv.ns)
		if err != nil {
			return fmt.Errorf("presence: read connections: %w", err)
		}
		p.mu.Lock()
		p.local = cz.ID
		for _, ci := range cz.Conns {
			if ci.Account == "" || !nkeys.IsValidPublicUserKey(ci.AuthorizedUser) {
				continue
			}
			p.connected(connKey{cz.ID, ci.Cid}, userKey{ci.Account, ci.AuthorizedUser}, cz.Now)
		}
		p.mu.Unlock()
		peers = len(srv.Routes())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// The other servers of a cluster answer for their own connections.
	// Those answers are applied like events, after the local list.
	others := p.askOthers(p.local, peers)
	for _, r := range others {
		p.heard[r.Server.ID] = time.Now()
		for _, ci := range r.Data.Conns {
			if ci.Account == "" || !nkeys.IsValidPublicUserKey(ci.AuthorizedUser) {
				continue
			}
			p.connected(connKey{r.Server.ID, ci.Cid}, userKey{ci.Account, ci.AuthorizedUser}, r.Data.Now)
		}
	}
	for _, m := range p.pending {
		p.apply(m)
	}
	p.pending, p.seeding = nil, false
	return nil
}

// askOthers asks every server of the cluster but local (of which there
// are peers, by the routes; -1: unknown) for its open connections, and
// returns the answers that came within a few seconds (an unknown number:
// every answer within one second). p.mu is held; the answers come on an
// inbox of their own, not through receive.
func (p *Presence) askOthers(local string, peers int) []server.ServerAPIConnzResponse {
	if peers == 0 {
		return nil
	}
	inbox := p.nc.NewRespInbox()
	sub, err := p.nc.SubscribeSync(inbox)
	if err != nil {
		p.log.Warn("ask the cluster's servers for their connections", "err", err)
		return nil
	}
	defer sub.Unsubscribe()
	req, _ := json.Marshal(server.ConnzEventOptions{ConnzOptions: server.ConnzOptions{Username: true, State: server.ConnOpen, Limit: 1 << 20}})
	if err := p.nc.PublishRequest(subjPingConnz, inbox, req); err != nil {
		p.log.Warn("ask the cluster's servers for their connections", "err", err)
		return nil
	}
	var out []server.ServerAPIConnzResponse
	deadline := time.Now().Add(3 * time.Second)
	if peers < 0 {
		deadline = time.Now().Add(time.Second)
	}
	for peers < 0 || len(out) < peers {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil && peers < 0 {
			break
		}
		if err != nil {
			p.log.Warn("some servers of the cluster did not say which devices they have; those show online when they next connect",
				"answered", len(out), "peers", peers)
			break
		}
		var r server.ServerAPIConnzResponse
		if json.Unmarshal(m.Data, &r) != nil || r.Server == nil || r.Data == nil || r.Server.ID == local {
			continue
		}
		out = append(out, r)
	}
	return out
}

func (p *Presence) sweepLoop() {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.sweep(time.Now())
	}
}

// sweep forgets the connections of every server not heard from for
// silentAfter.
func (p *Presence) sweep(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, at := range p.heard {
		if now.Sub(at) < silentAfter {
			continue
		}
		delete(p.heard, id)
		n := 0
		for ck := range p.conns {
			if ck.server == id {
				p.disconnected(ck, at)
				n++
			}
		}
		p.log.Warn("a server of the cluster went silent; its devices are taken for offline", "server", id, "silent_since", at, "connections", n)
	}
}

func (p *Presence) reconcileLoop() {
	for i := 0; ; i++ {
		t := time.NewTimer(reconcileAfter[min(i, len(reconcileAfter)-1)])
		select {
		case <-p.stop:
			t.Stop()
			return
		case <-t.C:
		}
		if err := p.reconcile(); err != nil {
			p.log.Warn("check connections", "err", err)
		}
	}
}

// reconcile forgets the connections to srv that p counts and srv no
// longer has. Only connections counted before srv's list is read are
// checked: one that opens meanwhile is missing from the list yet open.
// A connection is in srv's list from before its CONNECT is sent until
// after it closes, so one counted and missing has closed.
func (p *Presence) reconcile() error {
	p.mu.Lock()
	var known []connKey
	for ck := range p.conns {
		if ck.server == p.local {
			known = append(known, ck)
		}
	}
	p.mu.Unlock()
	if len(known) == 0 {
		return nil
	}
	cz, err := connz(p.srv.ns)
	if err != nil {
		return err
	}
	open := make(map[uint64]bool, len(cz.Conns))
	for _, ci := range cz.Conns {
		open[ci.Cid] = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	for _, ck := range known {
		if !open[ck.cid] {
			if uk, ok := p.conns[ck]; ok {
				p.log.Debug("connection closed without a DISCONNECT", "account", uk.account, "user", uk.user, "cid", ck.cid)
			}
			p.disconnected(ck, cz.Now)
		}
	}
	return nil
}

// connz returns every open client and leaf connection of ns with its
// account and user.
func connz(ns *server.Server) (*server.Connz, error) {
	limit := server.DefaultConnListSize
	for {
		cz, err := ns.Connz(&server.ConnzOptions{Username: true, State: server.ConnOpen, Limit: limit})
		if err != nil {
			return nil, err
		}
		// Total counts the connections before any filter, so a limit at
		// least that large saw them all. Paging by offset would skip
		// connections that close between pages.
		if cz.Total <= limit {
			return cz, nil
		}
		limit = 2 * cz.Total
	}
}

func (p *Presence) receive(m *nats.Msg) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
	case p.seeding:
		p.pending = append(p.pending, m)
	default:
		p.apply(m)
	}
}

// apply updates the state with one event. p.mu is held.
func (p *Presence) apply(m *nats.Msg) {
	toks := strings.Split(m.Subject, ".")
	if len(toks) == 4 && toks[1] == "SERVER" && toks[3] == "SHUTDOWN" {
		p.serverDown(toks[2], time.Now())
		return
	}
	if len(toks) == 4 && toks[1] == "SERVER" && toks[3] == "STATSZ" {
		if id := toks[2]; id != p.local && !p.dead[id] {
			p.heard[id] = time.Now()
		}
		return
	}
	if len(toks) != 4 || (toks[3] != "CONNECT" && toks[3] != "DISCONNECT") {
		return
	}
	var ev connEvent
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		p.log.Warn("unreadable connection event", "subject", m.Subject, "err", err)
		return
	}
	acc, user := ev.Client.Account, ev.Client.User
	if acc == "" {
		acc = toks[2]
	}
	// Connections without a user key (a token, a user name) are not
	// devices.
	if !nkeys.IsValidPublicUserKey(user) || ev.Server.ID == "" || p.dead[ev.Server.ID] {
		return
	}
	t := ev.Time
	if t.IsZero() {
		t = time.Now()
	}
	ck := connKey{ev.Server.ID, ev.Client.ID}
	if ev.Server.ID != p.local {
		p.heard[ev.Server.ID] = time.Now()
	}
	if toks[3] == "CONNECT" {
		p.connected(ck, userKey{acc, user}, t)
	} else {
		p.disconnected(ck, t)
	}
}

// connected counts a new connection. p.mu is held.
func (p *Presence) connected(ck connKey, uk userKey, t time.Time) {
	if _, ok := p.conns[ck]; ok {
		return
	}
	p.conns[ck] = uk
	u := p.users[uk]
	if u == nil {
		u = &userState{}
		p.users[uk] = u
	}
	u.conns++
	if u.conns == 1 {
		u.lastSeen = t
		p.publish(PresenceEvent{Account: uk.account, User: uk.user, Online: true, Conns: 1, Time: t})
	}
}

// disconnected forgets a connection. p.mu is held.
func (p *Presence) disconnected(ck connKey, t time.Time) {
	uk, ok := p.conns[ck]
	if !ok {
		return
	}
	delete(p.conns, ck)
	u := p.users[uk]
	u.conns--
	if u.conns == 0 {
		u.lastSeen = t
		p.publish(PresenceEvent{Account: uk.account, User: uk.user, Online: false, Time: t})
	}
}

// serverDown forgets every connection of a server that shut down: it
// closes its clients after it stops sending events, so no DISCONNECT
// comes for them. p.mu is held.
func (p *Presence) serverDown(id string, t time.Time) {
	p.dead[id] = true
	delete(p.heard, id)
	for ck := range p.conns {
		if ck.server == id {
			p.disconnected(ck, t)
		}
	}
}

// publish hands ev to every subscriber of its account without waiting: a
// subscriber whose buffer is full loses it. p.mu is held.
func (p *Presence) publish(ev PresenceEvent) {
	for w := range p.watchers {
		if w.account != "" && w.account != ev.Account {
			continue
		}
		select {
		case w.ch <- ev:
		default:
			w.dropped++
			p.dropped++
			p.log.Debug("presence subscriber is behind; event dropped",
				"account", ev.Account, "user", ev.User, "online", ev.Online, "dropped", w.dropped)
		}
	}
}

// Online reports whether the user has at least one connection.
func (p *Presence) Online(account, user string) bool {
	return p.Conns(account, user) > 0
}

// Conns is the number of the user's open connections.
func (p *Presence) Conns(account, user string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if u := p.users[userKey{account, user}]; u != nil {
		return u.conns
	}
	return 0
}

// LastSeen is the time of the user's last disconnect or, while it is
// online, now. It is false for a user not seen since p started.
func (p *Presence) LastSeen(account, user string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.users[userKey{account, user}]
	switch {
	case u == nil:
		return time.Time{}, false
	case u.conns > 0:
		return time.Now(), true
	default:
		return u.lastSeen, true
	}
}

// Subscribe returns the transitions (online, offline) of the users of an
// account from now on, or of every account for "". The channel is
// buffered; a subscriber that falls behind loses events rather than
// holding up the others (see Dropped). cancel, or Close, closes the
// channel.
func (p *Presence) Subscribe(account string) (events <-chan PresenceEvent, cancel func()) {
	w := &watcher{account: account, ch: make(chan PresenceEvent, subscriberBuffer)}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		close(w.ch)
		return w.ch, func() {}
	}
	p.watchers[w] = struct{}{}
	return w.ch, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if _, ok := p.watchers[w]; ok {
			delete(p.watchers, w)
			close(w.ch)
		}
	}
}

// Dropped is the number of events subscribers lost by falling behind.
func (p *Presence) Dropped() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped
}

// Close stops watching and closes every subscriber's channel. It leaves
// the connection open.
func (p *Presence) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.stop)
	p.pending = nil
	for w := range p.watchers {
		delete(p.watchers, w)
		close(w.ch)
	}
	p.mu.Unlock()
	p.wg.Wait()
	for _, sub := range p.subs {
		if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			p.log.Debug("unsubscribe", "subject", sub.Subject, "err", err)
		}
	}
}
