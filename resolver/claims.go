package resolver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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

// claimsReply is the server's answer to UPDATE and DELETE.
type claimsReply struct {
	Data *struct {
		Account string `json:"account"`
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"data"`
	Error *struct {
		Account     string `json:"account"`
		Code        int    `json:"code"`
		Description string `json:"description"`
	} `json:"error"`
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

// Push stores an account JWT in the resolver. The servers apply it at once
// to a loaded account: revocations close connections, limits take effect.
func (c *Claims) Push(ctx context.Context, accountJWT string) error {
	msg, err := c.request(ctx, subjUpdate, []byte(accountJWT))
	if err != nil {
		return err
	}
	var r claimsReply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return fmt.Errorf("push: unreadable reply %q", msg.Data)
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
	msg, err := c.request(ctx, subjList, nil)
	if err != nil {
		return nil, err
	}
	var r struct {
		Data  []string `json:"data"`
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return nil, fmt.Errorf("list: unreadable reply: %w", err)
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
	msg, err := c.request(ctx, subjDelete, []byte(tok))
	if err != nil {
		return err
	}
	var r claimsReply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return fmt.Errorf("delete: unreadable reply %q", msg.Data)
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
	msg, err := c.request(ctx, fmt.Sprintf(subjJSPurge, account), nil)
	if err != nil {
		return err
	}
	var r struct {
		Initiated bool `json:"initiated"`
		Error     *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return fmt.Errorf("purge: unreadable reply %q", msg.Data)
	}
	if r.Error != nil {
		return fmt.Errorf("purge JetStream of %s: %s", account, r.Error.Description)
	}
	if !r.Initiated {
		return fmt.Errorf("purge JetStream of %s: not started (%s)", account, strings.TrimSpace(string(msg.Data)))
	}
	return nil
}
