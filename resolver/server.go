// Package resolver runs the embedded nats-server in operator mode with the
// built-in full account resolver, and speaks the resolver's system-account
// protocol ($SYS.REQ.CLAIMS.*) to push, look up, list and delete account
// JWTs. It is the only package besides cmd that imports nats-server.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
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
	// Log receives the server's log lines.
	Log *slog.Logger
}

// Server is a running embedded nats-server.
type Server struct {
	ns  *server.Server
	log *slog.Logger
}

// Start starts the server and returns once it accepts connections and
// JetStream is healthy, or with an error saying what failed.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	opts, err := options(cfg)
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ns.SetLoggerV2(logAdapter{log.With("component", "nats")}, false, false, false)
	go ns.Start()
	s := &Server{ns: ns, log: log}
	if err := s.waitReady(ctx); err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, err
	}
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
	interval := cfg.SyncInterval
	if interval == 0 {
		interval = 2 * time.Minute
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
	if cfg.JetStreamKey == "" {
		return nil, errors.New("no JetStream encryption key: latch never stores data unencrypted")
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
	}
	return opts, nil
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

// waitReady waits for the listeners and then for JetStream: a server whose
// port is open but whose JetStream is still recovering cannot serve a KV.
func (s *Server) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if !s.ns.ReadyForConnections(time.Until(deadline)) {
		return errors.New("nats: the server's listeners did not come up; is the port in use? (see the log above)")
	}
	for {
		err := s.Healthy()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats: JetStream did not become healthy: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Healthy reports nil when the server runs and JetStream is healthy.
func (s *Server) Healthy() error {
	if !s.ns.Running() {
		return errors.New("nats is not running")
	}
	hs := s.ns.Healthz(&server.HealthzOptions{JSServerOnly: true})
	if hs.Status != "ok" {
		return fmt.Errorf("nats: %s", hs.Error)
	}
	return nil
}

// ClientURL is the nats:// URL clients connect to.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// MonitorURL is the http:// URL of the monitoring port, or "" when off.
func (s *Server) MonitorURL() string {
	a := s.ns.MonitorAddr()
	if a == nil {
		return ""
	}
	return "http://" + a.String()
}

// InProcessConn gives a client connection that does not go through TCP
// (nats.InProcessServer).
func (s *Server) InProcessConn() (net.Conn, error) { return s.ns.InProcessConn() }

// NumClients is the number of client connections.
func (s *Server) NumClients() int { return s.ns.NumClients() }

// Shutdown moves clients off in lame-duck mode, then stops the server,
// flushing JetStream to disk. It returns when the server has stopped or
// ctx ends, in which case the server is stopped at once.
func (s *Server) Shutdown(ctx context.Context) {
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
