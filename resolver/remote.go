package resolver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// RemoteConfig describes a nats-server cluster that latch does not run:
// servers configured with `latch operator config` (latch's operator, its
// system account, the full resolver), which latch reaches over NATS.
type RemoteConfig struct {
	// URLs are the servers' client URLs; a client connection goes to any
	// of them and on to the others the cluster tells of.
	URLs []string
	// System authenticates the connection of a system-account user
	// (nats.UserCredentials, say) over which latch asks the servers how
	// they are, pushes account JWTs and hears of connections.
	System nats.Option
	// Options go to every connection latch makes: TLS roots, say.
	Options []nats.Option
	Log     *slog.Logger
}

// Remote is a nats-server cluster that latch drives over NATS. It answers
// what *Server answers of the embedded server, asking every server of the
// cluster over the system account ($SYS.REQ.SERVER.PING.*).
type Remote struct {
	cfg RemoteConfig
	log *slog.Logger

	mu      sync.Mutex
	sys     *nats.Conn
	health  error // what the last look at the servers found
	servers int   // how many answered that look

	ready    atomic.Bool
	stopping atomic.Bool
	failed   chan struct{}
	failErr  error
	stop     chan struct{}
	wg       sync.WaitGroup
}

// remoteWait is how long a question to every server waits for answers:
// the servers of one cluster answer within milliseconds of each other.
const remoteWait = 750 * time.Millisecond

// remoteHealthEvery is how often the servers' health is read again.
const remoteHealthEvery = 5 * time.Second

// NewRemote returns the cluster cfg describes without connecting to it;
// WaitReady connects.
func NewRemote(cfg RemoteConfig) (*Remote, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("no NATS server URL")
	}
	if cfg.System == nil {
		return nil, errors.New("no system-account credentials")
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Remote{
		cfg: cfg, log: log.With("component", "nats"),
		health: errors.New("not connected yet"),
		failed: make(chan struct{}), stop: make(chan struct{}),
	}, nil
}

// Connect makes a client connection to the cluster, to any of its servers.
func (r *Remote) Connect(opts ...nats.Option) (*nats.Conn, error) {
	all := append(slices.Clone(r.cfg.Options), opts...)
	return nats.Connect(strings.Join(r.cfg.URLs, ","), all...)
}

// WaitReady connects over the system account and waits until every
// server that answers is healthy with JetStream current, or ctx ends. It
// says every few seconds what it waits for. A server that refuses
// latch's system user (another operator, say) fails at once.
func (r *Remote) WaitReady(ctx context.Context) error {
	var authErr atomic.Value
	nc, err := r.Connect(r.cfg.System, nats.Name("latch-system"),
		nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if authError(err) {
				authErr.Store(err)
			}
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil && !r.stopping.Load() {
				r.log.Warn("the NATS servers are out of reach; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { r.log.Info("reached the NATS servers again", "server", nc.ConnectedUrlRedacted()) }),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if r.stopping.Load() {
				return
			}
			r.failErr = fmt.Errorf("the system connection to the NATS servers closed: %v", nc.LastError())
			if authError(nc.LastError()) {
				r.failErr = r.refused(nc.LastError())
			}
			close(r.failed)
		}))
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	r.mu.Lock()
	r.sys = nc
	r.mu.Unlock()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	reported := time.Now()
	for {
		if e, ok := authErr.Load().(error); ok {
			return r.refused(e)
		}
		if nc.IsConnected() {
			if err := r.look(ctx); err == nil {
				r.ready.Store(true)
				r.log.Info(ReadyMessage, "servers", r.serverCount(), "connected_to", nc.ConnectedUrlRedacted())
				r.wg.Go(r.watch)
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.failed:
			return r.failErr
		case <-tick.C:
		}
		if time.Since(reported) >= progressEvery {
			reported = time.Now()
			r.log.Info("waiting for the NATS servers", "urls", strings.Join(r.cfg.URLs, ","), "status", r.Healthy())
		}
	}
}

func authError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked)
}

// refused says what to check when the servers refuse latch's system user.
func (r *Remote) refused(err error) error {
	return fmt.Errorf("the NATS servers at %s refuse latch's system user (%v): are they configured with `latch operator config` of this data folder, and is --system-creds a user of its system account?",
		strings.Join(r.cfg.URLs, ","), err)
}

// watch reads the servers' health again now and then, for Healthy.
func (r *Remote) watch() {
	t := time.NewTicker(remoteHealthEvery)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*remoteWait)
		if err := r.look(ctx); err != nil {
			r.log.Warn("the NATS servers are not healthy", "err", err)
		}
		cancel()
	}
}

// look asks every server for its health and keeps the answer.
func (r *Remote) look(ctx context.Context) error {
	opts := server.HealthzEventOptions{HealthzOptions: server.HealthzOptions{JSMetaOnly: true}}
	answers, err := pingAll[server.ServerAPIHealthzResponse](ctx, r.conn(), "HEALTHZ", opts, 0)
	var bad []string
	for _, a := range answers {
		switch {
		case a.Server == nil:
		case a.Error != nil:
			bad = append(bad, a.Server.Name+": "+a.Error.Description)
		case a.Data == nil || a.Data.Status != "ok":
			what := "no answer"
			if a.Data != nil {
				what = a.Data.Error
			}
			bad = append(bad, a.Server.Name+": "+what)
		}
	}
	switch {
	case err != nil:
	case len(answers) == 0:
		err = errors.New("no NATS server answered")
	case len(bad) > 0:
		err = fmt.Errorf("nats: %s", strings.Join(bad, "; "))
	}
	r.mu.Lock()
	r.health = err
	if len(answers) > 0 {
		r.servers = len(answers)
	}
	r.mu.Unlock()
	return err
}

func (r *Remote) conn() *nats.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sys
}

func (r *Remote) serverCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.servers
}

// SystemConn is the system-account connection, nil before WaitReady.
func (r *Remote) SystemConn() *nats.Conn { return r.conn() }

// pingAll asks every server $SYS.REQ.SERVER.PING.<what> and returns the
// answers that come within remoteWait, or as soon as want have come (0:
// wait the whole time).
func pingAll[T any](ctx context.Context, nc *nats.Conn, what string, req any, want int) ([]T, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	raw, err := gather(ctx, nc, "$SYS.REQ.SERVER.PING."+what, body, want)
	var out []T
	for _, b := range raw {
		var v T
		if json.Unmarshal(b, &v) == nil {
			out = append(out, v)
		}
	}
	return out, err
}

// gather publishes a request on subj and returns the answers of every
// server that answers it within remoteWait, or as soon as want have come.
func gather(ctx context.Context, nc *nats.Conn, subj string, body []byte, want int) ([][]byte, error) {
	if nc == nil {
		return nil, errors.New("not connected to the NATS servers")
	}
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subj, inbox, body); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, remoteWait)
	defer cancel()
	var out [][]byte
	for want <= 0 || len(out) < want {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			break
		}
		out = append(out, m.Data)
	}
	return out, nil
}

// Healthy reports nil when latch reaches the servers and the last look at
// them found every one healthy.
func (r *Remote) Healthy() error {
	select {
	case <-r.failed:
		return r.failErr
	default:
	}
	if r.stopping.Load() {
		return errors.New("nats: latch is stopping")
	}
	nc := r.conn()
	if nc == nil || !nc.IsConnected() {
		return errors.New("nats: the NATS servers are out of reach")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.health
}

// Failed is closed when the system connection closes for good.
func (r *Remote) Failed() <-chan struct{} { return r.failed }

// Err is why the system connection closed, or nil.
func (r *Remote) Err() error {
	select {
	case <-r.failed:
		return r.failErr
	default:
		return nil
	}
}

// ClientURL is the server the system connection is on, or the first URL.
func (r *Remote) ClientURL() string {
	if nc := r.conn(); nc != nil {
		if u := nc.ConnectedUrlRedacted(); u != "" {
			return u
		}
	}
	return r.cfg.URLs[0]
}

// URLs are the servers' URLs latch was given.
func (r *Remote) URLs() []string { return slices.Clone(r.cfg.URLs) }

// MonitorURL is empty: latch does not run the servers' monitoring.
func (r *Remote) MonitorURL() string { return "" }

// Shutdown closes latch's system connection; the servers run on.
func (r *Remote) Shutdown(context.Context) {
	if r.stopping.Swap(true) {
		return
	}
	close(r.stop)
	r.wg.Wait()
	if nc := r.conn(); nc != nil {
		nc.Close()
	}
}

// Disconnect closes every connection of a user of an account on every
// server (KICK), and returns how many it closed. The user may connect
// again: this is not a revocation.
func (r *Remote) Disconnect(account, user string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nc := r.conn()
	opts := server.ConnzEventOptions{ConnzOptions: server.ConnzOptions{Account: account, User: user, State: server.ConnOpen, Limit: 1 << 16}}
	answers, err := pingAll[server.ServerAPIConnzResponse](ctx, nc, "CONNZ", opts, r.serverCount())
	if err != nil {
		return 0, err
	}
	n := 0
	for _, a := range answers {
		if a.Server == nil || a.Data == nil {
			continue
		}
		for _, c := range a.Data.Conns {
			req, _ := json.Marshal(server.KickClientReq{CID: c.Cid})
			m, err := nc.RequestWithContext(ctx, fmt.Sprintf("$SYS.REQ.SERVER.%s.KICK", a.Server.ID), req)
			if err != nil {
				return n, fmt.Errorf("disconnect on %s: %w", a.Server.Name, err)
			}
			var res server.ServerAPIResponse
			if json.Unmarshal(m.Data, &res) == nil && res.Error == nil {
				n++
			}
		}
	}
	return n, nil
}

// StoredAccounts counts the accounts of the resolver
// ($SYS.REQ.CLAIMS.LIST).
func (r *Remote) StoredAccounts() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := NewClaims(r.conn(), 10*time.Second).List(ctx)
	return len(l), err
}

// StoredJWT is the JWT of an account the servers hold, "" when one of
// them holds none. When they differ it is the oldest (the smallest iat):
// what the server furthest behind enforces, so that a comparison with
// latch's record finds it.
func (r *Remote) StoredJWT(account string) (string, error) {
	if !nkeys.IsValidPublicAccountKey(account) {
		return "", fmt.Errorf("%q is not an account public key", account)
	}
	ctx, cancel := context.WithTimeout(context.Background(), remoteWait)
	defer cancel()
	answers, err := gather(ctx, r.conn(), fmt.Sprintf(subjLookup, account), nil, r.serverCount())
	if err != nil {
		return "", err
	}
	if len(answers) == 0 {
		return "", fmt.Errorf("look up %s: no NATS server answered", account)
	}
	oldest, at := "", int64(0)
	for _, a := range answers {
		tok := string(a)
		if tok == "" {
			return "", nil
		}
		c, err := jwt.DecodeAccountClaims(tok)
		if err != nil {
			return "", fmt.Errorf("look up %s: a server holds a JWT that does not decode: %w", account, err)
		}
		if oldest == "" || c.IssuedAt < at {
			oldest, at = tok, c.IssuedAt
		}
	}
	return oldest, nil
}

// Stats sums up the servers' STATSZ.
func (r *Remote) Stats() Stats {
	st := Stats{JetStream: "ok"}
	if err := r.Healthy(); err != nil {
		st.JetStream = err.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), remoteWait)
	defer cancel()
	answers, _ := pingAll[server.ServerStatsMsg](ctx, r.conn(), "STATSZ", server.StatszEventOptions{}, r.serverCount())
	var names []string
	for _, a := range answers {
		names = append(names, a.Server.Name)
		st.Version = a.Server.Version
		st.Connections += a.Stats.Connections
		if up := time.Since(a.Stats.Start); st.Uptime == 0 || up < st.Uptime {
			st.Uptime = up
		}
		if js := a.Stats.JetStream; js != nil && js.Stats != nil {
			st.StorageUsed += js.Stats.Store
			st.MemoryUsed += js.Stats.Memory
		}
	}
	slices.Sort(names)
	st.Name = strings.Join(names, ", ")
	return st
}

// Meta reads the JetStream meta group from the server that leads it.
func (r *Remote) Meta() Meta {
	ctx, cancel := context.WithTimeout(context.Background(), remoteWait)
	defer cancel()
	answers, _ := pingAll[server.ServerAPIJszResponse](ctx, r.conn(), "JSZ", server.JszEventOptions{}, r.serverCount())
	var m Meta
	for _, a := range answers {
		if a.Server == nil || a.Data == nil || a.Data.Meta == nil {
			continue
		}
		mi := a.Data.Meta
		if m.Leader != "" && mi.Leader != a.Server.Name {
			continue // the leader's view, when it answered
		}
		m = Meta{Leader: mi.Leader, Peers: []Peer{{Name: a.Server.Name, Current: true}}}
		for _, p := range mi.Replicas {
			m.Peers = append(m.Peers, Peer{Name: p.Name, Current: p.Current, Offline: p.Offline, Active: p.Active})
		}
		if mi.Leader == a.Server.Name {
			break
		}
	}
	slices.SortFunc(m.Peers, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	return m
}
