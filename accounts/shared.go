package accounts

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// SharedSecret returns the server-wide secret of the given name, 32
// random bytes made on first use and kept in the secrets bucket, which
// JetStream encrypts at rest and replicates: every node of a cluster reads
// the same one. The web session keys are derived from one.
func (s *Service) SharedSecret(ctx context.Context, name string) ([]byte, error) {
	key := "shared." + name
	if e, err := s.secrets.Get(ctx, key); err == nil {
		return checkShared(name, e.Value())
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("shared secret %s: %w", name, err)
	}
	b := make([]byte, 32)
	rand.Read(b)
	// Create, so that of two nodes making it at once, one wins and both
	// use the winner's.
	if _, err := s.secrets.Create(ctx, key, b); err == nil {
		return b, nil
	} else if !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, fmt.Errorf("shared secret %s: %w", name, err)
	}
	// The winner's write may still be on its way to the leader's log: in a
	// replicated bucket a create is refused while another one of the same
	// key is proposed, before it is committed.
	for wait := 20 * time.Millisecond; ; wait *= 2 {
		e, err := s.secrets.Get(ctx, key)
		if err == nil {
			return checkShared(name, e.Value())
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) || wait > 5*time.Second {
			return nil, fmt.Errorf("shared secret %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}

func checkShared(name string, b []byte) ([]byte, error) {
	if len(b) != 32 {
		return nil, fmt.Errorf("shared secret %s is damaged (%d bytes, want 32)", name, len(b))
	}
	return b, nil
}
