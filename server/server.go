// Package server runs latch: the embedded nats-server with its full
// resolver, the account service with its admin and device services, and
// the web server, wired together. `latch serve` is Open, then Done; tests
// open one on port 0 and read its addresses back, as the cluster's tests
// will open three.
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/tlsfiles"
	"github.com/latch-dev/latch/operator"
	"github.com/latch-dev/latch/resolver"
	"github.com/latch-dev/latch/web"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// Config is what a latch server runs with; `latch serve`'s flags fill it.
type Config struct {
	// Data is the data folder; an empty or missing one is initialised.
	Data string
	// NATS, HTTP and Monitor are host:port addresses; port 0 picks a free
	// one (Addrs says which). An empty Monitor turns monitoring off.
	NATS, HTTP, Monitor string
	// Name is the NATS server's name.
	Name string
	// PublicURL is where people reach the web GUI; default
	// http(s)://localhost:<the HTTP port>.
	PublicURL     string
	Signup        string
	TrustProxy    bool
	DeviceServers []string // default the NATS client URL
	Limits        accounts.Limits
	DeviceTTL     time.Duration
	// MaxStore and MaxMemory are what JetStream hands out in quotas.
	MaxStore, MaxMemory  int64
	LameDuck, StartStall time.Duration
	// TLSCert and TLSKey turn TLS on for NATS, monitoring and HTTP;
	// TLSCA requires NATS client certificates of that CA.
	TLSCert, TLSKey, TLSCA string
	// NATSBehindTLSProxy says NATS clients come through a proxy that ends
	// their TLS before the NATS protocol (fly.io's tls handler), at
	// ClientAdvertise: the client port takes the proxy's plain text and
	// says TLS is available, and devices are told to connect to tls://
	// ClientAdvertise with the TLS handshake first.
	NATSBehindTLSProxy bool
	Version            string
	// Getenv reads LATCH_JETSTREAM_KEY and LATCH_JETSTREAM_PREV_KEY; nil
	// is os.Getenv.
	Getenv func(string) string
	Log    *slog.Logger
	// SetupLink is told the one-time setup link when one is made (ok
	// true), or that none is needed (ok false), once the server is ready.
	SetupLink func(link string, ok bool)
	// HangupReloads reads the TLS files again on SIGHUP.
	HangupReloads bool
	// Identity makes an empty or missing Data folder a node of the
	// identity's deployment instead of a new one; a folder of another
	// deployment is refused.
	Identity *operator.Identity
	// Cluster is this node's part in a cluster of latch nodes; its zero
	// value runs the node alone.
	Cluster Cluster
	// ClientAdvertise is the NATS address (host:port) clients are told
	// to connect and reconnect to instead of this node's own.
	ClientAdvertise string
	// Replicas of latch's streams and of each person's records: 0 is 1
	// alone and 3 in a cluster.
	Replicas int
	// External, when it names servers, is a nats-server cluster latch
	// uses instead of an embedded server.
	External External
	// NoRecordsHistory is accounts.Config's: persons get no records
	// history.
	NoRecordsHistory bool
}

// External is a nats-server cluster that latch does not run, configured
// with `latch operator config` of latch's data folder: latch's operator,
// its system account, the full resolver, JetStream.
type External struct {
	// URLs are the servers' client URLs.
	URLs []string
	// SystemCreds is a creds file of a user of latch's system account;
	// empty, latch makes its own user from its keys.
	SystemCreds string
	// CA is a PEM file of the CA the servers' TLS certificates chain to;
	// empty, the system's.
	CA string
}

// Cluster is a node's part in a cluster of latch nodes.
type Cluster struct {
	// Listen is the route listener, host:port; empty runs the node alone.
	Listen string
	// Name is the cluster's name; default the operator's.
	Name string
	// Routes are the peers' route addresses, names resolved on every try.
	Routes []string
	// Region is where the node runs; each replica of a stream goes to
	// another region.
	Region string
	// Advertise is the route address peers are told, when Listen's is not
	// theirs to reach.
	Advertise string
}

// ConfigError is a configuration the server cannot run with; nothing was
// written.
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

// CheckedMessage is what the log says once latch's checks of every
// account after a start (Refresh) are done, with their time ("took").
const CheckedMessage = "every account checked against today's latch"

// Addrs are where a running server listens.
type Addrs struct {
	NATS    string // the client URL, nats:// or tls://
	HTTP    string // the web server's URL, http:// or https://
	Monitor string // "" when off
	Web     string // the public URL
}

// Server is a running latch.
type Server struct {
	cfg Config
	log *slog.Logger
	op  *operator.Tree
	ns  natsNode
	// embedded is the embedded server, nil when latch uses an external
	// cluster.
	embedded *resolver.Server
	// movingIn says the node ran alone and its JetStream data, set
	// aside, moves into the cluster at this start.
	movingIn bool
	jsKey    string
	hl       net.Listener
	hs       *http.Server
	certs    *tlsfiles.Files

	ready atomic.Bool
	gui   atomic.Pointer[web.Server]
	own   atomic.Pointer[ownConns]

	readyc    chan struct{}
	stop      chan struct{}
	stopOnce  sync.Once
	done      chan struct{}
	err       error
	wg        sync.WaitGroup // every goroutine the server starts
	httpURL   string
	stopHTTP  sync.Once
	bgCtx     context.Context
	bgCancel  context.CancelFunc
	serveErrs chan error
}

// natsNode is the NATS latch serves on: the embedded server
// (*resolver.Server), or a cluster it does not run (*resolver.Remote).
type natsNode interface {
	WaitReady(context.Context) error
	Healthy() error
	Failed() <-chan struct{}
	Err() error
	ClientURL() string
	MonitorURL() string
	Shutdown(context.Context)
	Connect(opts ...nats.Option) (*nats.Conn, error)
	Disconnect(account, user string) (int, error)
	StoredAccounts() (int, error)
	StoredJWT(account string) (string, error)
	Stats() resolver.Stats
	Meta() resolver.Meta
}

// Open checks the configuration and the data folder (initialising an
// empty one), opens the ports and starts nats-server, and returns: the web
// port answers /healthz at once, 503 with how far the start is until
// everything is ready (Ready), then 200. A start with thousands of persons
// spends minutes recovering JetStream. The server stops when ctx ends or
// on Close; Done says when, Err why.
func Open(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Getenv == nil {
		cfg.Getenv = os.Getenv
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch {
	case (cfg.TLSCert == "") != (cfg.TLSKey == ""):
		return nil, &ConfigError{"--tls-cert and --tls-key go together"}
	case cfg.TLSCA != "" && cfg.TLSCert == "":
		return nil, &ConfigError{"--tls-ca needs --tls-cert and --tls-key"}
	case cfg.NATSBehindTLSProxy && cfg.ClientAdvertise == "":
		return nil, &ConfigError{"--nats-behind-tls-proxy needs --client-advertise: the proxy's public host:port, which devices are told to connect to"}
	case cfg.NATSBehindTLSProxy && cfg.TLSCA != "":
		return nil, &ConfigError{"--tls-ca cannot be used with --nats-behind-tls-proxy: client certificates end at the proxy"}
	case cfg.NATSBehindTLSProxy && len(cfg.External.URLs) > 0:
		return nil, &ConfigError{"--nats-behind-tls-proxy is the embedded server's; with --nats-external, configure the NATS servers' TLS apart"}
	}
	// A port in use fails before anything is written, a new data folder
	// included.
	for _, l := range []struct{ name, addr string }{{"client", cfg.NATS}, {"monitor", cfg.Monitor}} {
		if l.addr == "" || len(cfg.External.URLs) > 0 {
			continue
		}
		if err := resolver.TryListen(l.name, l.addr); err != nil {
			return nil, ListenError(err)
		}
	}
	hl, err := net.Listen("tcp", cfg.HTTP)
	if err != nil {
		return nil, fmt.Errorf("http: cannot listen on %s (--http): %w", cfg.HTTP, unwrapOp(err))
	}
	s := &Server{cfg: cfg, log: log, hl: hl, readyc: make(chan struct{}), stop: make(chan struct{}),
		done: make(chan struct{}), serveErrs: make(chan error, 1)}
	if err := s.open(); err != nil {
		hl.Close()
		return nil, err
	}
	s.bgCtx, s.bgCancel = context.WithCancel(context.Background())
	s.hs = &http.Server{Handler: s.handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		// Its complaints (a TLS handshake that failed, say) go to latch's
		// log, at debug: they are the clients' doing.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	s.wg.Go(func() {
		if err := s.hs.Serve(s.hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.serveErrs <- fmt.Errorf("http: %w", err)
		}
	})
	if s.certs != nil {
		s.wg.Go(func() { s.certs.Watch(s.bgCtx, 10*time.Second, log) })
		if cfg.HangupReloads {
			s.wg.Go(func() { reloadOnHangup(s.bgCtx, s.certs, log) })
		}
	}
	go func() {
		s.err = s.run(ctx)
		s.bgCancel()
		s.stopWeb()
		s.wg.Wait()
		close(s.done)
	}()
	return s, nil
}

// open reads the data folder, upgrading it, and starts nats-server.
func (s *Server) open() error {
	cfg, log := s.cfg, s.log
	var natsTLS *tls.Config
	if cfg.TLSCert != "" {
		var err error
		if s.certs, err = tlsfiles.Load(cfg.TLSCert, cfg.TLSKey, cfg.TLSCA); err != nil {
			return fmt.Errorf("%w (--tls-cert, --tls-key, --tls-ca)", err)
		}
		s.hl = tls.NewListener(s.hl, s.certs.HTTPS())
		natsTLS = s.certs.NATS()
	} else {
		warnPlain(log, cfg)
	}
	scheme := "http"
	if s.certs != nil {
		scheme = "https"
	}
	port := s.hl.Addr().(*net.TCPAddr).Port
	s.httpURL = fmt.Sprintf("%s://%s", scheme, s.hl.Addr())
	if s.cfg.PublicURL == "" {
		s.cfg.PublicURL = fmt.Sprintf("%s://localhost:%d", scheme, port)
	}
	s.cfg.PublicURL = strings.TrimSuffix(s.cfg.PublicURL, "/")
	if u, err := url.Parse(s.cfg.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return &ConfigError{fmt.Sprintf("--public-url %q: want http(s)://host[:port]", s.cfg.PublicURL)}
	}

	op, err := operator.Load(cfg.Data)
	switch {
	case errors.Is(err, operator.ErrNotInitialised) && cfg.Identity != nil:
		if op, err = operator.Join(cfg.Data, cfg.Identity); err != nil {
			return err
		}
		log.Info("made the data folder a node of the identity's deployment", "data", cfg.Data, "deployment", op.Name, "operator", op.Operator)
	case errors.Is(err, operator.ErrNotInitialised):
		if op, err = operator.Init(cfg.Data, "latch"); err != nil {
			return err
		}
		log.Info("initialised a new data folder", "data", cfg.Data, "operator", op.Operator)
	case err != nil:
		return err
	case cfg.Identity != nil:
		if err := op.CheckIdentity(cfg.Identity, cfg.Getenv); err != nil {
			return &ConfigError{err.Error()}
		}
		// A node made from an identity of before releases takes the
		// release key from a newer one.
		if changed, err := op.AdoptReleaseKey(cfg.Identity); err != nil {
			return &ConfigError{err.Error()}
		} else if changed {
			log.Info("took the deployment's release signing key from the identity", "release_key", op.ReleaseKey)
		}
	}
	// A folder made before LATCH_ADMIN existed had admin.creds in LATCH
	// itself, where it could read the server's own traffic.
	if changed, err := op.UpgradeAdminAccount(); err != nil {
		return fmt.Errorf("move admin creds to LATCH_ADMIN: %w", err)
	} else if changed {
		log.Warn("admin creds moved to their own account, LATCH_ADMIN: the old admin.creds no longer works; "+
			"a new one replaces it, and `latch admin creds issue` makes one for each admin",
			"admin_creds", filepath.Join(cfg.Data, operator.AdminCredsFile))
	}
	if changed, err := op.UpgradeReleaseKey(); err != nil {
		return fmt.Errorf("make a release signing key: %w", err)
	} else if changed {
		log.Info("made a release signing key; nodes made from an earlier identity need a new one to publish releases", "release_key", op.ReleaseKey)
	}
	if changed, err := op.UpgradeAppExports(); err != nil {
		return fmt.Errorf("bring the LATCH account up to date: %w", err)
	} else if changed {
		log.Info("LATCH account re-signed with this version's exports")
	}
	// Every seed is read before NATS starts, so a damaged or exposed key
	// file stops the server with how to fix it.
	if err := op.CheckKeys(cfg.Getenv); err != nil {
		return err
	}
	jsKey, err := op.JetStreamKey(cfg.Getenv)
	if err != nil {
		return err
	}
	// During a key rotation the previous key reads what is still encrypted
	// with it; the server writes it again under the new key as it loads
	// (docs/security.md).
	jsPrevKey := strings.TrimSpace(cfg.Getenv("LATCH_JETSTREAM_PREV_KEY"))
	// After `latch operator signing-key add`, SYS and LATCH move to the
	// new key before the server starts.
	if changed, err := op.ResignOwnAccounts(); err != nil {
		return err
	} else if changed {
		log.Info("re-signed SYS and LATCH with the operator signing key in use", "key", op.SigningKey)
	}
	s.op = op
	if len(cfg.External.URLs) > 0 {
		return s.openExternal()
	}
	cluster, err := s.clusterConfig()
	if err != nil {
		return err
	}
	if cluster.Listen != "" && standaloneData(cfg.Data, op.SystemAccount.PublicKey) {
		// nats-server in a cluster would delete every stream its meta
		// group does not know (each person's records) as an orphan: the
		// store is set aside first, and moved in once the node has joined.
		if err := setAside(cfg.Data); err != nil {
			return fmt.Errorf("set aside the JetStream data of when the node ran alone: %w", err)
		}
		log.Info("this node ran alone: its JetStream data is set aside and moves into the cluster once the node has joined",
			"aside", filepath.Join(cfg.Data, standaloneDir))
	}
	if cluster.Listen != "" {
		if s.movingIn, err = movingIn(cfg.Data); err != nil {
			return fmt.Errorf("set aside the JetStream data of when the node ran alone: %w", err)
		}
	}
	s.jsKey = jsKey
	if s.certs != nil {
		log.Info("TLS on NATS, the monitoring port and HTTP", "cert", cfg.TLSCert,
			"expires", s.certs.NotAfter().UTC().Format(time.RFC3339), "client_certs", s.certs.VerifiesClients())
	}
	s.embedded, err = resolver.Launch(resolver.Config{
		TLS:              natsTLS,
		BehindTLSProxy:   cfg.NATSBehindTLSProxy,
		Name:             cfg.Name,
		DataDir:          cfg.Data,
		Listen:           cfg.NATS,
		Monitor:          cfg.Monitor,
		OperatorJWT:      op.OperatorJWT,
		SystemAccount:    op.SystemAccount.PublicKey,
		Preload:          op.Preload(),
		JetStreamKey:     jsKey,
		JetStreamPrevKey: jsPrevKey,
		MaxStore:         cfg.MaxStore,
		MaxMemory:        cfg.MaxMemory,
		LameDuck:         cfg.LameDuck,
		StallTimeout:     cfg.StartStall,
		Cluster:          cluster,
		ClientAdvertise:  cfg.ClientAdvertise,
		Log:              log,
	})
	if err != nil {
		return ListenError(err)
	}
	s.ns = s.embedded
	return nil
}

// openExternal makes the server use the external cluster of
// Config.External: no embedded server, no JetStream key of its own (the
// cluster's servers encrypt what they store, or not, by their config).
func (s *Server) openExternal() error {
	cfg := s.cfg
	switch {
	case cfg.Cluster.Listen != "" || len(cfg.Cluster.Routes) > 0 || cfg.Cluster.Region != "":
		return &ConfigError{"--nats-external uses NATS servers latch does not run: --cluster, --routes and --region are theirs to set, not latch's"}
	case cfg.ClientAdvertise != "":
		return &ConfigError{"--client-advertise is the embedded server's; with --nats-external, devices are given the external servers' URLs (or --device-servers)"}
	case cfg.TLSCA != "":
		return &ConfigError{"--tls-ca asks NATS clients of the embedded server for certificates; with --nats-external, that is the external servers' config"}
	case cfg.Replicas < 0 || cfg.Replicas > 5:
		return &ConfigError{fmt.Sprintf("--replicas %d: want 1 to 5 (3 for three regions)", cfg.Replicas)}
	}
	for i, u := range cfg.External.URLs {
		if !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		p, err := url.Parse(u)
		if err != nil || p.Port() == "" || !slices.Contains([]string{"nats", "tls"}, p.Scheme) {
			return &ConfigError{fmt.Sprintf("--nats-external %q: want host:port, nats://host:port or tls://host:port", cfg.External.URLs[i])}
		}
		s.cfg.External.URLs[i] = u
	}
	var opts []nats.Option
	if cfg.External.CA != "" {
		if _, err := os.Stat(cfg.External.CA); err != nil {
			return &ConfigError{fmt.Sprintf("--nats-external-ca: %v", err)}
		}
		opts = append(opts, nats.RootCAs(cfg.External.CA))
	}
	system, err := s.systemUser()
	if err != nil {
		return err
	}
	s.ns, err = resolver.NewRemote(resolver.RemoteConfig{URLs: cfg.External.URLs, System: system, Options: opts, Log: s.log})
	if err != nil {
		return &ConfigError{err.Error()}
	}
	return nil
}

// systemUser authenticates latch's connections to the system account: the
// creds file of Config.External, checked to be of latch's system account,
// or a user latch makes.
func (s *Server) systemUser() (nats.Option, error) {
	file := s.cfg.External.SystemCreds
	if file == "" {
		tok, seed, err := s.op.MintUser(s.op.SystemAccount, "latch-server")
		if err != nil {
			return nil, err
		}
		return nats.UserJWTAndSeed(tok, string(seed)), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, &ConfigError{fmt.Sprintf("--system-creds: %v", err)}
	}
	tok, err := jwt.ParseDecoratedJWT(b)
	if err != nil {
		return nil, &ConfigError{fmt.Sprintf("--system-creds %s: not a creds file: %v", file, err)}
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return nil, &ConfigError{fmt.Sprintf("--system-creds %s: not a user's creds: %v", file, err)}
	}
	issuer := uc.Issuer
	if uc.IssuerAccount != "" {
		issuer = uc.IssuerAccount
	}
	if issuer != s.op.SystemAccount.PublicKey {
		return nil, &ConfigError{fmt.Sprintf("--system-creds %s: a user of account %s, not of latch's system account %s (`latch operator show`)", file, issuer, s.op.SystemAccount.PublicKey)}
	}
	return nats.UserCredentials(file), nil
}

// standaloneData reports whether a data folder's JetStream holds streams
// made by a node alone: streams, and no JetStream meta group (which a node
// of a cluster keeps under the system account).
func standaloneData(data, sysAccount string) bool {
	js := filepath.Join(data, "jetstream")
	if _, err := os.Stat(filepath.Join(js, sysAccount, "_js_", "_meta_")); err == nil {
		return false
	}
	streams, _ := filepath.Glob(filepath.Join(js, "*", "streams", "*"))
	return len(streams) > 0
}

// clusterConfig is the embedded server's part in the cluster, with the
// deployment's route secret and the operator's name for a cluster with
// none given; it settles the number of replicas too.
func (s *Server) clusterConfig() (resolver.Cluster, error) {
	c := s.cfg.Cluster
	if c.Listen == "" {
		if len(c.Routes) > 0 || c.Region != "" || c.Advertise != "" {
			return resolver.Cluster{}, &ConfigError{"--routes, --region and --cluster-advertise need --cluster HOST:PORT, the route listener"}
		}
		if s.cfg.Replicas == 0 {
			s.cfg.Replicas = 1
		}
		if s.cfg.Replicas != 1 {
			return resolver.Cluster{}, &ConfigError{fmt.Sprintf("--replicas %d needs a cluster (--cluster); a node alone keeps one copy", s.cfg.Replicas)}
		}
		return resolver.Cluster{}, nil
	}
	if s.cfg.Replicas == 0 {
		s.cfg.Replicas = 3
	}
	if s.cfg.Replicas < 1 || s.cfg.Replicas > 5 {
		return resolver.Cluster{}, &ConfigError{fmt.Sprintf("--replicas %d: want 1 to 5 (3 for three regions)", s.cfg.Replicas)}
	}
	if s.cfg.Name == "" {
		return resolver.Cluster{}, &ConfigError{"a node of a cluster needs a name of its own (--server-name)"}
	}
	secret, err := s.op.RouteSecret()
	if err != nil {
		return resolver.Cluster{}, err
	}
	name := c.Name
	if name == "" {
		name = s.op.Name
	}
	return resolver.Cluster{Listen: c.Listen, Name: name, Routes: c.Routes, Secret: secret, Advertise: c.Advertise, Region: c.Region}, nil
}

// Ready is closed once the server serves everything.
func (s *Server) Ready() <-chan struct{} { return s.readyc }

// Done is closed once the server has stopped.
func (s *Server) Done() <-chan struct{} { return s.done }

// Err is why the server stopped, after Done: nil for a stop asked for.
func (s *Server) Err() error {
	<-s.done
	return s.err
}

// Close stops the server, lame duck first, and waits for it.
func (s *Server) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	return s.Err()
}

// Addrs are where the server listens; NATS's address is known once the
// server is ready.
func (s *Server) Addrs() Addrs {
	a := Addrs{HTTP: s.httpURL, Monitor: s.ns.MonitorURL(), Web: s.cfg.PublicURL}
	select {
	case <-s.readyc:
		a.NATS = s.ns.ClientURL()
	default:
	}
	return a
}

func (s *Server) stopWeb() {
	s.stopHTTP.Do(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.hs.Shutdown(sctx)
	})
}

// run waits for nats-server, starts the account service and the web, and
// serves until ctx ends, Close, or a failure.
func (s *Server) run(ctx context.Context) error {
	cfg, log, op, ns := s.cfg, s.log, s.op, s.ns
	defer func() {
		s.ready.Store(false)
		s.stopWeb() // the web stops first, while what its requests use still runs
		sctx, cancel := context.WithTimeout(context.Background(), cfg.LameDuck+10*time.Second)
		defer cancel()
		ns.Shutdown(sctx)
		log.Info("stopped")
	}()
	wctx, cancelWait := context.WithCancel(ctx)
	defer cancelWait()
	go func() {
		select {
		case <-s.stop:
			cancelWait()
		case <-wctx.Done():
		}
	}()
	if err := ns.WaitReady(wctx); err != nil {
		if wctx.Err() != nil {
			return nil // stopped while starting: a clean stop
		}
		return ListenError(err)
	}

	// Every connection of the server's own answers its requests on an
	// inbox of its own, outside _INBOX.>, which devices may subscribe to
	// in their person account.
	inbox := "_LATCH_INBOX." + nuid.Next()
	// In this process, a connection that is slow to be taken is a server
	// busy building the account (a new person's first connection), not a
	// server gone: it gets 10 s, not nats.go's 2 s (a bench at 15,000
	// persons saw the 2 s run out).
	dial := func(userJWT string, seed []byte) (*nats.Conn, error) {
		return ns.Connect(nats.UserJWTAndSeed(userJWT, string(seed)), nats.Name("latch"), nats.CustomInboxPrefix(inbox),
			nats.Timeout(10*time.Second))
	}
	external := s.embedded == nil
	if external && cfg.Replicas == 0 {
		// As many copies as the cluster has servers, three at most.
		s.cfg.Replicas = min(3, max(1, len(ns.Meta().Peers)))
		cfg.Replicas = s.cfg.Replicas
	}
	// The server's two long-lived connections (SYS and LATCH) reconnect
	// for ever; while one is away /healthz says so. nats-server may also
	// close one for good (a protocol error): latch then stops with the
	// reason, to be started afresh, rather than serve without it.
	own := &ownConns{lost: make(chan error, 1)}
	s.own.Store(own)
	connect := func(a operator.AccountJWT) (*nats.Conn, error) {
		user, err := s.systemUser()
		if a.PublicKey != op.SystemAccount.PublicKey {
			var tok string
			var seed []byte
			tok, seed, err = op.MintUser(a, "latch-server")
			user = nats.UserJWTAndSeed(tok, string(seed))
		}
		if err != nil {
			return nil, err
		}
		nc, err := ns.Connect(user, nats.Name("latch"), nats.CustomInboxPrefix(inbox),
			nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				log.Warn("latch's own NATS connection is away; reconnecting", "account", a.Name, "err", err)
			}),
			nats.ReconnectHandler(func(*nats.Conn) {
				log.Info("latch's own NATS connection is back", "account", a.Name)
			}),
			nats.ClosedHandler(func(nc *nats.Conn) { own.closed(a.Name, nc.LastError()) }))
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", a.Name, err)
		}
		own.add(a.Name, nc)
		return nc, nil
	}
	sysNC, err := connect(op.SystemAccount)
	if err != nil {
		return err
	}
	defer sysNC.Close()
	appNC, err := connect(op.AppAccount)
	if err != nil {
		return err
	}
	defer appNC.Close()
	// Registered after the closes, so it runs before them: the server
	// closing its own connections is no loss.
	defer own.stopping.Store(true)
	if external {
		// The servers preloaded latch's own accounts from their config;
		// latch may have re-signed them since (a new signing key, new
		// exports). A JWT no newer than theirs changes nothing.
		claims := resolver.NewClaims(sysNC, 10*time.Second)
		for pub, tok := range op.Preload() {
			if err := claims.Push(ctx, tok); err != nil {
				return fmt.Errorf("give the NATS servers latch's own account %s: %w", pub, err)
			}
		}
	}

	// A node that ran alone brings its streams in before the account
	// service opens latch's buckets (it would make them anew, empty).
	var mv *mover
	if s.movingIn {
		if mv, err = s.startMover(wctx, s.jsKey); err != nil {
			return err
		}
		defer mv.stop()
		n, err := mv.moveOwn(wctx, op, dial)
		if err != nil {
			return err
		}
		log.Info("moved latch's own streams into the cluster", "streams", n)
		if err := accounts.MarkMovingIn(wctx, appNC); err != nil {
			return fmt.Errorf("say that the node brings in its data: %w", err)
		}
	}

	var presence *resolver.Presence
	if external {
		presence, err = resolver.WatchRemotePresence(sysNC, log)
	} else {
		presence, err = resolver.WatchPresence(sysNC, s.embedded, log)
	}
	if err != nil {
		return fmt.Errorf("presence: %w", err)
	}
	defer presence.Close()

	signer, err := op.Signer()
	if err != nil {
		return err
	}
	adminSigner, err := op.AdminSigner()
	if err != nil {
		return err
	}
	// A node made from an identity of before releases has no release key:
	// it serves releases, and refuses to publish one.
	releaseSigner, err := op.ReleaseSigner()
	if err != nil && !errors.Is(err, operator.ErrNoReleaseKey) {
		return err
	}
	// The embedded server stores a JWT itself, only when it is newer
	// than its own; an external cluster is sent it ($SYS.REQ.CLAIMS.UPDATE).
	var apply func(account, accountJWT string) error
	if !external {
		apply = s.embedded.Apply
	}
	clustered := s.cfg.Cluster.Listen != "" || external
	svc, err := accounts.Open(wctx, accounts.Config{
		Connections:   connections{presence, ns},
		AdminAccount:  op.AdminAccount.PublicKey,
		AdminSigner:   adminSigner,
		AppAccount:    op.AppAccount.PublicKey,
		Signer:        signer,
		Directory:     resolver.NewClaims(sysNC, 10*time.Second),
		App:           appNC,
		Dial:          dial,
		Limits:        cfg.Limits,
		Replicas:      cfg.Replicas,
		Clustered:     clustered,
		DeviceTTL:     cfg.DeviceTTL,
		PublicURL:     cfg.PublicURL,
		Stored:        ns.StoredJWT,
		Apply:         apply,
		Node:          cfg.Name,
		External:      external,
		Joined:        op.Joined && s.cfg.Cluster.Listen != "",
		ReleaseSigner: releaseSigner,
		Log:           log,

		NoRecordsHistory: cfg.NoRecordsHistory,
	})
	if err != nil {
		if wctx.Err() != nil {
			return nil // stopped while starting: a clean stop
		}
		return fmt.Errorf("account service: %w", err)
	}
	if err := svc.RegisterFirstAdmin(ctx, op.FirstAdmin); err != nil {
		return err
	}
	if mv != nil {
		if err := s.movePersons(wctx, mv, svc); err != nil {
			return err
		}
	}
	if s.cfg.Cluster.Listen != "" {
		if err := svc.MarkOpened(wctx); err != nil {
			return err
		}
	}
	// Every JWT another node commits reaches this node's resolver from
	// the record; the follower starts before the catch-up, so that
	// nothing committed between the two is missed.
	if !external {
		following := make(chan struct{})
		s.wg.Go(func() { follow(s.bgCtx, svc, log, following) })
		select {
		case <-following:
		case <-ctx.Done():
			return nil
		}
	}
	// Before it serves, the node catches up with what changed while it
	// was down: deleted accounts deleted again, every account JWT as
	// latch's record has it. It then enforces every revocation.
	if err := svc.Reconcile(ctx); err != nil {
		return fmt.Errorf("reconcile deleted accounts: %w", err)
	}
	caught, err := svc.CatchUp(ctx)
	if err != nil {
		return fmt.Errorf("catch up with the record of account JWTs: %w", err)
	}
	if caught.Pushed > 0 || caught.Filled > 0 {
		log.Info("caught up with latch's record of account JWTs", "pushed", caught.Pushed, "recorded", caught.Filled)
	}
	// In a cluster a deleted account can come back: a peer that missed
	// the delete hands it on in the full resolvers' own sync. Every node
	// deletes such accounts again, now and then.
	if clustered {
		s.wg.Go(func() { reconcileEvery(s.bgCtx, svc, log, reconcileInterval) })
	}
	s.wg.Go(func() {
		began := time.Now()
		resigned, templated, err := svc.Refresh(s.bgCtx)
		if err != nil {
			log.Warn("bring accounts up to date", "err", err)
		}
		if resigned > 0 {
			log.Info("re-signed accounts with the operator signing key in use", "accounts", resigned, "key", op.SigningKey)
		}
		if templated > 0 {
			log.Info("gave person accounts today's device permissions", "accounts", templated)
		}
		// When the deployment's number of replicas changed (latch's own
		// buckets moved at open), every person's records follow. Not at
		// every start: it opens a connection into each person's account;
		// a move cut short is finished with `latch cluster rebalance`.
		if svc.ReplicasMoved() {
			r, err := svc.Rebalance(s.bgCtx)
			if err != nil && s.bgCtx.Err() == nil {
				log.Warn("give persons' records their replicas", "err", err)
			}
			if r.Moved > 0 || len(r.Failed) > 0 {
				log.Info("gave persons' records their replicas", "replicas", s.cfg.Replicas, "moved", r.Moved, "failed", len(r.Failed))
			}
		}
		if s.bgCtx.Err() == nil {
			log.Info(CheckedMessage, "took", time.Since(began).Round(time.Millisecond))
		}
	})
	admin, err := svc.ServeAdmin(appNC, cfg.Version)
	if err != nil {
		return fmt.Errorf("admin service: %w", err)
	}
	defer admin.Stop()
	deviceAPI, err := svc.ServeDeviceAPI(appNC, cfg.Version)
	if err != nil {
		return fmt.Errorf("device API: %w", err)
	}
	defer deviceAPI.Stop()
	// Every node says how it is, for `latch cluster status`.
	statusSub, err := appNC.Subscribe(accounts.NodeStatusSubject, func(m *nats.Msg) {
		b, _ := json.Marshal(s.nodeStatus(s.bgCtx, svc))
		m.Respond(b)
	})
	if err != nil {
		return fmt.Errorf("node status: %w", err)
	}
	defer statusSub.Unsubscribe()

	s.wg.Go(func() { recordLastSeen(s.bgCtx, presence, svc, log) })

	sessionSecret, err := svc.SharedSecret(ctx, "web-session")
	if err != nil {
		return fmt.Errorf("web session keys: %w", err)
	}
	servers := func() []string { return cfg.DeviceServers }
	if len(cfg.DeviceServers) == 0 {
		servers = func() []string { return s.deviceServers(appNC) }
	}
	g, err := web.New(web.Config{
		Name:          op.Name,
		Version:       cfg.Version,
		PublicURL:     cfg.PublicURL,
		Signup:        cfg.Signup,
		TrustProxy:    cfg.TrustProxy,
		Servers:       servers,
		TLSFirst:      cfg.NATSBehindTLSProxy,
		ReleaseKey:    op.ReleaseKey,
		SessionSecret: sessionSecret,
		Accounts:      svc,
		Presence:      webPresence{presence},
		Status:        serverStatus{ns: ns, svc: svc},
		Log:           log,
	})
	if err != nil {
		return &ConfigError{err.Error()}
	}
	s.hs.RegisterOnShutdown(g.CloseStreams) // live pages' streams would hold the shutdown up
	s.gui.Store(g)
	// While no admin can log in, a one-time link makes an admin; it is
	// there by the time /healthz says ok.
	if token, ok, err := svc.SetupInvite(ctx); err != nil {
		log.Warn("setup link", "err", err)
	} else if cfg.SetupLink != nil {
		cfg.SetupLink(cfg.PublicURL+"/setup/"+token, ok)
	}
	s.ready.Store(true)
	close(s.readyc)
	log.Info("latch is ready", "nats", ns.ClientURL(), "http", s.httpURL, "web", cfg.PublicURL,
		"monitor", ns.MonitorURL(), "data", cfg.Data, "pid", os.Getpid())

	select {
	case <-ctx.Done():
		log.Info("shutting down")
		return nil
	case <-s.stop:
		log.Info("shutting down")
		return nil
	case <-ns.Failed():
		return ListenError(ns.Err())
	case err := <-own.lost:
		log.Error("stopping: " + err.Error())
		return err
	case err := <-s.serveErrs:
		log.Error("stopping: " + err.Error())
		return err
	}
}

// handler answers /healthz from the first moment and hands everything
// else to the web once it exists.
func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if g := s.gui.Load(); g != nil {
			g.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Retry-After", "5")
		http.Error(w, "latch is starting; try again in a moment", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := s.ns.Healthy(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		if err := s.own.Load().healthy(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		if !s.ready.Load() {
			http.Error(w, "starting or stopping", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// deviceServers are the NATS URLs a device is given: this node's (or the
// address it advertises), and in a cluster every other node's the cluster
// has told latch's own connection of, so that a device whose node is
// down reaches another from the start.
func (s *Server) deviceServers(nc *nats.Conn) []string {
	own := s.ns.ClientURL()
	if a := s.cfg.ClientAdvertise; a != "" {
		scheme := "nats://"
		if s.certs != nil || s.cfg.NATSBehindTLSProxy {
			scheme = "tls://"
		}
		own = scheme + a
	}
	out := []string{own}
	if s.embedded == nil {
		out = slices.Clone(s.cfg.External.URLs)
	}
	// Nodes that advertise one public name (a proxy's) are one URL.
	hosts := map[string]bool{}
	for _, u := range out {
		hosts[hostPort(u)] = true
	}
	for _, u := range nc.DiscoveredServers() {
		if !hosts[hostPort(u)] {
			hosts[hostPort(u)] = true
			out = append(out, u)
		}
	}
	return out
}

// hostPort is a NATS URL's host:port.
func hostPort(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
	}
	return u
}

// nodeStatus is this node as it sees itself: its JetStream, the meta
// group, the replicas behind in the streams it leads, and the accounts
// whose JWT here is not latch's record.
func (s *Server) nodeStatus(ctx context.Context, svc *accounts.Service) accounts.NodeStatus {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n := accounts.NodeStatus{Name: s.cfg.Name, Region: s.cfg.Cluster.Region, Version: s.cfg.Version, JetStream: "ok"}
	if err := s.ns.Healthy(); err != nil {
		n.JetStream = err.Error()
	}
	meta := s.ns.Meta()
	n.MetaLeader = meta.Leader
	if s.embedded == nil {
		// Latch on an external cluster is none of its servers: it is as
		// current as they are, all of them. They are not latch nodes,
		// which cluster status expects to answer.
		n.Current = meta.Leader != ""
		for _, p := range meta.Peers {
			state := "current"
			switch {
			case p.Offline:
				state = "offline"
			case !p.Current:
				state = "behind"
			}
			n.Servers = append(n.Servers, p.Name+" "+state)
			n.Current = n.Current && state == "current"
		}
	} else {
		for _, p := range meta.Peers {
			n.Peers = append(n.Peers, p.Name)
			if p.Name == s.cfg.Name {
				n.Current = p.Current
			}
		}
	}
	var problems []string
	var err error
	if n.Lagging, err = svc.Lagging(ctx); err != nil {
		problems = append(problems, "streams: "+err.Error())
	}
	if n.Drift, err = svc.Drift(ctx); err != nil {
		problems = append(problems, "drift: "+err.Error())
	}
	n.Error = strings.Join(problems, "; ")
	return n
}

// reconcileInterval is how often a node deletes again the deleted
// accounts its resolver holds.
const reconcileInterval = 15 * time.Second

func reconcileEvery(ctx context.Context, svc *accounts.Service, log *slog.Logger, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := svc.Reconcile(ctx); err != nil && ctx.Err() == nil {
			log.Warn("reconcile deleted accounts", "err", err)
		}
	}
}

// follow keeps the node following latch's record of account JWTs until
// ctx ends, and closes following once it first does. After a failure it
// follows again and catches up with what was committed meanwhile.
func follow(ctx context.Context, svc *accounts.Service, log *slog.Logger, following chan<- struct{}) {
	var once sync.Once
	for again := false; ; again = true {
		err := svc.Follow(ctx, func() {
			once.Do(func() { close(following) })
			if !again {
				return // the first catch-up is the start's
			}
			// What the record took while the node did not follow; the
			// watch holds what comes meanwhile.
			if _, err := svc.CatchUp(ctx); err != nil && ctx.Err() == nil {
				log.Warn("catch up with the record of account JWTs", "err", err)
			}
		})
		if ctx.Err() != nil {
			return
		}
		log.Warn("following the record of account JWTs stopped; starting again", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// ListenError names the flag of a listener nats-server could not open;
// other errors pass as they are.
func ListenError(err error) error {
	var le *resolver.ListenError
	if !errors.As(err, &le) {
		return err
	}
	flag := map[string]string{"client": "--nats", "monitor": "--monitor", "route": "--cluster"}[le.Listener]
	return fmt.Errorf("nats: cannot listen for %s connections on %s (%s): %v; is another server using the port? Stop it or choose another address with %s",
		le.Listener, le.Addr, flag, le.Err, flag)
}

// unwrapOp is the cause inside a *net.OpError, which repeats the address.
func unwrapOp(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Err
	}
	return err
}

// reloadOnHangup reads the TLS files again on each SIGHUP.
func reloadOnHangup(ctx context.Context, certs *tlsfiles.Files, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := certs.Reload(); err != nil {
				log.Warn("SIGHUP: the TLS files cannot be used; the certificate in use stays", "err", err)
				continue
			}
			log.Info("SIGHUP: TLS certificate reloaded", "expires", certs.NotAfter().UTC().Format(time.RFC3339))
		}
	}
}
