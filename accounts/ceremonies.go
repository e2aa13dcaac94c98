package accounts

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// CeremonyLifetime is how long a passkey ceremony may take between its
// begin and its finish.
const CeremonyLifetime = 5 * time.Minute

// A passkey ceremony's state (the challenge among it) is kept on the
// server, in latch_sessions under "c.<SHA-256 of a token>", and the
// browser holds only the token: each challenge is answered at most once,
// whatever a browser sends again.
type ceremonyRecord struct {
	Created time.Time `json:"created"`
	State   []byte    `json:"state"`
}

func ceremonyKey(token string) string { return "c." + SessionID(token) }

// errNoCeremony is a ceremony that is not (or no longer) there.
var errNoCeremony = errorf(ErrNotFound, "no passkey request is in progress, or it expired; start again")

// SaveCeremony keeps the state of a passkey ceremony begun at now and
// returns its token.
func (s *Service) SaveCeremony(ctx context.Context, state []byte, now time.Time) (string, error) {
	b := make([]byte, 32)
	rand.Read(b)
	token := base64.RawURLEncoding.EncodeToString(b)
	if err := createJSON(ctx, s.sessions, ceremonyKey(token), ceremonyRecord{Created: now.UTC(), State: state}); err != nil {
		return "", fmt.Errorf("keep the passkey ceremony: %w", err)
	}
	return token, nil
}

// TakeCeremony returns the state of the ceremony of token and ends it, so
// that of any number of calls with one token one at most gets it.
func (s *Service) TakeCeremony(ctx context.Context, token string, now time.Time) ([]byte, error) {
	if token == "" || len(token) > 128 {
		return nil, errNoCeremony
	}
	key := ceremonyKey(token)
	var c ceremonyRecord
	rev, err := getJSON(ctx, s.sessions, key, &c)
	if err != nil {
		if isNotFound(err) {
			return nil, errNoCeremony
		}
		return nil, err
	}
	// Removed only if nobody removed it first.
	if err := s.sessions.Purge(ctx, key, jetstream.LastRevision(rev)); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, errNoCeremony
		}
		return nil, err
	}
	if age := now.Sub(c.Created); age > CeremonyLifetime || age < -time.Minute {
		return nil, errNoCeremony
	}
	return c.State, nil
}
