package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/operator"
	"github.com/latch-dev/latch/resolver"
	"github.com/latch-dev/latch/server"
	"github.com/latch-dev/latch/web"
	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"
)

// benchNode is the server a bench measures: by default latch serve's
// server, in this process, on a data folder of the bench's own, with a
// connection of the folder's first admin; with --server, a running latch,
// through an admin's creds.
type benchNode struct {
	dir      string // the data folder
	credsDir string // where devices' creds go, beside it
	op       *operator.Tree
	cfg      server.Config
	s        *server.Server
	nc       *nats.Conn
	admin    *accounts.AdminClient
	remove   string    // removed by close; empty with --keep or --dir
	nready   readyTook // how long the last start's nats-server took
	bar      *progress // the operations done, on a terminal
	barMu    sync.Mutex

	// A running latch (--server): its NATS and web addresses, the CA of
	// its certificate, the names the bench gives its persons, and the
	// persons it made, deleted by close unless --keep.
	remote          bool
	server, web, ca string
	prefix          string
	made            []string
	closeAdmin      func()
	keep            bool
}

// benchNodeOptions say where a bench node keeps its data and how it runs.
type benchNodeOptions struct {
	dir        string // the data folder; empty makes a temporary one
	keep       bool   // keep a temporary folder, or a running latch's persons
	noHistory  bool   // server.Config's NoRecordsHistory
	trustProxy bool   // server.Config's TrustProxy
	// server, when set, is a running latch's NATS URL, reached with the
	// admin client admin makes; web is its web address.
	server, web, ca string
	admin           func() (*accounts.AdminClient, func(), error)
}

// benchNodeOptionsOf reads benchNodeFlags.
func (e *env) benchNodeOptionsOf(c *cli.Context) benchNodeOptions {
	o := benchNodeOptions{dir: c.String("dir"), keep: c.Bool("keep"), noHistory: !c.Bool("records-history")}
	// Only --server itself, not $LATCH_SERVER: a bench makes persons, and
	// must not make them on a server somebody merely has in the environment.
	if c.IsSet("server") {
		o.server, o.web, o.ca = c.String("server"), c.String("url"), e.global(c, "ca")
		o.admin = func() (*accounts.AdminClient, func(), error) { return e.adminClient(c) }
	}
	return o
}

// openBenchNode makes a data folder (o.dir, or a new temporary one) and
// starts a server on it; with o.server it connects to that one instead.
func openBenchNode(ctx context.Context, o benchNodeOptions) (*benchNode, error) {
	if o.server != "" {
		admin, closeAdmin, err := o.admin()
		if err != nil {
			return nil, err
		}
		tag := make([]byte, 6)
		for i := range tag {
			tag[i] = "abcdefghijklmnopqrstuvwxyz"[rand.IntN(26)]
		}
		credsDir, err := os.MkdirTemp("", "latch-bench-creds-")
		if err != nil {
			closeAdmin()
			return nil, err
		}
		return &benchNode{remote: true, server: o.server, web: strings.TrimSuffix(o.web, "/"), ca: o.ca, admin: admin,
			closeAdmin: closeAdmin, credsDir: credsDir, remove: credsDir, keep: o.keep, prefix: "bench-" + string(tag) + "-"}, nil
	}
	n := &benchNode{dir: o.dir}
	if o.dir == "" {
		tmp, err := os.MkdirTemp("", "latch-bench-")
		if err != nil {
			return nil, err
		}
		n.dir = filepath.Join(tmp, "data")
		if !o.keep {
			n.remove = tmp
		}
	}
	var err error
	if n.op, err = operator.Init(n.dir, "bench"); err != nil {
		n.close()
		return nil, err
	}
	n.credsDir = filepath.Join(filepath.Dir(n.dir), "bench-creds")
	if err := os.MkdirAll(n.credsDir, 0o700); err != nil {
		n.close()
		return nil, err
	}
	n.cfg = server.Config{
		Data: n.dir, NATS: "127.0.0.1:0", HTTP: "127.0.0.1:0", Name: "bench", Signup: web.SignupInvite,
		Limits: accounts.DefaultLimits(), DeviceTTL: 24 * time.Hour, MaxStore: 1 << 50, MaxMemory: 1 << 40,
		LameDuck: time.Second, Version: version, Log: slog.New(&n.nready), NoRecordsHistory: o.noHistory,
		TrustProxy: o.trustProxy,
	}
	if _, err := n.start(ctx); err != nil {
		n.close()
		return nil, err
	}
	return n, nil
}

// start opens the server and connects the admin; it returns the time
// from the open to ready.
func (n *benchNode) start(ctx context.Context) (time.Duration, error) {
	n.nready.took.Store(0)
	n.nready.checked.Store(0)
	began := time.Now()
	s, err := server.Open(ctx, n.cfg)
	if err != nil {
		return 0, err
	}
	select {
	case <-s.Ready():
	case <-s.Done():
		return 0, fmt.Errorf("the server stopped while starting: %v", s.Err())
	case <-ctx.Done():
		s.Close()
		return 0, ctx.Err()
	}
	took := time.Since(began)
	nc, err := nats.Connect(s.Addrs().NATS, nats.UserCredentials(filepath.Join(n.dir, operator.AdminCredsFile)),
		nats.CustomInboxPrefix(operator.AdminInboxPrefix(n.op.FirstAdmin)), nats.Timeout(10*time.Second))
	if err != nil {
		s.Close()
		return 0, err
	}
	n.s, n.nc, n.admin = s, nc, accounts.NewAdminClient(nc)
	return took, nil
}

// restart closes the server and starts it again on the same folder.
func (n *benchNode) restart(ctx context.Context) (time.Duration, error) {
	if n.remote {
		return 0, errors.New("a running latch is not restarted by a bench")
	}
	n.nc.Close()
	err := n.s.Close()
	n.s, n.nc = nil, nil
	if err != nil {
		return 0, err
	}
	return n.start(ctx)
}

func (n *benchNode) close() {
	if n.remote {
		if !n.keep {
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(len(n.made)+10)*time.Second)
			for _, p := range n.made {
				accounts.EndpointAccountDelete.Call(ctx, n.admin, accounts.AccountRequest{Name: p})
			}
			cancel()
		}
		n.closeAdmin()
	}
	if n.nc != nil {
		n.nc.Close()
	}
	if n.s != nil {
		n.s.Close()
	}
	if n.remove != "" {
		os.RemoveAll(n.remove)
	}
}

// progress shows a bar of total operations on w when it is a terminal;
// tick moves it. done ends it.
func (n *benchNode) progress(w io.Writer, total int, unit string) (done func()) {
	n.bar = newProgress(w, int64(total), unit)
	return n.bar.done
}

func (n *benchNode) tick() {
	if n.bar == nil {
		return
	}
	n.barMu.Lock()
	n.bar.add(1)
	n.barMu.Unlock()
}

// url is the server's NATS client URL.
func (n *benchNode) url() string {
	if n.remote {
		return n.server
	}
	return n.s.Addrs().NATS
}

// webURL is the server's web address, as people reach it.
func (n *benchNode) webURL() (string, error) {
	if !n.remote {
		return n.s.Addrs().Web, nil
	}
	if n.web == "" {
		return "", usagef("--url: the running latch's web address, such as https://latch.example.com, is needed with --server")
	}
	return n.web, nil
}

// connect connects a device with its creds.
func (n *benchNode) connect(creds string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.UserCredentials(creds), nats.Timeout(30 * time.Second),
		// A revoked device's connection is the point of a bench, not news.
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})}, opts...)
	if n.ca != "" {
		opts = append(opts, nats.RootCAs(n.ca))
	}
	return nats.Connect(n.url(), opts...)
}

// transport is what the bench's HTTP requests go through: trusting the
// CA of --ca, where given.
func (n *benchNode) transport() (http.RoundTripper, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if n.ca != "" {
		pem, err := os.ReadFile(n.ca)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate in it", n.ca)
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return t, nil
}

// person is the name of the bench's i-th person: on a running latch,
// under a prefix of this run's own.
func (n *benchNode) person(i int) string {
	if n.remote {
		return n.prefix + strconv.Itoa(i)
	}
	return fmt.Sprintf("p%07d", i)
}

// adopt takes the persons of a running latch whose display name is one
// of this run's names as the bench's own (people signed up through the
// web get a name of the server's choosing).
func (n *benchNode) adopt(ctx context.Context) {
	if !n.remote {
		return
	}
	ps, err := accounts.EndpointAccountList.Call(ctx, n.admin, accounts.NoRequest{})
	if err != nil {
		return
	}
	for _, p := range ps {
		if strings.HasPrefix(p.DisplayName, n.prefix) {
			n.made = append(n.made, p.Name)
		}
	}
}

// addPersons creates the bench's persons 0 … count-1.
func (n *benchNode) addPersons(ctx context.Context, count int) error {
	for i := range count {
		if err := n.addPerson(ctx, n.person(i)); err != nil {
			return fmt.Errorf("create a person: %w", err)
		}
	}
	return nil
}

// addPerson creates a person through the admin service.
func (n *benchNode) addPerson(ctx context.Context, name string) error {
	_, err := accounts.EndpointAccountAdd.Call(ctx, n.admin, accounts.AccountAddRequest{Name: name})
	if err == nil {
		n.made = append(n.made, name)
	}
	return err
}

// issue issues a device through the admin service and writes its creds
// to a file; it returns the file and the device's public key.
func (n *benchNode) issue(ctx context.Context, person, name string) (creds, pub string, err error) {
	r, err := accounts.EndpointDeviceIssue.Call(ctx, n.admin, accounts.DeviceIssueRequest{Account: person, Name: name})
	if err != nil {
		return "", "", err
	}
	creds = filepath.Join(n.credsDir, person+"-"+name+".creds")
	return creds, r.Device.PublicKey, os.WriteFile(creds, []byte(r.Creds), 0o600)
}

// readyTook is a log handler that keeps nothing but how long nats-server
// took to be ready (JetStream's recovery) at the last start, from the
// server's "nats is ready" line, and how long latch's checks of every
// account after a start took, from "every account checked …".
type readyTook struct {
	took    atomic.Int64
	checked atomic.Int64 // 0 until the checks of this start are done
}

func (r *readyTook) Enabled(context.Context, slog.Level) bool { return true }
func (r *readyTook) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *readyTook) WithGroup(string) slog.Handler            { return r }
func (r *readyTook) Handle(_ context.Context, rec slog.Record) error {
	into := map[string]*atomic.Int64{resolver.ReadyMessage: &r.took, server.CheckedMessage: &r.checked}[rec.Message]
	if into != nil {
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "took" {
				into.Store(max(1, int64(a.Value.Duration())))
			}
			return true
		})
	}
	return nil
}

// benchMachine is where a bench ran, for its report.
type benchMachine struct {
	Version string `json:"version"`
	CPUs    int    `json:"cpus"`
	GOOS    string `json:"goos"`
	GOARCH  string `json:"goarch"`
}

func thisMachine() benchMachine {
	return benchMachine{Version: version, CPUs: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH}
}

// benchNodeFlags are the flags of every bench that makes persons.
func benchNodeFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "dir", Usage: "the data folder to use (default: a new temporary one)"},
		&cli.BoolFlag{Name: "keep", Usage: "keep the data folder; with --server, the persons made"},
		&cli.BoolFlag{Name: "records-history", Value: true, Usage: "give each person a records history, as latch serve does by default (a running latch decides for itself)"},
		&cli.StringFlag{Name: "server", Usage: "measure a running latch at this NATS URL instead, with an admin's --creds: it makes persons named bench-<run>-N there, and deletes them at the end unless --keep (not $LATCH_SERVER: only this flag)"},
		&cli.StringFlag{Name: "url", Usage: "with --server: the running latch's public web address (its --public-url, where passkeys are bound), for enroll and web"},
		jsonFlag(),
	}, globalFlagsNamed("creds", "ca", "cert", "key", "data")...)
}
