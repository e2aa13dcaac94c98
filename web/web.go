// Package web is latch's HTTP side: the HTMX pages a person uses to log in
// with a passkey, enroll and revoke devices and look after their passkeys;
// the admin pages; and the device enrollment API (an RFC 8628 device flow,
// JSON both ways) that `latch client enroll` and other clients speak.
//
// Handlers see the account service through the narrow Accounts interface
// below; they never touch NATS themselves. routes.go is the table of
// contents.
package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/views"
)

// Signup modes.
const (
	SignupInvite = "invite" // an invite link is needed (the default)
	SignupOpen   = "open"   // anyone who reaches the page may sign up
	SignupClosed = "closed" // nobody new, not even with an invite
)

// Accounts is what the handlers need of the account service.
type Accounts interface {
	personService
	passkeyService
	sessionService
	enrollService
	deviceService
	inviteService
	auditService
	recordService
	releaseService
}

// Presence tells whether devices are online, and when they were last seen.
type Presence interface {
	Online(account, user string) bool
	Conns(account, user string) int
	LastSeen(account, user string) (time.Time, bool)
	// Subscribe tells of the account's users coming online or going
	// offline until cancel; the channel is closed then.
	Subscribe(account string) (events <-chan PresenceEvent, cancel func())
}

// PresenceEvent is a user of an account coming online or going offline.
type PresenceEvent struct {
	Account string // account public key (A…)
	User    string // user public key (U…)
	Online  bool
}

// Status is what the admin page shows of the server.
type Status interface {
	Status(ctx context.Context) (ServerStatus, error)
}

// ServerStatus is the state of the NATS server behind latch.
type ServerStatus struct {
	Name          string
	Version       string
	Uptime        time.Duration
	Connections   int
	JetStream     string // "ok" or what is wrong
	StorageUsed   uint64
	MemoryUsed    uint64
	Accounts      int // account JWTs the resolver holds
	ClientURL     string
	ResolverError string
	// Nodes are the deployment's nodes, when there are several.
	Nodes []accounts.NodeStatus
	// Drift are the accounts whose JWT on a node is not latch's record.
	Drift []accounts.Drift
}

// Config is what the web server needs.
type Config struct {
	// PublicURL is where people reach latch; the passkey relying party ID
	// and origin come from it. Default http://localhost:8080.
	PublicURL string
	// Signup is SignupInvite, SignupOpen or SignupClosed.
	Signup string
	// Name is the deployment's name (the operator's), and Version latch's;
	// every page shows them.
	Name, Version string
	// Servers are the NATS URLs handed to enrolled devices, asked anew
	// for each: in a cluster, the nodes known at that moment.
	Servers func() []string
	// TLSFirst tells devices to connect to Servers with the TLS handshake
	// first: they are a proxy that ends TLS from the first byte.
	TLSFirst bool
	// ReleaseKey is the public key that signs releases' manifests: the
	// downloads page shows it, and enrolled devices are given it.
	ReleaseKey string
	// SessionSecret is the secret the session cookie's keys are derived
	// from; every node that shares it accepts the others' sessions. Empty
	// makes keys of this process only.
	SessionSecret []byte
	// SessionKeys, when set, are the cookie keys themselves: a 32 or
	// 64-byte authentication key and a 32-byte encryption key, newest pair
	// first. Tests set them.
	SessionKeys [][]byte
	// TrustProxy takes the client's address from the last entry of
	// X-Forwarded-For, which a reverse proxy in front of latch appends.
	// Only set it when every request comes through such a proxy: anyone
	// who reaches latch directly could name any address.
	TrustProxy bool
	// DownloadTTL is the lifetime of creds made for download. Default 7 days.
	DownloadTTL time.Duration
	// BodyTimeout is how long a request's body may take to arrive, and
	// WriteTimeout an answer to go out (live event streams have none).
	// Defaults 10 s and 60 s.
	BodyTimeout, WriteTimeout time.Duration

	Accounts Accounts
	Presence Presence // may be nil: devices are then never shown online
	Status   Status   // may be nil
	Log      *slog.Logger
	// Now is the clock; tests set it. Default time.Now.
	Now func() time.Time
}

// Server is latch's HTTP handler.
type Server struct {
	cfg      Config
	log      *slog.Logger
	origin   string // scheme://host[:port] of PublicURL
	secure   bool   // PublicURL is https
	site     views.Site
	webauthn *webauthn.WebAuthn
	sessions *sessionStore
	limits   *limiters
	// closing is closed by CloseStreams: the event streams end.
	closing   chan struct{}
	closeOnce sync.Once
	handler   http.Handler
}

// New checks the configuration and builds the handler.
func New(cfg Config) (*Server, error) {
	if cfg.Accounts == nil {
		return nil, errors.New("web: Config.Accounts is required")
	}
	if cfg.PublicURL == "" {
		cfg.PublicURL = "http://localhost:8080"
	}
	switch cfg.Signup {
	case "":
		cfg.Signup = SignupInvite
	case SignupInvite, SignupOpen, SignupClosed:
	default:
		return nil, fmt.Errorf("signup mode %q: want invite, open or closed", cfg.Signup)
	}
	if cfg.DownloadTTL == 0 {
		cfg.DownloadTTL = 7 * 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	u, err := url.Parse(cfg.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("public URL %q: want http(s)://host[:port]", cfg.PublicURL)
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("public URL %q: latch must be served at the root of its host, without a path", cfg.PublicURL)
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = 10 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = time.Minute
	}
	s := &Server{cfg: cfg, log: cfg.Log, origin: u.Scheme + "://" + u.Host, secure: u.Scheme == "https"}
	s.site = views.Site{Name: cfg.Name, Version: cfg.Version, Insecure: !s.secure && !isLoopback(u.Hostname())}
	rpName := "latch"
	if cfg.Name != "" && cfg.Name != "latch" {
		rpName = "latch · " + cfg.Name
	}
	s.webauthn, err = webauthn.New(&webauthn.Config{
		RPID:          u.Hostname(),
		RPDisplayName: rpName,
		RPOrigins:     []string{s.origin},
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:        protocol.ResidentKeyRequirementRequired,
			RequireResidentKey: protocol.ResidentKeyRequired(),
			UserVerification:   protocol.VerificationRequired,
		},
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Enforce: true, Timeout: 2 * time.Minute},
			Registration: webauthn.TimeoutConfig{Enforce: true, Timeout: 5 * time.Minute},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("passkeys for %s: %w", cfg.PublicURL, err)
	}
	keys := cfg.SessionKeys
	if len(keys) == 0 && len(cfg.SessionSecret) > 0 {
		keys = sessionKeysOf(cfg.SessionSecret)
	}
	s.sessions, err = newSessionStore(keys, s.secure)
	if err != nil {
		return nil, err
	}
	s.limits = newLimiters(cfg.Now)
	s.closing = make(chan struct{})
	s.handler = s.routes()
	return s, nil
}

// ServeHTTP serves latch's pages and API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// url makes an absolute URL of a path under the public URL.
func (s *Server) url(path string) string { return s.origin + path }

// forwardedFor is the address the proxy in front of latch saw the request
// come from: the last entry of X-Forwarded-For, the one that proxy added.
func forwardedFor(r *http.Request) (string, bool) {
	vals := r.Header.Values("X-Forwarded-For")
	if len(vals) == 0 {
		return "", false
	}
	parts := strings.Split(vals[len(vals)-1], ",")
	addr := strings.TrimSpace(parts[len(parts)-1])
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return "", false
	}
	return ip.String(), true
}

// clientAddr is the request's remote address without the port.
func clientAddr(r *http.Request) string {
	addr := r.RemoteAddr
	if i := strings.LastIndexByte(addr, ':'); i > 0 {
		addr = addr[:i]
	}
	return strings.Trim(addr, "[]")
}

// isLoopback reports whether a host name is this machine, where browsers
// allow passkeys over plain http.
func isLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
