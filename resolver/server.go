// Package resolver runs the embedded nats-server in operator mode with the
// built-in full account resolver, and speaks the resolver's system-account
// protocol ($SYS.REQ.CLAIMS.*) to push, look up, list and delete account
// JWTs. It is the only package besides cmd that imports nats-server.
package resolver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Config describes the embedded server.
type Config struct {
	// Name is the server's name in the NATS cluster and in its logs.
	Name string
	// DataDir holds the resolver's JWT folder (DataDir/resolver) and the
	// JetStream store (DataDir/jetstream).
	DataDir string
	// Listen is the client address, host:port; port 0 picks a free one.
	Listen string
	// Monitor is the monitoring address (/healthz, /varz, /connz); empty
	// turns monitoring off.
	Monitor string
	// TLS, when set, is the only way in on Listen and on Monitor (https).
	// Latch's own in-process connections need none. With ClientAuth
	// RequireAndVerifyClientCert, every client shows a certificate.
	TLS *tls.Config
	// BehindTLSProxy says NATS clients reach Listen through a proxy that
	// ends their TLS before the NATS protocol starts (fly.io's tls
	// handler): the clients do the TLS handshake first, with the proxy,
	// and the server gets plain text. The server then takes plain text on
	// Listen and tells clients TLS is available (tls_available), without
	// which nats.go, natscli and nats.js refuse a tls:// server. With TLS
	// it takes TLS too; without, it has a throwaway certificate of its own
	// that no client is meant to trust. Monitor stays as TLS says.
	BehindTLSProxy bool
	// OperatorJWT is the signed operator JWT the server trusts.
	OperatorJWT string
	// SystemAccount is the public key of the system account.
	SystemAccount string
	// Preload holds account JWTs (public key → JWT) stored in the resolver
	// before the server starts, so the system and app accounts are there
	// from the first moment. A stored JWT with a newer iat is kept.
	Preload map[string]string
	// JetStreamKey encrypts everything JetStream writes (ChaCha20-Poly1305).
	JetStreamKey string
	// JetStreamPrevKey is the key JetStream was encrypted with before
	// JetStreamKey, during a key rotation: the server reads what it finds
	// under the old key and writes it again under the new one as it loads
	// each stream and consumer at start. Empty outside a rotation.
	JetStreamPrevKey string
	// MaxStore and MaxMemory are the JetStream limits of the whole server.
	// A standalone server refuses JetStream to an account once the sum of
	// all accounts' quotas passes them, so they are set far above what the
	// disk holds: quotas are promises, and real disk use is watched apart.
	MaxStore, MaxMemory int64
	// LameDuck is how long a shutdown spends moving clients off the server.
	LameDuck time.Duration
	// SyncInterval is how often the resolver compares its JWTs with its
	// cluster peers.
	SyncInterval time.Duration
	// StallTimeout is how long a start may go without a word from the
	// server before it is given up on; DefaultStall when 0. A start that
	// makes progress is never given up on, however long it takes.
	StallTimeout time.Duration
	// Cluster makes the server a node of a NATS cluster of latch nodes;
	// its zero value leaves it standalone.
	Cluster Cluster
	// ClientAdvertise is the client address (host:port) the server tells
	// clients to connect and reconnect to, in place of its own.
	ClientAdvertise string
	// Log receives the server's log lines.
	Log *slog.Logger
}

// Cluster is a server's part in a NATS cluster: routes to its peers,
// authenticated with the deployment's secret, and a region that JetStream
// places each stream's replicas apart by.
type Cluster struct {
	// Listen is the route listener, host:port; empty leaves the server
	// standalone. Port 0 picks a free one.
	Listen string
	// Name is the cluster's name; every node of it has the same.
	Name string
	// Routes are the peers, host:port or nats-route://host:port. A name is
	// passed through to nats-server, which resolves it again on every
	// attempt: a peer that moves to another address is found again. A
	// node may list itself; nats-server skips its own address.
	Routes []string
	// Secret is shown on every route and asked of every peer: whoever
	// reaches the route port without it cannot join.
	Secret string
	// Advertise is the route address peers are told to use, when the
	// listener's own is not reachable from them.
	Advertise string
	// Region tags the server region:<Region>; JetStream then puts the
	// replicas of a stream on servers of different regions.
	Region string
}

// RouteUser is the user every route authenticates as, with the
// deployment's secret as its password.
const RouteUser = "latch-route"

// routeURLs makes the peers' route URLs, each with the route credentials.
func (c Cluster) routeURLs() ([]*url.URL, error) {
	var urls []*url.URL
	for _, r := range c.Routes {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		if !strings.Contains(r, "://") {
			r = "nats-route://" + r
		}
		u, err := url.Parse(r)
		if err != nil || u.Host == "" || u.Port() == "" {
			return nil, fmt.Errorf("route %q: want host:port or nats-route://host:port", r)
		}
		if u.Scheme != "nats-route" && u.Scheme != "nats" {
			return nil, fmt.Errorf("route %q: want nats-route://host:port", r)
		}
		u.User = url.UserPassword(RouteUser, c.Secret)
		urls = append(urls, u)
	}
	return urls, nil
}

// Server is a running embedded nats-server.
type Server struct {
	ns     *server.Server
	log    *slog.Logger
	st     *startup
	jwtDir string // the full resolver's folder
	stall  time.Duration
	tls    bool // client and monitoring ports speak TLS
	plain  bool // the client port takes plain text (BehindTLSProxy)
}

// ProxyPingInterval is how often the server pings each client behind a
// TLS proxy (Config.BehindTLSProxy).
const ProxyPingInterval = 30 * time.Second

// DefaultSyncInterval is how often the full resolver compares its JWTs
// with its peers, in latch and in the configuration WriteConfig writes.
const DefaultSyncInterval = 2 * time.Minute

// DefaultStall is how long a start may go without a word from nats-server
// before latch gives up on it.
const DefaultStall = 10 * time.Minute

// progressEvery is how often a start that is still recovering says how
// far it is.
const progressEvery = 5 * time.Second

// Start starts the server and returns once it accepts connections and
// JetStream is healthy (Launch, then WaitReady), or with an error saying
// what failed.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	s, err := Launch(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.WaitReady(ctx); err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(sctx)
		return nil, err
	}
	return s, nil
}

// Launch starts the server and returns at once; WaitReady waits for it.
// Until then Healthy says how far the start is. The client and monitor
// addresses are tried first, so a port another process holds fails here
// with a *ListenError rather than after JetStream's recovery.
func Launch(cfg Config) (*Server, error) {
	opts, err := options(cfg)
	if err != nil {
		return nil, err
	}
	if err := TryListen("client", cfg.Listen); err != nil {
		return nil, err
	}
	if cfg.Monitor != "" {
		if err := TryListen("monitor", cfg.Monitor); err != nil {
			return nil, err
		}
	}
	if cfg.Cluster.Listen != "" {
		if err := TryListen("route", cfg.Cluster.Listen); err != nil {
			return nil, err
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		ns: ns, log: log, stall: cfg.StallTimeout, tls: cfg.TLS != nil, plain: cfg.BehindTLSProxy,
		jwtDir: filepath.Join(cfg.DataDir, "resolver"),
		st:     newStartup(filepath.Join(cfg.DataDir, "jetstream"), cfg.Listen, cfg.Monitor),
	}
	if s.stall <= 0 {
		s.stall = DefaultStall
	}
	ns.SetLoggerV2(logAdapter{log: log.With("component", "nats"), st: s.st}, false, false, false)
	go ns.Start()
	return s, nil
}

func options(cfg Config) (*server.Options, error) {
	op, err := jwt.DecodeOperatorClaims(cfg.OperatorJWT)
	if err != nil {
		return nil, fmt.Errorf("operator JWT: %w", err)
	}
	host, port, err := splitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("nats address %q: %w", cfg.Listen, err)
	}
	// Checked before the resolver is made, which would be left open.
	if cfg.JetStreamKey == "" {
		return nil, errors.New("no JetStream encryption key: latch never stores data unencrypted")
	}
	interval := cfg.SyncInterval
	if interval == 0 {
		interval = DefaultSyncInterval
	}
	// Deleted accounts are removed outright: a file renamed to .deleted
	// would still be served to a peer that asks for it.
	res, err := server.NewDirAccResolver(filepath.Join(cfg.DataDir, "resolver"), 0, interval, server.HardDelete)
	if err != nil {
		return nil, fmt.Errorf("resolver: %w", err)
	}
	for pub, tok := range cfg.Preload {
		// Store keeps a newer JWT already on disk (saveIfNewer).
		if err := res.Store(pub, tok); err != nil {
			res.Close()
			return nil, fmt.Errorf("resolver: preload %s: %w", pub, err)
		}
	}
	opts := &server.Options{
		ServerName:         cfg.Name,
		Host:               host,
		Port:               port,
		NoSigs:             true, // latch owns signals and shuts the server down itself
		JetStream:          true,
		StoreDir:           cfg.DataDir, // JetStream writes under StoreDir/jetstream
		JetStreamMaxStore:  cfg.MaxStore,
		JetStreamMaxMemory: cfg.MaxMemory,
		JetStreamKey:       cfg.JetStreamKey,
		JetStreamOldKey:    cfg.JetStreamPrevKey,
		JetStreamCipher:    server.ChaCha,
		TrustedOperators:   []*jwt.OperatorClaims{op},
		SystemAccount:      cfg.SystemAccount,
		AccountResolver:    res,
		LameDuckDuration:   cfg.LameDuck,
		// The grace period must be shorter than the lame-duck duration.
		LameDuckGracePeriod:    cfg.LameDuck / 2,
		DisableJetStreamBanner: true,
	}
	if cfg.LameDuck <= 0 {
		opts.LameDuckDuration = 5 * time.Second
		opts.LameDuckGracePeriod = time.Second
	}
	if cfg.Monitor != "" {
		mh, mp, err := splitHostPort(cfg.Monitor)
		if err != nil {
			return nil, fmt.Errorf("monitor address %q: %w", cfg.Monitor, err)
		}
		if mp == 0 {
			mp = -1
		}
		opts.HTTPHost, opts.HTTPPort = mh, mp
		if cfg.TLS != nil {
			opts.HTTPPort, opts.HTTPSPort = 0, mp
		}
	}
	if cfg.TLS != nil {
		opts.TLS, opts.TLSConfig, opts.TLSTimeout = true, cfg.TLS, 2
		opts.TLSVerify = cfg.TLS.ClientAuth == tls.RequireAndVerifyClientCert
	}
	if cfg.BehindTLSProxy {
		if cfg.TLS != nil && opts.TLSVerify {
			res.Close()
			return nil, errors.New("client certificates cannot be asked for behind a proxy that ends TLS")
		}
		if opts.TLSConfig == nil {
			c, err := throwawayTLS()
			if err != nil {
				res.Close()
				return nil, err
			}
			opts.TLS, opts.TLSConfig, opts.TLSTimeout = true, c, 2
		}
		opts.AllowNonTLS = true
		// A proxy may close a connection that has been quiet for a
		// minute; the server's pings keep every device's busier than that
		// (and find a dead one sooner than the default two minutes).
		opts.PingInterval = ProxyPingInterval
	}
	opts.ClientAdvertise = cfg.ClientAdvertise
	if err := clusterOptions(opts, cfg.Cluster); err != nil {
		res.Close()
		return nil, err
	}
	return opts, nil
}

// clusterOptions makes opts a node of the cluster c, when c has a route
// listener.
func clusterOptions(opts *server.Options, c Cluster) error {
	if c.Listen == "" {
		if len(c.Routes) > 0 || c.Region != "" {
			return errors.New("routes and a region need a route listener (--cluster HOST:PORT)")
		}
		return nil
	}
	if c.Secret == "" {
		return errors.New("a cluster needs the deployment's route secret")
	}
	if c.Name == "" || strings.ContainsAny(c.Name, " \t.*>") {
		return fmt.Errorf("cluster name %q: want a name without spaces, dots or wildcards", c.Name)
	}
	if opts.ServerName == "" {
		return errors.New("a node of a cluster needs a name of its own (--server-name)")
	}
	host, port, err := splitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("route address %q: %w", c.Listen, err)
	}
	routes, err := c.routeURLs()
	if err != nil {
		return err
	}
	opts.Cluster = server.ClusterOpts{
		Name: c.Name, Host: host, Port: port, Advertise: c.Advertise,
		Username: RouteUser, Password: c.Secret,
		Compression: server.CompressionOpts{Mode: server.CompressionS2Auto},
	}
	opts.Routes = routes
	if c.Region != "" {
		if strings.ContainsAny(c.Region, " \t:") {
			return fmt.Errorf("region %q: want a name without spaces or colons", c.Region)
		}
		opts.Tags = jwt.TagList{"region:" + c.Region}
		opts.JetStreamUniqueTag = "region"
	}
	return nil
}

// splitHostPort parses host:port; port 0 becomes -1, nats-server's "any".
func splitHostPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	if port == 0 {
		port = -1
	}
	return h, port, nil
}

// WaitReady waits for the listeners and then for JetStream: a server whose
// port is open but whose JetStream is still recovering cannot serve a KV.
// It waits as long as the server makes progress, logging how far it is
// every few seconds, and gives up when the server fails (a *ListenError
// for a port it cannot open), when the server has said nothing for the
// stall timeout (a *StallError), or when ctx ends.
func (s *Server) WaitReady(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	reported := time.Now()
	var listening time.Time
	for {
		if listening.IsZero() && s.ns.ReadyForConnections(time.Millisecond) {
			listening = time.Now()
		}
		var jsErr error
		if !listening.IsZero() {
			if jsErr = s.jetStreamHealthy(); jsErr == nil {
				s.st.ready.Store(true)
				s.log.Info(ReadyMessage, "took", time.Since(s.st.began).Round(time.Millisecond),
					"streams", s.st.restored.Load())
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.st.failed:
			return s.st.failErr
		case <-tick.C:
		}
		quiet := s.st.sinceLine()
		if !listening.IsZero() {
			quiet = min(quiet, time.Since(listening))
		}
		if quiet > s.stall {
			return &StallError{Quiet: quiet.Round(time.Second), Progress: s.st.String(), JetStream: jsErr}
		}
		if time.Since(reported) >= progressEvery {
			reported = time.Now()
			s.log.Info("nats is starting: " + s.st.String())
		}
	}
}

// StallError is a start that gave up because nats-server stopped making
// progress.
type StallError struct {
	Quiet     time.Duration
	Progress  string
	JetStream error // what JetStream's health check said, once listening
}

func (e *StallError) Error() string {
	msg := fmt.Sprintf("nats: the server made no progress for %s (%s)", e.Quiet, e.Progress)
	if e.JetStream != nil {
		msg += fmt.Sprintf("; JetStream: %v", e.JetStream)
	}
	return msg
}

// ListenError is a listener nats-server cannot open.
type ListenError struct {
	Listener string // "client", "monitor" or "route"
	Addr     string
	Err      error
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("nats: cannot listen for %s connections on %s: %v", e.Listener, e.Addr, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }

// TryListen opens and closes a listener on addr, so that a port held by
// another process is reported at once, as a *ListenError naming listener
// ("client", "monitor"). Port 0 always works.
func TryListen(listener, addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) {
			err = oe.Err
		}
		return &ListenError{Listener: listener, Addr: addr, Err: err}
	}
	return l.Close()
}

// Healthy reports nil when the server runs and JetStream is healthy.
// While the server starts it says how far the start is, without asking
// the server: a recovering server holds its own lock for long stretches.
func (s *Server) Healthy() error {
	select {
	case <-s.st.failed:
		return s.st.failErr
	default:
	}
	if s.st.stopping.Load() {
		return errors.New("nats is stopping")
	}
	if !s.st.ready.Load() {
		return errors.New("nats is starting: " + s.st.String())
	}
	return s.jetStreamHealthy()
}

func (s *Server) jetStreamHealthy() error {
	if !s.ns.Running() {
		return errors.New("nats is not running")
	}
	// Standalone, a server that listens serves JetStream (its recovery
	// is followed apart, from the log). A node of a cluster must also know
	// its meta leader and be current with it: until then a JetStream
	// request waits in vain.
	opts := &server.HealthzOptions{JSServerOnly: true}
	if s.ns.JetStreamIsClustered() {
		opts = &server.HealthzOptions{JSMetaOnly: true}
	}
	hs := s.ns.Healthz(opts)
	if hs.Status != "ok" {
		return fmt.Errorf("nats: %s", hs.Error)
	}
	return nil
}

// Failed is closed when the server gives up after it started (a listener
// that fails, say); Err then says why.
func (s *Server) Failed() <-chan struct{} { return s.st.failed }

// Err is why the server gave up, or nil.
func (s *Server) Err() error {
	select {
	case <-s.st.failed:
		return s.st.failErr
	default:
		return nil
	}
}

// ClientURL is the URL clients connect to: tls:// when the server speaks
// TLS, else nats://.
// Behind a TLS proxy it is nats://: the port itself takes plain text.
func (s *Server) ClientURL() string {
	u := s.ns.ClientURL()
	if s.plain {
		u = "nats://" + strings.TrimPrefix(u, "tls://")
	}
	return u
}

// MonitorURL is the http:// (or, with TLS, https://) URL of the
// monitoring port, or "" when off.
func (s *Server) MonitorURL() string {
	a := s.ns.MonitorAddr()
	if a == nil {
		return ""
	}
	if s.tls {
		return "https://" + a.String()
	}
	return "http://" + a.String()
}

// RouteAddr is the address of the route listener, or "" when the server
// is not a node of a cluster.
func (s *Server) RouteAddr() string {
	if a := s.ns.ClusterAddr(); a != nil {
		return a.String()
	}
	return ""
}

// Routes names the servers this one has a route to, sorted, each once.
func (s *Server) Routes() []string {
	rz, err := s.ns.Routez(nil)
	if err != nil {
		return nil
	}
	var names []string
	for _, r := range rz.Routes {
		if !slices.Contains(names, r.RemoteName) {
			names = append(names, r.RemoteName)
		}
	}
	slices.Sort(names)
	return names
}

// ReadyMessage is what the log says once nats-server is ready; for an
// embedded server, with the time it took since the start ("took").
const ReadyMessage = "nats is ready"

// Connect makes a client connection to the server in-process, not
// through TCP.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	return nats.Connect("", append(opts, nats.InProcessServer(s.ns))...)
}

// InProcessConn gives a client connection that does not go through TCP
// (nats.InProcessServer).
func (s *Server) InProcessConn() (net.Conn, error) { return s.ns.InProcessConn() }

// NumClients is the number of client connections.
func (s *Server) NumClients() int { return s.ns.NumClients() }

// Shutdown moves clients off in lame-duck mode, then stops the server,
// flushing JetStream to disk. It returns when the server has stopped or
// ctx ends, in which case the server is stopped at once. A server still
// starting has no clients to move: it stops at once, and what JetStream
// had not yet recovered is recovered whole on the next start.
func (s *Server) Shutdown(ctx context.Context) {
	s.st.stopping.Store(true)
	if !s.st.ready.Load() {
		s.log.Info("nats is stopping while starting: " + s.st.String())
		// JetStream stops with the server, so nothing more is written.
		// The server's own recovery loop is not told, though: it goes on
		// building the accounts left in its list (at thousands of persons
		// for minutes) until the process exits; what it logs from now on
		// is dropped.
		done := make(chan struct{})
		go func() {
			s.ns.Shutdown()
			s.ns.WaitForShutdown()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			s.log.Warn("nats did not stop in time")
		}
		s.st.stopped.Store(true)
		return
	}
	done := make(chan struct{})
	go func() {
		s.ns.LameDuckShutdown()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.ns.Shutdown()
	}
	s.ns.WaitForShutdown()
}

// Conns counts a user's open connections on this server. (Presence counts
// them from events, without asking the server.)
func (s *Server) Conns(account, user string) int {
	cz, err := s.ns.Connz(&server.ConnzOptions{Account: account, User: user, State: server.ConnOpen, Limit: 1 << 16})
	if err != nil {
		return 0
	}
	return len(cz.Conns)
}

// Disconnect closes every connection of a user of an account on this
// server, and returns how many it closed. The user may connect again:
// this is not a revocation.
func (s *Server) Disconnect(account, user string) (int, error) {
	cz, err := s.ns.Connz(&server.ConnzOptions{Account: account, User: user, State: server.ConnOpen, Limit: 1 << 16})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range cz.Conns {
		if err := s.ns.DisconnectClientByID(c.Cid); err == nil {
			n++
		}
	}
	return n, nil
}

// StoredAccounts counts the account JWTs in this server's resolver folder.
// It reads the folder rather than asking over $SYS.REQ.CLAIMS.LIST, whose
// answer at thousands of accounts holds the asking connection for seconds.
func (s *Server) StoredAccounts() (int, error) {
	fis, err := os.ReadDir(s.jwtDir)
	if err != nil {
		return 0, fmt.Errorf("resolver folder: %w", err)
	}
	n := 0
	for _, fi := range fis {
		if strings.HasSuffix(fi.Name(), ".jwt") {
			n++
		}
	}
	return n, nil
}

// Apply stores an account JWT in this server's own resolver when it is
// newer (a later iat) than the one there, and applies it at once to the
// account if it is loaded: revocations close connections, limits take
// effect. It reaches no other server: each node applies latch's record
// itself, in whatever order the JWTs arrive, and an older JWT never
// replaces a newer one (unlike $SYS.REQ.CLAIMS.UPDATE, which stores
// whatever it is sent, so that two pushes crossing on the routes could
// leave a server with the older).
func (s *Server) Apply(account, accountJWT string) error {
	ar := s.ns.AccountResolver()
	if ar == nil {
		return errors.New("the server has no account resolver")
	}
	return ar.Store(account, accountJWT)
}

// StoredJWT is the JWT of an account in this server's own resolver
// folder, "" when it holds none: what this node enforces, whatever its
// peers hold.
func (s *Server) StoredJWT(account string) (string, error) {
	if !nkeys.IsValidPublicAccountKey(account) {
		return "", fmt.Errorf("%q is not an account public key", account)
	}
	b, err := os.ReadFile(filepath.Join(s.jwtDir, account+".jwt"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	return string(b), err
}

// Stats is a summary of the server for status pages.
type Stats struct {
	Name, Version string
	Uptime        time.Duration
	Connections   int
	// JetStream is "ok" or what is wrong with it.
	JetStream               string
	StorageUsed, MemoryUsed uint64
}

// Stats reads the server's state.
func (s *Server) Stats() Stats {
	st := Stats{Name: s.ns.Name(), Version: server.VERSION, Connections: s.ns.NumClients(), JetStream: "ok"}
	if err := s.Healthy(); err != nil {
		st.JetStream = err.Error()
	}
	if v, err := s.ns.Varz(nil); err == nil {
		st.Uptime = time.Since(v.Start)
		if js := v.JetStream.Stats; js != nil {
			st.StorageUsed, st.MemoryUsed = js.Store, js.Memory
		}
	}
	return st
}
