package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/keys"
	"github.com/latch-dev/latch/operator"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"
)

// adminClient connects to the latch server with the admin creds and
// returns a client of its admin service, and a function to close it.
func (e *env) adminClient(c *cli.Context) (*accounts.AdminClient, func(), error) {
	url, credsPath := e.global(c, "server"), e.global(c, "creds")
	creds, err := keys.ReadCreds(credsPath)
	if err != nil {
		if _, serr := os.Stat(credsPath); errors.Is(serr, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("no admin creds at %s; pass --creds or --data, or run `latch init` first", credsPath)
		}
		return nil, nil, err
	}
	uc, err := jwt.DecodeUserClaims(creds.JWT)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", credsPath, err)
	}
	opts := []nats.Option{
		nats.UserJWTAndSeed(creds.JWT, string(creds.Seed)),
		// Admin creds receive replies under their own prefix only.
		nats.CustomInboxPrefix(operator.AdminInboxPrefix(uc.Subject)),
		nats.Name("latch cli"),
		nats.Timeout(5 * time.Second),
		nats.NoReconnect(),
	}
	if ca := e.global(c, "ca"); ca != "" {
		opts = append(opts, nats.RootCAs(ca))
	}
	switch cert, key := e.global(c, "cert"), e.global(c, "key"); {
	case cert != "" && key != "":
		opts = append(opts, nats.ClientCert(cert, key))
	case cert != "" || key != "":
		return nil, nil, usagef("--cert and --key go together")
	}
	nc, err := connectAdmin(url, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot reach the latch server at %s: %v; is `latch serve` running? (set --server or LATCH_SERVER)", url, err)
	}
	return accounts.NewAdminClient(nc), nc.Close, nil
}

// connectAdmin connects to url. A tls:// server may be a proxy that ends
// TLS from the first byte (latch on fly.io), which a client reaches only
// with the TLS handshake first: that is tried first, and a server that
// speaks NATS first answers it at once with its INFO line, which fails
// the handshake, so the usual connection is tried next.
func connectAdmin(url string, opts []nats.Option) (*nats.Conn, error) {
	if !strings.HasPrefix(url, "tls://") {
		return nats.Connect(url, opts...)
	}
	nc, firstErr := nats.Connect(url, append(slices.Clip(opts), nats.TLSHandshakeFirst())...)
	if firstErr == nil {
		return nc, nil
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("%v (and with the TLS handshake first: %v)", err, firstErr)
	}
	return nc, nil
}

// adminAction wraps an admin command's action: it checks the positional
// arguments, then connects.
func (e *env) adminAction(argNames []string, f func(c *cli.Context, ac *accounts.AdminClient, args []string) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		a, err := args(c, argNames...)
		if err != nil {
			return err
		}
		ac, done, err := e.adminClient(c)
		if err != nil {
			return err
		}
		defer done()
		return f(c, ac, a)
	}
}

// adminCall is the action of an admin command that makes one call: req
// makes the request from the command line, and show prints the reply, or
// --json prints it as JSON.
func adminCall[Req, Rep any](e *env, argNames []string, ep accounts.Endpoint[Req, Rep],
	req func(c *cli.Context, args []string) (Req, error), show func(c *cli.Context, r Rep) error) cli.ActionFunc {
	return e.adminAction(argNames, func(c *cli.Context, ac *accounts.AdminClient, a []string) error {
		rq, err := req(c, a)
		if err != nil {
			return err
		}
		r, err := ep.Call(c.Context, ac, rq)
		if err != nil {
			return err
		}
		if c.Bool("json") {
			return printJSON(e.stdout, r)
		}
		return show(c, r)
	})
}

// noRequest is the request of an endpoint that takes none.
func noRequest(*cli.Context, []string) (accounts.NoRequest, error) { return accounts.NoRequest{}, nil }
