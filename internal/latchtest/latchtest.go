// Package latchtest starts a real latch stack for tests: a fresh operator
// tree, the embedded nats-server in operator mode with the full resolver
// and encrypted JetStream on a random port, and the account service.
package latchtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/keys"
	"github.com/latch-dev/latch/operator"
	"github.com/latch-dev/latch/resolver"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Stack is a running latch for one test.
type Stack struct {
	Dir      string
	Operator *operator.Tree
	Server   *resolver.Server
	Service  *accounts.Service
	Claims   *resolver.Claims
	// Sys is a system-account connection; App a LATCH one.
	Sys, App *nats.Conn
}

// Options change the stack from its defaults.
type Options struct {
	// Dir reuses a data folder (for restarts); empty makes a new one.
	Dir    string
	Limits accounts.Limits
	// MaxStore and MaxMemory are the server's JetStream limits; zero
	// over-commits as latch serve does by default.
	MaxStore, MaxMemory int64
	// NoRecordsHistory is accounts.Config's.
	NoRecordsHistory bool
}

// MustStart starts a stack and stops it when the test ends.
func MustStart(tb testing.TB, o Options) *Stack {
	tb.Helper()
	s, err := Start(o)
	if err != nil {
		tb.Fatalf("start latch: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// Start starts a stack; Stop stops it.
func Start(o Options) (*Stack, error) {
	ctx := context.Background()
	if o.Dir == "" {
		return nil, errors.New("latchtest: Options.Dir is required")
	}
	op, err := operator.Load(o.Dir)
	if errors.Is(err, operator.ErrNotInitialised) {
		op, err = operator.Init(o.Dir, "test")
	}
	if err != nil {
		return nil, err
	}
	cfg, err := ServerConfig(op, o)
	if err != nil {
		return nil, err
	}
	ns, err := resolver.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s := &Stack{Dir: o.Dir, Operator: op, Server: ns}
	dial := func(userJWT string, seed []byte) (*nats.Conn, error) {
		// A private inbox prefix, as latch serve's own connections have.
		return nats.Connect("", nats.InProcessServer(ns), nats.UserJWTAndSeed(userJWT, string(seed)),
			nats.CustomInboxPrefix("_LATCH_INBOX.test"))
	}
	for _, c := range []struct {
		acct operator.AccountJWT
		dst  **nats.Conn
	}{{op.SystemAccount, &s.Sys}, {op.AppAccount, &s.App}} {
		tok, seed, err := op.MintUser(c.acct, "test")
		if err == nil {
			*c.dst, err = dial(tok, seed)
		}
		if err != nil {
			s.Stop()
			return nil, err
		}
	}
	signer, err := op.Signer()
	if err != nil {
		s.Stop()
		return nil, err
	}
	adminSigner, err := op.AdminSigner()
	if err != nil {
		s.Stop()
		return nil, err
	}
	releaseSigner, err := op.ReleaseSigner()
	if err != nil {
		s.Stop()
		return nil, err
	}
	s.Claims = resolver.NewClaims(s.Sys, 10*time.Second)
	s.Service, err = accounts.Open(ctx, accounts.Config{
		Signer: signer, Directory: s.Claims, App: s.App, Dial: dial, ReleaseSigner: releaseSigner,
		Limits: o.Limits, DeviceTTL: time.Hour,
		AdminAccount: op.AdminAccount.PublicKey, AdminSigner: adminSigner,
		AppAccount:  op.AppAccount.PublicKey,
		Connections: ns,
		Stored:      ns.StoredJWT,
		Apply:       ns.Apply,
		Node:        "test",

		NoRecordsHistory: o.NoRecordsHistory,
	})
	if err == nil {
		err = s.Service.RegisterFirstAdmin(ctx, op.FirstAdmin)
	}
	if err == nil {
		// As latch serve does; the admin service is each test's own.
		_, err = s.Service.ServeDeviceAPI(s.App, "0.0.0")
	}
	if err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// MustAdminConn connects with the data folder's admin.creds, a user of
// LATCH_ADMIN, as the CLI does, and closes the connection when the test
// ends.
func (s *Stack) MustAdminConn(tb testing.TB) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(s.Server.ClientURL(), nats.UserCredentials(filepath.Join(s.Dir, operator.AdminCredsFile)),
		nats.CustomInboxPrefix(operator.AdminInboxPrefix(s.Operator.FirstAdmin)))
	if err != nil {
		tb.Fatalf("connect with admin.creds: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// ServerConfig is the embedded server's configuration for the data folder
// o.Dir, initialised as op.
func ServerConfig(op *operator.Tree, o Options) (resolver.Config, error) {
	key, err := op.Keys.Secret(operator.JetStreamKeyName)
	if err != nil {
		return resolver.Config{}, err
	}
	if o.MaxStore == 0 {
		o.MaxStore = 1 << 50
	}
	if o.MaxMemory == 0 {
		o.MaxMemory = 1 << 40
	}
	return resolver.Config{
		Name: "test", DataDir: o.Dir, Listen: "127.0.0.1:0",
		OperatorJWT: op.OperatorJWT, SystemAccount: op.SystemAccount.PublicKey,
		Preload:      op.Preload(),
		JetStreamKey: string(key), MaxStore: o.MaxStore, MaxMemory: o.MaxMemory,
		LameDuck: time.Second,
	}, nil
}

// Stop closes the connections and shuts the server down.
func (s *Stack) Stop() {
	for _, nc := range []*nats.Conn{s.Sys, s.App} {
		if nc != nil {
			nc.Close()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.Server.Shutdown(ctx)
}

// MustCreatePerson creates a person account.
func (s *Stack) MustCreatePerson(tb testing.TB, name string) accounts.Person {
	tb.Helper()
	p, err := s.Service.CreatePerson(context.Background(), accounts.NewPerson{Name: name})
	if err != nil {
		tb.Fatalf("create person %s: %v", name, err)
	}
	return p
}

// Device is an issued device with its creds on disk.
type Device struct {
	accounts.Device
	CredsFile string
	Creds     keys.Creds
}

// MustIssueDevice issues a device and writes its creds to a 0600 file.
func (s *Stack) MustIssueDevice(tb testing.TB, account, name string) Device {
	tb.Helper()
	d, creds, err := s.Service.IssueDevice(context.Background(), accounts.NewDevice{Person: account, Name: name})
	if err != nil {
		tb.Fatalf("issue device %s/%s: %v", account, name, err)
	}
	path := filepath.Join(tb.TempDir(), "device.creds")
	if err := keys.WriteFileNew(path, creds); err != nil {
		tb.Fatal(err)
	}
	c, err := keys.ParseCreds(creds)
	if err != nil {
		tb.Fatal(err)
	}
	return Device{Device: d, CredsFile: path, Creds: c}
}

// Conn is a device connection that records the asynchronous errors the
// server sends it (permission violations) and its disconnects.
type Conn struct {
	*nats.Conn
	mu     sync.Mutex
	errs   []error
	Closed chan struct{}
	Disc   chan error
}

// MustConnect connects over TCP with creds, as any NATS client would.
func (s *Stack) MustConnect(tb testing.TB, credsFile string, opts ...nats.Option) *Conn {
	tb.Helper()
	c, err := s.Connect(credsFile, opts...)
	if err != nil {
		tb.Fatalf("connect with %s: %v", credsFile, err)
	}
	tb.Cleanup(c.Close)
	return c
}

// Connect connects over TCP with creds; it does not reconnect.
func (s *Stack) Connect(credsFile string, opts ...nats.Option) (*Conn, error) {
	c := &Conn{Closed: make(chan struct{}), Disc: make(chan error, 8)}
	opts = append([]nats.Option{
		nats.UserCredentials(credsFile),
		nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			c.errs = append(c.errs, err)
			c.mu.Unlock()
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { c.Disc <- err }),
		nats.ClosedHandler(func(*nats.Conn) { close(c.Closed) }),
	}, opts...)
	nc, err := nats.Connect(s.Server.ClientURL(), opts...)
	if err != nil {
		return nil, err
	}
	c.Conn = nc
	return c, nil
}

// Errors returns the asynchronous errors received so far.
func (c *Conn) Errors() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]error(nil), c.errs...)
}

// OtherService opens a second account service on the same server, with
// connections of its own over TCP, as another latch process or node
// would: what it does reaches this stack only through NATS.
func (s *Stack) OtherService(tb testing.TB) *accounts.Service {
	tb.Helper()
	dial := func(userJWT string, seed []byte) (*nats.Conn, error) {
		return nats.Connect(s.Server.ClientURL(), nats.UserJWTAndSeed(userJWT, string(seed)),
			nats.CustomInboxPrefix("_LATCH_INBOX.other"))
	}
	var sys, app *nats.Conn
	for _, c := range []struct {
		acct operator.AccountJWT
		dst  **nats.Conn
	}{{s.Operator.SystemAccount, &sys}, {s.Operator.AppAccount, &app}} {
		tok, seed, err := s.Operator.MintUser(c.acct, "other")
		if err == nil {
			*c.dst, err = dial(tok, seed)
		}
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup((*c.dst).Close)
	}
	signer, err := s.Operator.Signer()
	if err != nil {
		tb.Fatal(err)
	}
	svc, err := accounts.Open(context.Background(), accounts.Config{
		Signer: signer, Directory: resolver.NewClaims(sys, 10*time.Second), App: app, Dial: dial,
		DeviceTTL: time.Hour, AdminAccount: s.Operator.AdminAccount.PublicKey, AppAccount: s.Operator.AppAccount.PublicKey,
		Stored: s.Server.StoredJWT, Apply: s.Server.Apply, Node: "other",
	})
	if err != nil {
		tb.Fatal(err)
	}
	return svc
}

// RouteAddrs picks n free loopback addresses for route listeners. The
// nodes of a cluster must know each other's route addresses before any of
// them starts (a clustered JetStream refuses to start without routes), so
// unlike the other listeners these cannot be port 0. The ports come from
// below Linux's ephemeral range (32768 and up), where neither the other
// listeners' port 0 nor an outgoing connection's local port can take one
// between the check and the node's listen.
func RouteAddrs(tb testing.TB, n int) []string {
	tb.Helper()
	var addrs []string
	for len(addrs) < n {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		l, err := net.Listen("tcp", addr)
		if err != nil || slices.Contains(addrs, addr) {
			continue
		}
		l.Close()
		addrs = append(addrs, addr)
	}
	return addrs
}

// ForeignJWT is accountJWT re-signed with signer and tagged tag, issued
// later than accountJWT: a JWT of the account as someone other than latch
// (nsc) would push it, newer than latch's record.
func ForeignJWT(tb testing.TB, signer nkeys.KeyPair, accountJWT, tag string) string {
	tb.Helper()
	ac, err := jwt.DecodeAccountClaims(accountJWT)
	if err != nil {
		tb.Fatal(err)
	}
	ac.Tags.Add(tag)
	for time.Now().Unix() <= ac.IssuedAt {
		time.Sleep(50 * time.Millisecond) // iat is in seconds: it must be later
	}
	tok, err := ac.Encode(signer)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// Eventually waits for cond to return nil, for up to 30 s, and fails the
// test with what and cond's last error if it does not.
func Eventually(tb testing.TB, what string, cond func() error) {
	tb.Helper()
	EventuallyWithin(tb, 30*time.Second, what, cond)
}

// EventuallyWithin is Eventually for up to d.
func EventuallyWithin(tb testing.TB, d time.Duration, what string, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
