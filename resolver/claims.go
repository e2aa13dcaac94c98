package resolver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Subjects of the full resolver's protocol, answered by every server in
// the system account.
const (
	subjUpdate  = "$SYS.REQ.CLAIMS.UPDATE"
	subjLookup  = "$SYS.REQ.ACCOUNT.%s.CLAIMS.LOOKUP"
	subjList    = "$SYS.REQ.CLAIMS.LIST"
	subjDelete  = "$SYS.REQ.CLAIMS.DELETE"
	subjJSPurge = "$JS.API.ACCOUNT.PURGE.%s"
)

// Claims speaks the resolver protocol over a system-account connection.
type Claims struct {
	nc      *nats.Conn
	timeout time.Duration
}

// NewClaims returns a Claims over nc, a connection of a system-account
// user. Each request waits at most timeout.
func NewClaims(nc *nats.Conn, timeout time.Duration) *Claims {
	return &Claims{nc: nc, timeout: timeout}
}

// claimsError is the error of a system request's answer.
type claimsError struct {
	Account     string `json:"account"`
	Code        int    `json:"code"`
	Description string `json:"description"`
}

// claimsReply is the server's answer to UPDATE and DELETE.
type claimsReply struct {
	Data *struct {
		Account string `json:"account"`
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"data"`
	Error *claimsError `json:"error"`
}

func (c *Claims) request(ctx context.Context, subj string, data []byte) (*nats.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	msg, err := c.nc.RequestWithContext(ctx, subj, data)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("%s: no resolver answered; is the server running with the full resolver?", subj)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", subj, err)
	}
	return msg, nil
}

// ask sends a request and decodes its JSON answer into a T; what names
// the request in errors.
func ask[T any](ctx context.Context, c *Claims, subj string, data []byte, what string) (T, error) {
	var r T
	msg, err := c.request(ctx, subj, data)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return r, fmt.Errorf("%s: unreadable reply %q", what, msg.Data)
	}
	return r, nil
}

// Push stores an account JWT in the resolver. The servers apply it at once
// to a loaded account: revocations close connections, limits take effect.
func (c *Claims) Push(ctx context.Context, accountJWT string) error {
	r, err := ask[claimsReply](ctx, c, subjUpdate, []byte(accountJWT), "push")
	if err != nil {
		return err
	}
	if r.Error != nil {
		return fmt.Errorf("push %s: the resolver refused it: %s", r.Error.Account, r.Error.Description)
	}
	return nil
}

// Lookup returns the JWT the resolver holds for an account, or "" when no
// server holds it.
func (c *Claims) Lookup(ctx context.Context, account string) (string, error) {
	msg, err := c.request(ctx, fmt.Sprintf(subjLookup, account), nil)
	if err != nil {
		return "", err
	}
	return string(msg.Data), nil
}

// List returns the public keys of every account in the resolver.
func (c *Claims) List(ctx context.Context) ([]string, error) {
	r, err := ask[struct {
		Data  []string     `json:"data"`
		Error *claimsError `json:"error"`
	}](ctx, c, subjList, nil, "list")
	if err != nil {
		return nil, err
	}
	if r.Error != nil {
		return nil, fmt.Errorf("list: %s", r.Error.Description)
	}
	return r.Data, nil
}

// Delete removes accounts from the resolver. The request is a generic JWT
// that an operator signing key issues to itself, which is how the full
// resolver knows the operator asked for it.
func (c *Claims) Delete(ctx context.Context, signer nkeys.KeyPair, accounts ...string) error {
	pub, err := signer.PublicKey()
	if err != nil {
		return err
	}
	gc := jwt.NewGenericClaims(pub)
	gc.Data["accounts"] = accounts
	tok, err := gc.Encode(signer)
	if err != nil {
		return fmt.Errorf("delete: sign request: %w", err)
	}
	r, err := ask[claimsReply](ctx, c, subjDelete, []byte(tok), "delete")
	if err != nil {
		return err
	}
	if r.Error != nil {
		return fmt.Errorf("delete: the resolver refused it: %s", r.Error.Description)
	}
	return nil
}

// PurgeJetStream deletes every stream of an account and its JetStream
// folder. A deleted account's data would otherwise stay on disk and be
// recovered at every start.
func (c *Claims) PurgeJetStream(ctx context.Context, account string) error {
	r, err := ask[struct {
		Initiated bool         `json:"initiated"`
		Error     *claimsError `json:"error"`
	}](ctx, c, fmt.Sprintf(subjJSPurge, account), nil, "purge")
	if err != nil {
		return err
	}
	if r.Error != nil {
		return fmt.Errorf("purge JetStream of %s: %s", account, r.Error.Description)
	}
	if !r.Initiated {
		return fmt.Errorf("purge JetStream of %s: not started", account)
	}
	return nil
}
