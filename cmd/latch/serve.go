package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/keys"
	"github.com/latch-dev/latch/operator"
	"github.com/latch-dev/latch/resolver"
	"github.com/latch-dev/latch/server"
	"github.com/latch-dev/latch/web"
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
clean stop, also while starting.
With --cluster the node is one of a cluster of latch nodes: every node
has the same deployment (--identity, from ` + "`latch identity export`" + `),
routes authenticated with the deployment's secret, and, with --region,
JetStream puts each replica of latch's streams and of every person's
records in another region (--replicas, 3 by default). A node that starts
catches up before it is ready: deleted accounts are deleted again and
every account JWT is brought to latch's record. A data folder of a node
that ran alone, started with --cluster, brings its streams into the
cluster (docs/operations.md, "Growing from one node").
With --nats-external latch runs no nats-server of its own: it uses an
existing cluster configured with ` + "`latch operator config`" + ` (latch's
operator, system account and the full resolver, JetStream on), pushes
every account JWT to it over $SYS.REQ.CLAIMS.UPDATE, and keeps its
streams there; --nats, --monitor and the cluster flags are the servers'
business then.
On fly.io (FLY_APP_NAME set) the defaults come from the platform: the
machine's name and region, the app's other machines as routes, the
public URL https://<app>.fly.dev, NATS behind fly's TLS handler at
<app>.fly.dev:4222, --trust-proxy (docs/deploy-fly.md).
Started as root with $LATCH_RUN_AS=uid:gid (the container image sets
it), latch gives the data folder to that user, then drops root before
it opens anything.`,
		Flags: withData(
			&cli.StringFlag{Name: "nats", Value: "127.0.0.1:4222", Usage: "NATS client address (host:port); use 0.0.0.0:4222 to serve other machines"},
			&cli.StringFlag{Name: "http", Value: "127.0.0.1:8080", Usage: "HTTP address (host:port)"},
			&cli.StringFlag{Name: "monitor", Value: "127.0.0.1:8222", Usage: "NATS monitoring address (/healthz, /varz, /connz); empty turns it off"},
			&cli.StringFlag{Name: "public-url", Usage: "where people reach the web GUI; passkeys are bound to its host (default: http://localhost:<--http port>, https with --tls-cert) [$LATCH_PUBLIC_URL; on fly.io: https://<app>.fly.dev]"},
			&cli.StringFlag{Name: "tls-cert", Usage: "serve NATS, the monitoring port and HTTPS with this certificate (PEM); reloaded on SIGHUP and when the file changes"},
			&cli.StringFlag{Name: "tls-key", Usage: "the key of --tls-cert (PEM)"},
			&cli.StringFlag{Name: "tls-ca", Usage: "require NATS clients to show a certificate signed by this CA (PEM); optional"},
			&cli.StringFlag{Name: "signup", Value: web.SignupInvite, Usage: "who may sign up: invite (with an invite link), open (anyone), closed (nobody new)"},
			&cli.BoolFlag{Name: "trust-proxy", Usage: "take clients' addresses (rate limits, the audit trail) from X-Forwarded-For; only behind a reverse proxy that every request passes [on fly.io: on]"},
			&cli.BoolFlag{Name: "nats-behind-tls-proxy", Usage: "NATS clients come through a proxy that ends TLS from the first byte, at --client-advertise: take its plain text, and tell devices to connect with the TLS handshake first [$LATCH_NATS_BEHIND_TLS_PROXY; on fly.io: on]"},
			&cli.StringFlag{Name: "device-servers", Usage: "comma-separated NATS URLs handed to enrolled devices (default: the NATS client URL)"},
			&cli.StringFlag{Name: "server-name", Value: "latch", Usage: "the NATS server's name (with --cluster: the host's name; on fly.io: $FLY_MACHINE_ID)"},
			&cli.StringFlag{Name: "account-disk", Value: "64MiB", Usage: "JetStream disk quota of each new person account"},
			&cli.StringFlag{Name: "account-memory", Value: "1MiB", Usage: "JetStream memory quota of each new person account (KV watchers)"},
			&cli.Int64Flag{Name: "account-conns", Value: accounts.DefaultLimits().Conns, Usage: "most connections of each new person account"},
			&cli.StringFlag{Name: "account-payload", Value: "1MiB", Usage: "largest message of each new person account"},
			&cli.Int64Flag{Name: "account-subs", Value: accounts.DefaultLimits().Subs, Usage: "most subscriptions of any one connection of each new person account, the server's own included"},
			&cli.Int64Flag{Name: "device-subs", Value: accounts.DefaultLimits().DeviceSubs, Usage: "most subscriptions of one device connection (every person's devices; existing accounts get it at the next start)"},
			&cli.BoolFlag{Name: "records-history", Value: true, Usage: "keep every write to each person's records for 30 days where devices cannot reach it, for restores; false saves a stream and six goroutines a person (docs/scale.md) but lets a lost device destroy records for good [$LATCH_RECORDS_HISTORY]"},
			&cli.StringFlag{Name: "device-ttl", Value: "90d", Usage: "default lifetime of issued device JWTs (90d, 12h, never)"},
			&cli.StringFlag{Name: "js-max-store", Value: "1PiB", Usage: "JetStream disk the server hands out in quotas; over-committed on purpose (see docs/operations.md)"},
			&cli.StringFlag{Name: "js-max-memory", Value: "1TiB", Usage: "JetStream memory the server hands out in quotas; over-committed on purpose"},
			&cli.DurationFlag{Name: "lame-duck", Value: 5 * time.Second, Usage: "how long a shutdown spends moving clients off"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error [$LATCH_LOG_LEVEL]"},
			&cli.DurationFlag{Name: "start-stall", Value: resolver.DefaultStall, Usage: "give up starting when nats-server has made no progress for this long (a start that makes progress is waited for, however long)"},
			&cli.StringFlag{Name: "identity", Usage: "a deployment's identity file (`latch identity export`): an empty --data folder becomes a node of that deployment, another deployment's folder is refused [$LATCH_IDENTITY holds the file's contents]"},
			&cli.StringFlag{Name: "cluster", Usage: "route listener (host:port): run as a node of a cluster of latch nodes [$LATCH_CLUSTER]"},
			&cli.StringFlag{Name: "routes", Usage: "comma-separated route addresses of the other nodes (host:port); names are resolved again on every attempt [$LATCH_ROUTES; on fly.io: <region>.<app>.internal of each of $LATCH_REGIONS, else <app>.internal]"},
			&cli.StringFlag{Name: "region", Usage: "where this node runs; each replica of a stream goes to another region (a warning when not one of $LATCH_REGIONS, the deployment's, where set) [$LATCH_REGION; on fly.io: $FLY_REGION]"},
			&cli.StringFlag{Name: "cluster-name", Usage: "the cluster's name, the same on every node (default: the operator's name)"},
			&cli.StringFlag{Name: "cluster-advertise", Usage: "route address (host:port) the other nodes are told to use, when --cluster's is not reachable from them [on fly.io: <machine>.vm.<app>.internal]"},
			&cli.IntFlag{Name: "replicas", Usage: "copies of latch's streams and of each person's records (default: 1 alone, 3 with --cluster)"},
			&cli.StringFlag{Name: "client-advertise", Usage: "NATS address (host:port) clients are told to connect and reconnect to instead of this node's own [$LATCH_CLIENT_ADVERTISE; on fly.io: <app>.fly.dev:4222]"},
			&cli.StringFlag{Name: "nats-external", Usage: "comma-separated URLs of an existing nats-server cluster to use instead of an embedded server (configured with `latch operator config`) [$LATCH_NATS_EXTERNAL]"},
			&cli.StringFlag{Name: "system-creds", Usage: "with --nats-external: creds of a user of latch's system account (default: a user latch makes from its keys)"},
			&cli.StringFlag{Name: "nats-external-ca", Usage: "with --nats-external: the CA (PEM) of the servers' TLS certificates (default: the system's)"},
		),
		Action: func(c *cli.Context) error {
			if _, err := args(c); err != nil {
				return err
			}
			cfg, err := e.serveConfig(c)
			if err != nil {
				return usageError{msg: err.Error()}
			}
			if err := runAs(e.getenv("LATCH_RUN_AS"), cfg.data); err != nil {
				return err
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
	natsBehindTLSProxy              bool
	noRecordsHistory                bool
	warnings                        []string // said once the log exists
	identity                        *operator.Identity
	cluster                         server.Cluster
	clientAdvertise                 string
	replicas                        int
	external                        server.External
}

func (e *env) serveConfig(c *cli.Context) (serveConfig, error) {
	cfg := serveConfig{
		data: e.global(c, "data"), nats: c.String("nats"), http: c.String("http"),
		monitor: c.String("monitor"), name: c.String("server-name"), lameDuck: c.Duration("lame-duck"),
		startStall: c.Duration("start-stall"),
		publicURL:  c.String("public-url"), signup: c.String("signup"), trustProxy: c.Bool("trust-proxy"),
		tlsCert: c.String("tls-cert"), tlsKey: c.String("tls-key"), tlsCA: c.String("tls-ca"),
	}
	// The TLS flags' combinations are server.Open's to check.
	// The public URL's default comes from the port the server gets.
	if _, _, err := net.SplitHostPort(cfg.http); err != nil {
		return cfg, fmt.Errorf("--http %q: want host:port", cfg.http)
	}
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
	cfg.limits = accounts.DefaultLimits()
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
	if err := e.clusterFlags(c, &cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// clusterFlags reads the identity and the cluster flags, each from its
// LATCH_ variable when the flag is not given, and on fly.io the defaults
// the platform gives: the machine's name, its region, the app's other
// machines as routes and its own private name to advertise.
func (e *env) clusterFlags(c *cli.Context, cfg *serveConfig) error {
	flagOrEnv := func(flag, env string) string {
		if v := c.String(flag); c.IsSet(flag) || env == "" {
			return v
		}
		return strings.TrimSpace(e.getenv(env))
	}
	idFile, idEnv := c.String("identity"), e.getenv("LATCH_IDENTITY")
	switch {
	case idFile != "":
		b, err := keys.ReadSecretFile(idFile)
		if err != nil {
			return fmt.Errorf("--identity: %v (an identity file must be readable by its owner only: chmod 600)", err)
		}
		if cfg.identity, err = operator.ParseIdentity(b); err != nil {
			return fmt.Errorf("--identity %s: %v", idFile, err)
		}
	case idEnv != "":
		id, err := operator.ParseIdentity([]byte(idEnv))
		if err != nil {
			return fmt.Errorf("$LATCH_IDENTITY: %v", err)
		}
		cfg.identity = id
	}
	fly, machine, app := e.getenv("FLY_APP_NAME") != "", e.getenv("FLY_MACHINE_ID"), e.getenv("FLY_APP_NAME")
	if !c.IsSet("server-name") {
		// A node of a cluster needs a name of its own.
		switch {
		case fly && machine != "":
			cfg.name = machine
		case flagOrEnv("cluster", "LATCH_CLUSTER") != "":
			if host, err := os.Hostname(); err == nil && host != "" {
				cfg.name = host
			}
		}
	}
	cfg.cluster = server.Cluster{
		Listen: flagOrEnv("cluster", "LATCH_CLUSTER"), Name: c.String("cluster-name"),
		Region: flagOrEnv("region", "LATCH_REGION"), Advertise: c.String("cluster-advertise"),
	}
	if cfg.cluster.Region == "" && fly {
		cfg.cluster.Region = e.getenv("FLY_REGION")
	}
	for _, r := range strings.Split(flagOrEnv("routes", "LATCH_ROUTES"), ",") {
		if r = strings.TrimSpace(r); r != "" {
			cfg.cluster.Routes = append(cfg.cluster.Routes, r)
		}
	}
	if cfg.cluster.Listen != "" {
		_, port, err := net.SplitHostPort(cfg.cluster.Listen)
		if err != nil {
			return fmt.Errorf("--cluster %q: want host:port", cfg.cluster.Listen)
		}
		if fly && len(cfg.cluster.Routes) == 0 {
			// The machine of each of the deployment's regions by its
			// region's name, itself among them (nats-server skips its own
			// address), found again on every attempt: a route to each node
			// configured on every node. One name for every machine
			// (<app>.internal) leaves the rest to gossip, and nats-server
			// 2.15 then sometimes leaves a pair of nodes short of a pooled
			// route, and the accounts on it without interest between them.
			if regions := strings.TrimSpace(e.getenv("LATCH_REGIONS")); regions != "" {
				for _, r := range strings.Split(regions, ",") {
					cfg.cluster.Routes = append(cfg.cluster.Routes, net.JoinHostPort(strings.TrimSpace(r)+"."+app+".internal", port))
				}
			} else {
				cfg.cluster.Routes = []string{net.JoinHostPort(app+".internal", port)}
			}
		}
		if fly && machine != "" && cfg.cluster.Advertise == "" {
			cfg.cluster.Advertise = net.JoinHostPort(machine+".vm."+app+".internal", port)
		}
	}
	cfg.clientAdvertise = flagOrEnv("client-advertise", "LATCH_CLIENT_ADVERTISE")
	if !c.IsSet("public-url") {
		cfg.publicURL = strings.TrimSpace(e.getenv("LATCH_PUBLIC_URL"))
	}
	cfg.natsBehindTLSProxy = c.Bool("nats-behind-tls-proxy")
	if v := strings.TrimSpace(e.getenv("LATCH_NATS_BEHIND_TLS_PROXY")); v != "" && !c.IsSet("nats-behind-tls-proxy") {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("$LATCH_NATS_BEHIND_TLS_PROXY %q: want true or false", v)
		}
		cfg.natsBehindTLSProxy = b
	}
	cfg.replicas = c.Int("replicas")
	cfg.noRecordsHistory = !c.Bool("records-history")
	if v := strings.TrimSpace(e.getenv("LATCH_RECORDS_HISTORY")); v != "" && !c.IsSet("records-history") {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("$LATCH_RECORDS_HISTORY %q: want true or false", v)
		}
		cfg.noRecordsHistory = !b
	}
	if cfg.noRecordsHistory {
		cfg.warnings = append(cfg.warnings, "the records history is off (--records-history=false): persons without one get none, "+
			"and a lost or stolen device can destroy its person's records for good; histories made before are kept")
	}
	for _, u := range strings.Split(flagOrEnv("nats-external", "LATCH_NATS_EXTERNAL"), ",") {
		if u = strings.TrimSpace(u); u != "" {
			cfg.external.URLs = append(cfg.external.URLs, u)
		}
	}
	cfg.external.SystemCreds, cfg.external.CA = c.String("system-creds"), c.String("nats-external-ca")
	if len(cfg.external.URLs) == 0 && (cfg.external.SystemCreds != "" || cfg.external.CA != "") {
		return errors.New("--system-creds and --nats-external-ca go with --nats-external URL,…")
	}
	if len(cfg.external.URLs) > 0 {
		for _, f := range []string{"nats", "monitor", "js-max-store", "js-max-memory", "start-stall"} {
			if c.IsSet(f) {
				return fmt.Errorf("--%s is the embedded server's; with --nats-external the NATS servers are configured apart", f)
			}
		}
	}
	if regions := strings.TrimSpace(e.getenv("LATCH_REGIONS")); regions != "" && cfg.cluster.Region != "" &&
		!slices.Contains(strings.Split(regions, ","), cfg.cluster.Region) {
		cfg.warnings = append(cfg.warnings, fmt.Sprintf("this node's region %s is not one of the deployment's ($LATCH_REGIONS %s): "+
			"its replicas do not spread as planned; move the machine, or add the region to LATCH_REGIONS in fly.toml", cfg.cluster.Region, regions))
	}
	if fly {
		// fly's proxy ends TLS for the web (https://<app>.fly.dev) and,
		// with fly.toml's tls handler, for NATS on 4222; every request
		// passes it.
		if cfg.publicURL == "" {
			cfg.publicURL = "https://" + app + ".fly.dev"
		}
		if cfg.clientAdvertise == "" && len(cfg.external.URLs) == 0 {
			cfg.clientAdvertise = app + ".fly.dev:4222"
		}
		if !c.IsSet("trust-proxy") {
			cfg.trustProxy = true
		}
		if !c.IsSet("nats-behind-tls-proxy") && e.getenv("LATCH_NATS_BEHIND_TLS_PROXY") == "" && len(cfg.external.URLs) == 0 {
			cfg.natsBehindTLSProxy = true
		}
	}
	return nil
}

// serve runs the server until ctx ends.
func serve(ctx context.Context, cfg serveConfig, e *env) error {
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: cfg.logLevel}))
	for _, w := range cfg.warnings {
		log.Warn(w)
	}
	s, err := server.Open(ctx, server.Config{
		Data: cfg.data, NATS: cfg.nats, HTTP: cfg.http, Monitor: cfg.monitor, Name: cfg.name,
		PublicURL: cfg.publicURL, Signup: cfg.signup, TrustProxy: cfg.trustProxy, DeviceServers: cfg.deviceServers,
		Limits: cfg.limits, DeviceTTL: cfg.deviceTTL, MaxStore: cfg.maxStore, MaxMemory: cfg.maxMemory,
		LameDuck: cfg.lameDuck, StartStall: cfg.startStall,
		TLSCert: cfg.tlsCert, TLSKey: cfg.tlsKey, TLSCA: cfg.tlsCA, HangupReloads: true, NATSBehindTLSProxy: cfg.natsBehindTLSProxy,
		Identity: cfg.identity, Cluster: cfg.cluster, ClientAdvertise: cfg.clientAdvertise, Replicas: cfg.replicas,
		External: cfg.external, NoRecordsHistory: cfg.noRecordsHistory,
		Version: version, Getenv: e.getenv, Log: log,
		SetupLink: func(link string, ok bool) { showSetupLink(e.stderr, log, cfg.data, link, ok) },
	})
	var ce *server.ConfigError
	if errors.As(err, &ce) {
		return usageError{msg: ce.Msg}
	}
	if err != nil {
		return err
	}
	if e.started != nil {
		e.started(s)
	}
	<-s.Done()
	err = s.Err()
	if errors.As(err, &ce) {
		return usageError{msg: ce.Msg}
	}
	return err
}

// setupLinkFile is where the setup link goes when standard error is not a
// terminal.
const setupLinkFile = "setup-link"

// showSetupLink hands the setup link to whoever runs latch and to nobody
// else: it is a secret, and a log is shipped and kept. On a terminal it is
// printed there, apart from the log lines; otherwise (a service manager, a
// container) it is written to <data>/setup-link, mode 0600, and the log
// says where. Once somebody has signed up (ok false) the file goes.
func showSetupLink(stderr io.Writer, log *slog.Logger, data, link string, ok bool) {
	file := filepath.Join(data, setupLinkFile)
	if !ok {
		os.Remove(file)
		return
	}
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
