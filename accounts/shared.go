package accounts

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

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
	e, err := s.secrets.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("shared secret %s: %w", name, err)
	}
	return checkShared(name, e.Value())
}

func checkShared(name string, b []byte) ([]byte, error) {
	if len(b) != 32 {
		return nil, fmt.Errorf("shared secret %s is damaged (%d bytes, want 32)", name, len(b))
	}
	return b, nil
}
