package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/operator"
	"github.com/latch-dev/latch/server"
	"github.com/latch-dev/latch/web"
	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"
)

// benchNode is latch serve's server, in this process, on a data folder
// of the bench's own, with a connection of the folder's first admin.
type benchNode struct {
	dir      string // the data folder
	credsDir string // where devices' creds go, beside it
	op       *operator.Tree
	cfg      server.Config
	s        *server.Server
	nc       *nats.Conn
	admin    *accounts.AdminClient
	remove   string // removed by close; empty with --keep or --dir
}

// benchNodeOptions say where a bench node keeps its data and how it runs.
type benchNodeOptions struct {
	dir        string // the data folder; empty makes a temporary one
	keep       bool   // keep a temporary folder
	noHistory  bool   // server.Config's NoRecordsHistory
	trustProxy bool   // server.Config's TrustProxy
}

// benchNodeOptionsOf reads benchNodeFlags.
func benchNodeOptionsOf(c *cli.Context) benchNodeOptions {
	return benchNodeOptions{dir: c.String("dir"), keep: c.Bool("keep"), noHistory: !c.Bool("records-history")}
}

// openBenchNode makes a data folder (o.dir, or a new temporary one) and
// starts a server on it.
func openBenchNode(ctx context.Context, o benchNodeOptions) (*benchNode, error) {
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
		LameDuck: time.Second, Version: version, Log: slog.New(slog.DiscardHandler), NoRecordsHistory: o.noHistory,
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
	n.nc.Close()
	err := n.s.Close()
	n.s, n.nc = nil, nil
	if err != nil {
		return 0, err
	}
	return n.start(ctx)
}

func (n *benchNode) close() {
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

// url is the server's NATS client URL.
func (n *benchNode) url() string { return n.s.Addrs().NATS }

// addPerson creates a person through the admin service.
func (n *benchNode) addPerson(ctx context.Context, name string) error {
	_, err := accounts.EndpointAccountAdd.Call(ctx, n.admin, accounts.AccountAddRequest{Name: name})
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

// benchNodeFlags are the flags of every bench that runs its own server.
func benchNodeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "dir", Usage: "the data folder to use (default: a new temporary one)"},
		&cli.BoolFlag{Name: "keep", Usage: "keep the data folder"},
		&cli.BoolFlag{Name: "records-history", Value: true, Usage: "give each person a records history, as latch serve does by default"},
		jsonFlag(),
	}
}
