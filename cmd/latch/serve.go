package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/tlsfiles"
	"github.com/latch-dev/latch/keys"
	"github.com/latch-dev/latch/resolver"
	"github.com/latch-dev/latch/web"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"github.com/urfave/cli/v2"
)

func serveCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the latch server: embedded NATS with JetStream and the full resolver, the account service, the web GUI",
		Description: `Starts nats-server in operator mode with the built-in full account
resolver (<data>/resolver) and JetStream (<data>/jetstream, encrypted with
ChaCha20-Poly1305 using the key in <data>/keys or $LATCH_JETSTREAM_KEY;
$LATCH_JETSTREAM_PREV_KEY is the previous key during a key rotation),
then the account service and its admin API (latch.admin.v1.*), then the
web GUI and the device enrollment API on --http, reached by people at
--public-url (passkeys are bound to its host name).
On an empty or missing data folder it first does what ` + "`latch init`" + ` does.
While no admin has a passkey (a new server, or one whose persons were
all made with latch account add) it prints a one-time setup link at every
start: whoever opens it becomes a person and an admin.
/healthz on the HTTP port answers from the start: 503 with the reason
until JetStream and the account service are ready, then 200. A start
waits for JetStream to recover every stream however long that takes
(minutes at tens of thousands of persons), logging how far it is every
5 s; it gives up when nats-server cannot open a port, or has made no
progress for --start-stall. SIGINT or SIGTERM: lame-duck mode, then a
clean stop, also while starting.`,
		Flags: withData(
			&cli.StringFlag{Name: "nats", Value: "127.0.0.1:4222", Usage: "NATS client address (host:port); use 0.0.0.0:4222 to serve other machines"},
			&cli.StringFlag{Name: "http", Value: "127.0.0.1:8080", Usage: "HTTP address (host:port)"},
			&cli.StringFlag{Name: "monitor", Value: "127.0.0.1:8222", Usage: "NATS monitoring address (/healthz, /varz, /connz); empty turns it off"},
			&cli.StringFlag{Name: "public-url", Usage: "where people reach the web GUI; passkeys are bound to its host (default: http://localhost:<--http port>, https with --tls-cert)"},
			&cli.StringFlag{Name: "tls-cert", Usage: "serve NATS, the monitoring port and HTTPS with this certificate (PEM); reloaded on SIGHUP and when the file changes"},
			&cli.StringFlag{Name: "tls-key", Usage: "the key of --tls-cert (PEM)"},
			&cli.StringFlag{Name: "tls-ca", Usage: "require NATS clients to show a certificate signed by this CA (PEM); optional"},
			&cli.StringFlag{Name: "signup", Value: web.SignupInvite, Usage: "who may sign up: invite (with an invite link), open (anyone), closed (nobody new)"},
			&cli.BoolFlag{Name: "trust-proxy", Usage: "take clients' addresses (rate limits, the audit trail) from X-Forwarded-For; only behind a reverse proxy that every request passes"},
			&cli.StringFlag{Name: "device-servers", Usage: "comma-separated NATS URLs handed to enrolled devices (default: the NATS client URL)"},
			&cli.StringFlag{Name: "server-name", Value: "latch", Usage: "the NATS server's name"},
			&cli.StringFlag{Name: "account-disk", Value: "64MiB", Usage: "JetStream disk quota of each new person account"},
			&cli.StringFlag{Name: "account-memory", Value: "1MiB", Usage: "JetStream memory quota of each new person account (KV watchers)"},
			&cli.Int64Flag{Name: "account-conns", Value: accounts.DefaultLimits.Conns, Usage: "most connections of each new person account"},
			&cli.StringFlag{Name: "account-payload", Value: "1MiB", Usage: "largest message of each new person account"},
			&cli.Int64Flag{Name: "account-subs", Value: accounts.DefaultLimits.Subs, Usage: "most subscriptions of any one connection of each new person account, the server's own included"},
			&cli.Int64Flag{Name: "device-subs", Value: accounts.DefaultLimits.DeviceSubs, Usage: "most subscriptions of one device connection (every person's devices; existing accounts get it at the next start)"},
			&cli.StringFlag{Name: "device-ttl", Value: "90d", Usage: "default lifetime of issued device JWTs (90d, 12h, never)"},
			&cli.StringFlag{Name: "js-max-store", Value: "1PiB", Usage: "JetStream disk the server hands out in quotas; over-committed on purpose (see docs/operations.md)"},
			&cli.StringFlag{Name: "js-max-memory", Value: "1TiB", Usage: "JetStream memory the server hands out in quotas; over-committed on purpose"},
			&cli.DurationFlag{Name: "lame-duck", Value: 5 * time.Second, Usage: "how long a shutdown spends moving clients off"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error [$LATCH_LOG_LEVEL]"},
			&cli.DurationFlag{Name: "start-stall", Value: resolver.DefaultStall, Usage: "give up starting when nats-server has made no progress for this long (a start that makes progress is waited for, however long)"},
		),
		Action: func(c *cli.Context) error {
			if _, err := args(c); err != nil {
				return err
			}
			cfg, err := e.serveConfig(c)
			if err != nil {
				return usageError{msg: err.Error()}
			}
			return serve(c.Context, cfg, e)
		},
	}
}

type serveConfig struct {
	data, nats, http, monitor, name string
	publicURL, signup               string
	trustProxy                      bool
	deviceServers                   []string
	limits                          accounts.Limits
	deviceTTL                       time.Duration
	maxStore, maxMemory             int64
	lameDuck, startStall            time.Duration
	logLevel                        slog.Level
	tlsCert, tlsKey, tlsCA          string
}

func (e *env) serveConfig(c *cli.Context) (serveConfig, error) {
	cfg := serveConfig{
		data: e.global(c, "data"), nats: c.String("nats"), http: c.String("http"),
		monitor: c.String("monitor"), name: c.String("server-name"), lameDuck: c.Duration("lame-duck"),
		startStall: c.Duration("start-stall"),
		publicURL:  c.String("public-url"), signup: c.String("signup"), trustProxy: c.Bool("trust-proxy"),
		tlsCert: c.String("tls-cert"), tlsKey: c.String("tls-key"), tlsCA: c.String("tls-ca"),
	}
	switch {
	case (cfg.tlsCert == "") != (cfg.tlsKey == ""):
		return cfg, fmt.Errorf("--tls-cert and --tls-key go together")
	case cfg.tlsCA != "" && cfg.tlsCert == "":
		return cfg, fmt.Errorf("--tls-ca needs --tls-cert and --tls-key")
	}
	if cfg.publicURL == "" {
		_, port, err := net.SplitHostPort(cfg.http)
		if err != nil {
			return cfg, fmt.Errorf("--http %q: want host:port", cfg.http)
		}
		scheme := "http"
		if cfg.tlsCert != "" {
			scheme = "https"
		}
		cfg.publicURL = scheme + "://localhost:" + port
	}
	cfg.publicURL = strings.TrimSuffix(cfg.publicURL, "/")
	switch cfg.signup {
	case web.SignupInvite, web.SignupOpen, web.SignupClosed:
	default:
		return cfg, fmt.Errorf("--signup %q: want invite, open or closed", cfg.signup)
	}
	for _, u := range strings.Split(c.String("device-servers"), ",") {
		if u = strings.TrimSpace(u); u != "" {
			cfg.deviceServers = append(cfg.deviceServers, u)
		}
	}
	cfg.limits = accounts.DefaultLimits
	cfg.limits.Conns = c.Int64("account-conns")
	cfg.limits.Subs, cfg.limits.DeviceSubs = c.Int64("account-subs"), c.Int64("device-subs")
	if cfg.limits.Subs <= 0 || cfg.limits.DeviceSubs <= 0 {
		return cfg, fmt.Errorf("--account-subs and --device-subs must be more than 0")
	}
	sizes := []struct {
		flag string
		dst  *int64
	}{
		{"account-disk", &cfg.limits.Disk}, {"account-memory", &cfg.limits.Memory},
		{"account-payload", &cfg.limits.Payload},
		{"js-max-store", &cfg.maxStore}, {"js-max-memory", &cfg.maxMemory},
	}
	for _, s := range sizes {
		n, err := parseSize(c.String(s.flag))
		if err != nil {
			return cfg, fmt.Errorf("--%s: %v", s.flag, err)
		}
		*s.dst = n
	}
	if cfg.limits.Payload < accounts.MinPayload {
		return cfg, fmt.Errorf("--account-payload: at least %d bytes (4KiB): latch's own requests into each account need that much", accounts.MinPayload)
	}
	lvl := c.String("log-level")
	if v := e.getenv("LATCH_LOG_LEVEL"); v != "" && !c.IsSet("log-level") {
		lvl = v
	}
	if err := cfg.logLevel.UnmarshalText([]byte(lvl)); err != nil {
		return cfg, fmt.Errorf("--log-level %q: want debug, info, warn or error", lvl)
	}
	ttl, err := parseTTL(c.String("device-ttl"))
	if err != nil {
		return cfg, fmt.Errorf("--device-ttl: %v", err)
	}
	cfg.deviceTTL = ttl
	return cfg, nil
}

// serve runs the server until ctx ends.
func serve(ctx context.Context, cfg serveConfig, e *env) error {
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: cfg.logLevel}))
	// A port in use fails before anything is written, a new data folder
	// included.
	for _, l := range []struct{ name, addr string }{{"client", cfg.nats}, {"monitor", cfg.monitor}} {
		if l.addr == "" {
			continue
		}
		if err := resolver.TryListen(l.name, l.addr); err != nil {
			return listenError(err)
		}
	}
	if l, err := net.Listen("tcp", cfg.http); err != nil {
		return fmt.Errorf("http: cannot listen on %s (--http): %w", cfg.http, unwrapOp(err))
	} else {
		l.Close()
	}
	// Bad TLS files, too, before anything is written.
	var certs *tlsfiles.Files
	if cfg.tlsCert != "" {
		var err error
		if certs, err = tlsfiles.Load(cfg.tlsCert, cfg.tlsKey, cfg.tlsCA); err != nil {
			return fmt.Errorf("%w (--tls-cert, --tls-key, --tls-ca)", err)
		}
	} else {
		warnPlain(log, cfg)
	}
	op, err := accounts.LoadOperator(cfg.data)
	if errors.Is(err, accounts.ErrNotInitialised) {
		if op, err = accounts.InitOperator(cfg.data, "latch"); err != nil {
			return err
		}
		log.Info("initialised a new data folder", "data", cfg.data, "operator", op.Operator)
	}
	if err != nil {
		return err
	}
	// A folder made before LATCH_ADMIN existed had admin.creds in LATCH
	// itself, where it could read the server's own traffic.
	if changed, err := op.UpgradeAdminAccount(); err != nil {
		return fmt.Errorf("move admin creds to LATCH_ADMIN: %w", err)
	} else if changed {
		log.Warn("admin creds moved to their own account, LATCH_ADMIN: the old admin.creds no longer works; "+
			"a new one replaces it, and `latch admin creds issue` makes one for each admin",
			"admin_creds", filepath.Join(cfg.data, accounts.AdminCredsFile))
	}
	if changed, err := op.UpgradeAppExports(); err != nil {
		return fmt.Errorf("bring the LATCH account up to date: %w", err)
	} else if changed {
		log.Info("LATCH account re-signed with this version's exports")
	}
	// Every seed is read before NATS starts, so a damaged or exposed key
	// file stops the server with how to fix it.
	if err := op.CheckKeys(e.getenv); err != nil {
		return err
	}
	jsKey, err := op.JetStreamKey(e.getenv)
	if err != nil {
		return err
	}
	// During a key rotation the previous key reads what is still encrypted
	// with it; the server writes it again under the new key as it loads
	// (docs/security.md).
	jsPrevKey := strings.TrimSpace(e.getenv("LATCH_JETSTREAM_PREV_KEY"))
	// After `latch operator signing-key add`, SYS and LATCH move to the
	// new key before the server starts.
	if changed, err := op.ResignOwnAccounts(); err != nil {
		return err
	} else if changed {
		log.Info("re-signed SYS and LATCH with the operator signing key in use", "key", op.SigningKey)
	}
	signer, err := op.Signer()
	if err != nil {
		return err
	}

	// The HTTP listener comes first so a busy port fails before NATS starts.
	hl, err := net.Listen("tcp", cfg.http)
	if err != nil {
		return fmt.Errorf("http: cannot listen on %s (--http): %w", cfg.http, unwrapOp(err))
	}
	defer hl.Close()
	var natsTLS *tls.Config
	if certs != nil {
		hl = tls.NewListener(hl, certs.HTTPS())
		natsTLS = certs.NATS()
		go certs.Watch(ctx, 10*time.Second, log)
		go reloadOnHangup(ctx, certs, log)
		log.Info("TLS on NATS, the monitoring port and HTTP", "cert", cfg.tlsCert,
			"expires", certs.NotAfter().UTC().Format(time.RFC3339), "client_certs", certs.VerifiesClients())
	}

	ns, err := resolver.Launch(resolver.Config{
		TLS:              natsTLS,
		Name:             cfg.name,
		DataDir:          cfg.data,
		Listen:           cfg.nats,
		Monitor:          cfg.monitor,
		OperatorJWT:      op.OperatorJWT,
		SystemAccount:    op.SystemAccount.PublicKey,
		Preload:          op.Preload(),
		JetStreamKey:     jsKey,
		JetStreamPrevKey: jsPrevKey,
		MaxStore:         cfg.maxStore,
		MaxMemory:        cfg.maxMemory,
		LameDuck:         cfg.lameDuck,
		StallTimeout:     cfg.startStall,
		Log:              log,
	})
	if err != nil {
		return listenError(err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), cfg.lameDuck+10*time.Second)
		defer cancel()
		ns.Shutdown(sctx)
		log.Info("stopped")
	}()

	// /healthz answers from the first moment, 503 with how far the start
	// is until everything is ready; the GUI comes once it exists. A start
	// with thousands of persons spends minutes recovering JetStream.
	var ready atomic.Bool
	var gui atomic.Pointer[web.Server]
	var ownP atomic.Pointer[ownConns]
	hs := &http.Server{Handler: httpHandler(ns, &ready, &gui, &ownP), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go hs.Serve(hl)
	var stopHTTP sync.Once
	stopWeb := func() {
		stopHTTP.Do(func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			hs.Shutdown(sctx)
		})
	}
	defer stopWeb()
	if err := ns.WaitReady(ctx); err != nil {
		if ctx.Err() != nil {
			// Stopped while starting: a clean stop.
			return nil
		}
		return listenError(err)
	}

	// Every connection of the server's own answers its requests on an
	// inbox of its own, outside _INBOX.>, which devices may subscribe to
	// in their person account.
	inbox := "_LATCH_INBOX." + nuid.Next()
	dial := func(userJWT string, seed []byte) (*nats.Conn, error) {
		return nats.Connect("", nats.InProcessServer(ns), nats.UserJWTAndSeed(userJWT, string(seed)),
			nats.Name("latch"), nats.CustomInboxPrefix(inbox))
	}
	// The server's two long-lived connections (SYS and LATCH) reconnect
	// for ever; while one is away /healthz says so. nats-server may also
	// close one for good (a protocol error): latch then stops with the
	// reason, to be started afresh, rather than serve without it.
	own := &ownConns{lost: make(chan error, 1)}
	ownP.Store(own)
	connect := func(a accounts.AccountJWT) (*nats.Conn, error) {
		tok, seed, err := op.MintUser(a, "latch-server")
		if err != nil {
			return nil, err
		}
		nc, err := nats.Connect("", nats.InProcessServer(ns), nats.UserJWTAndSeed(tok, string(seed)),
			nats.Name("latch"), nats.CustomInboxPrefix(inbox),
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

	presence, err := resolver.WatchPresence(sysNC, ns, log)
	if err != nil {
		return fmt.Errorf("presence: %w", err)
	}
	defer presence.Close()

	adminSigner, err := op.AdminSigner()
	if err != nil {
		return err
	}
	svc, err := accounts.Open(ctx, accounts.Config{
		Connections:  connections{presence, ns},
		AdminAccount: op.AdminAccount.PublicKey,
		AdminSigner:  adminSigner,
		AppAccount:   op.AppAccount.PublicKey,
		Signer:       signer,
		Directory:    resolver.NewClaims(sysNC, 10*time.Second),
		App:          appNC,
		Dial:         dial,
		Limits:       cfg.limits,
		DeviceTTL:    cfg.deviceTTL,
		PublicURL:    cfg.publicURL,
		Log:          log,
	})
	if err != nil {
		return fmt.Errorf("account service: %w", err)
	}
	if err := svc.RegisterFirstAdmin(ctx, op.FirstAdmin); err != nil {
		return err
	}
	go func() {
		if err := svc.Reconcile(ctx); err != nil {
			log.Warn("reconcile deleted accounts", "err", err)
		}
		resigned, templated, err := svc.Refresh(ctx)
		if err != nil {
			log.Warn("bring accounts up to date", "err", err)
		}
		if resigned > 0 {
			log.Info("re-signed accounts with the operator signing key in use", "accounts", resigned, "key", op.SigningKey)
		}
		if templated > 0 {
			log.Info("gave person accounts today's device permissions", "accounts", templated)
		}
	}()
	admin, err := svc.ServeAdmin(appNC, version)
	if err != nil {
		return fmt.Errorf("admin service: %w", err)
	}
	defer admin.Stop()
	deviceAPI, err := svc.ServeDeviceAPI(appNC, version)
	if err != nil {
		return fmt.Errorf("device API: %w", err)
	}
	defer deviceAPI.Stop()

	go recordLastSeen(ctx, presence, svc, log)

	sessionSecret, err := svc.SharedSecret(ctx, "web-session")
	if err != nil {
		return fmt.Errorf("web session keys: %w", err)
	}
	servers := cfg.deviceServers
	if len(servers) == 0 {
		servers = []string{ns.ClientURL()}
	}
	g, err := web.New(web.Config{
		Name:          op.Name,
		Version:       version,
		PublicURL:     cfg.publicURL,
		Signup:        cfg.signup,
		TrustProxy:    cfg.trustProxy,
		Servers:       servers,
		SessionSecret: sessionSecret,
		Accounts:      svc,
		Presence:      presence,
		Status:        serverStatus{ns: ns},
		Log:           log,
	})
	if err != nil {
		return usageError{msg: err.Error()}
	}

	hs.RegisterOnShutdown(g.CloseStreams) // live pages' streams would hold the shutdown up
	gui.Store(g)
	// While no admin can log in, a one-time link makes an admin; it is
	// there by the time /healthz says ok.
	if token, ok, err := svc.SetupInvite(ctx); err != nil {
		log.Warn("setup link", "err", err)
	} else {
		showSetupLink(e.stderr, log, cfg.data, cfg.publicURL, token, ok)
	}
	ready.Store(true)
	log.Info("latch is ready", "nats", ns.ClientURL(), "http", "http://"+hl.Addr().String(), "web", cfg.publicURL,
		"monitor", ns.MonitorURL(), "data", cfg.data, "pid", os.Getpid())

	select {
	case <-ctx.Done():
		log.Info("shutting down")
		own.stopping.Store(true)
		ready.Store(false)
		// The web stops first, while what its requests use still runs.
		stopWeb()
		return nil
	case <-ns.Failed():
		ready.Store(false)
		return listenError(ns.Err())
	case err := <-own.lost:
		ready.Store(false)
		log.Error("stopping: " + err.Error())
		return err
	}
}

// ownConns are latch's long-lived connections to its embedded server, for
// /healthz and for the stop when one is closed for good.
type ownConns struct {
	mu       sync.Mutex
	conns    []namedConn
	lost     chan error
	stopping atomic.Bool
}

type namedConn struct {
	name string
	nc   *nats.Conn
}

func (o *ownConns) add(name string, nc *nats.Conn) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.conns = append(o.conns, namedConn{name, nc})
}

// closed reports a connection nats.go gave up on (unless latch is
// stopping, when it closes them itself).
func (o *ownConns) closed(name string, err error) {
	if o.stopping.Load() {
		return
	}
	select {
	case o.lost <- fmt.Errorf("latch's own NATS connection to %s was closed (%v); start latch again", name, err):
	default:
	}
}

// healthy is nil while every connection is up, and says which is not.
func (o *ownConns) healthy() error {
	if o == nil {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, c := range o.conns {
		if st := c.nc.Status(); st != nats.CONNECTED {
			return fmt.Errorf("latch's own NATS connection to %s is %s", c.name, strings.ToLower(st.String()))
		}
	}
	return nil
}

// setupLinkFile is where the setup link goes when standard error is not a
// terminal.
const setupLinkFile = "setup-link"

// showSetupLink hands the setup link to whoever runs latch and to nobody
// else: it is a secret, and a log is shipped and kept. On a terminal it is
// printed there, apart from the log lines; otherwise (a service manager, a
// container) it is written to <data>/setup-link, mode 0600, and the log
// says where. Once somebody has signed up (ok false) the file goes.
func showSetupLink(stderr io.Writer, log *slog.Logger, data, publicURL, token string, ok bool) {
	file := filepath.Join(data, setupLinkFile)
	if !ok {
		os.Remove(file)
		return
	}
	link := publicURL + "/setup/" + token
	if f, isFile := stderr.(*os.File); isFile {
		if isTerminal(f) {
			fmt.Fprintf(stderr, "\nNo admin can log in yet. Open this one-time link to set up latch and become its admin:\n\n    %s\n\n", link)
			return
		}
	}
	os.Remove(file)
	if err := keys.WriteFileNew(file, []byte(link+"\n")); err != nil {
		log.Warn("setup link", "err", err)
		return
	}
	log.Info("no admin can log in yet: the one-time setup link is in a file, kept out of the log; open it to become an admin", "file", file)
}

// listenError names the flag of a listener nats-server could not open.
func listenError(err error) error {
	var le *resolver.ListenError
	if !errors.As(err, &le) {
		return err
	}
	flag := map[string]string{"client": "--nats", "monitor": "--monitor"}[le.Listener]
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

// httpHandler serves /healthz, 200 once the server is ready and JetStream
// is healthy and 503 with the reason otherwise, and the web GUI once it
// is there.
func httpHandler(ns *resolver.Server, ready *atomic.Bool, gui *atomic.Pointer[web.Server], own *atomic.Pointer[ownConns]) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if g := gui.Load(); g != nil {
			g.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Retry-After", "5")
		http.Error(w, "latch is starting; try again in a moment", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := ns.Healthy(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		if err := own.Load().healthy(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		if !ready.Load() {
			http.Error(w, "starting or stopping", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// recordLastSeen writes, when a device goes offline, when it was last seen.
func recordLastSeen(ctx context.Context, p *resolver.Presence, svc *accounts.Service, log *slog.Logger) {
	events, cancel := p.Subscribe("")
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			if ev.Online {
				continue
			}
			if err := svc.SetLastSeen(ctx, ev.Account, ev.User, ev.Time); err != nil && !errors.Is(err, accounts.ErrNotFound) {
				log.Warn("record last seen", "account", ev.Account, "device", ev.User, "err", err)
			}
		}
	}
}

// connections counts a device's connections from presence and closes them
// on the embedded server.
type connections struct {
	presence *resolver.Presence
	server   *resolver.Server
}

func (c connections) Conns(account, user string) int { return c.presence.Conns(account, user) }

func (c connections) Disconnect(account, user string) (int, error) {
	return c.server.Disconnect(account, user)
}

// serverStatus is what the admin page shows of the embedded server.
type serverStatus struct{ ns *resolver.Server }

func (s serverStatus) Status(ctx context.Context) (web.ServerStatus, error) {
	st := s.ns.Stats()
	out := web.ServerStatus{
		Name: st.Name, Version: st.Version, Uptime: st.Uptime, Connections: st.Connections,
		JetStream: st.JetStream, StorageUsed: st.StorageUsed, MemoryUsed: st.MemoryUsed, ClientURL: s.ns.ClientURL(),
	}
	n, err := s.ns.StoredAccounts()
	if err != nil {
		out.ResolverError = err.Error()
	}
	out.Accounts = n
	return out, nil
}

// warnPlain warns of each address that takes plain text from other
// machines: anyone on the way reads the creds' signatures, the records and
// the web sessions.
func warnPlain(log *slog.Logger, cfg serveConfig) {
	for _, a := range []struct{ flag, addr string }{{"--nats", cfg.nats}, {"--http", cfg.http}, {"--monitor", cfg.monitor}} {
		host, _, err := net.SplitHostPort(a.addr)
		if a.addr == "" || err != nil || loopback(host) {
			continue
		}
		log.Warn("serving plain text on an address other machines reach; give --tls-cert and --tls-key, or bind to 127.0.0.1 behind a TLS proxy (docs/operations.md)",
			"flag", a.flag, "address", a.addr)
	}
}

// loopback reports whether host is this machine only.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
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
