package accounts

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
)

// errNoJWT is returned for a change to an account the resolver lacks.
var errNoJWT = errorf(ErrNotFound, "the resolver holds no JWT for this account")

// A change edits an account's claims. It returns an error to refuse the
// edit; the other changes of the same batch still go through.
type change func(ac *jwt.AccountClaims) error

// writer serializes the changes to one account JWT. Changes that arrive
// while a JWT is being signed and pushed wait and then go out together in
// the next one, so a burst of revocations costs one push, not one each.
type writer struct {
	mu      sync.Mutex
	queue   []*pending
	running bool

	// claims and iat are the last JWT this writer pushed; nil until the
	// first change, when the resolver's copy is read.
	claims *jwt.AccountClaims
	iat    int64
}

type pending struct {
	change change
	done   chan error
}

func (s *Service) writer(account string) *writer {
	w, _ := s.writers.LoadOrStore(account, &writer{})
	return w.(*writer)
}

// update applies a change to an account JWT, signs it, pushes it and
// returns once the resolver has it. It always waits for the outcome, even
// when ctx ends: a revocation is never left in doubt.
func (s *Service) update(account string, c change) error {
	w := s.writer(account)
	p := &pending{change: c, done: make(chan error, 1)}
	w.mu.Lock()
	w.queue = append(w.queue, p)
	if !w.running {
		w.running = true
		go s.drain(account, w)
	}
	w.mu.Unlock()
	return <-p.done
}

func (s *Service) drain(account string, w *writer) {
	for {
		w.mu.Lock()
		batch := w.queue
		w.queue = nil
		if len(batch) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		s.commit(account, w, batch)
	}
}

// commit applies a batch of changes in one JWT.
func (s *Service) commit(account string, w *writer, batch []*pending) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fail := func(err error) {
		for _, p := range batch {
			p.done <- err
		}
		// What the resolver holds is now unknown; read it again next time.
		w.setClaims(nil, 0)
	}
	if w.claims == nil {
		tok, err := s.cfg.Directory.Lookup(ctx, account)
		if err != nil {
			fail(fmt.Errorf("read account %s: %w", account, err))
			return
		}
		if tok == "" {
			fail(errNoJWT)
			return
		}
		ac, err := jwt.DecodeAccountClaims(tok)
		if err != nil {
			fail(fmt.Errorf("account %s: the resolver's JWT is invalid: %w", account, err))
			return
		}
		w.setClaims(ac, ac.IssuedAt)
	}
	// Changes edit a copy, so a failed push leaves the cached claims as
	// the resolver has them.
	next, err := copyClaims(w.claims)
	if err != nil {
		fail(err)
		return
	}
	errs := make([]error, len(batch))
	applied := 0
	for i, p := range batch {
		before, _ := copyClaims(next)
		if errs[i] = p.change(next); errs[i] != nil {
			next = before // a refused change leaves no trace
			continue
		}
		applied++
	}
	if applied > 0 {
		tok, iat, err := s.sign(next, w.iat)
		if err == nil {
			err = s.cfg.Directory.Push(ctx, tok)
		}
		if err != nil {
			fail(fmt.Errorf("publish account %s: %w", account, err))
			return
		}
		w.setClaims(next, iat)
	}
	for i, p := range batch {
		p.done <- errs[i]
	}
}

// setClaims records the claims the resolver now holds. Only the writer's
// goroutine sets or reads them, except revokedInJWT, which reads under mu;
// claims are never changed once set (changes edit a copy).
func (w *writer) setClaims(ac *jwt.AccountClaims, iat int64) {
	w.mu.Lock()
	w.claims, w.iat = ac, iat
	w.mu.Unlock()
}

// sign signs claims with the operator signing key, with an iat later than
// last. The jwt library stamps iat with the current second, so when the
// last JWT was signed in this second the writer waits for the next one:
// that wait is what keeps every revocation ahead of the JWT it replaced.
func (s *Service) sign(ac *jwt.AccountClaims, last int64) (string, int64, error) {
	for {
		now := time.Now()
		if now.Unix() > last {
			break
		}
		time.Sleep(time.Unix(now.Unix()+1, 0).Sub(now))
	}
	tok, err := ac.Encode(s.cfg.Signer)
	if err != nil {
		return "", 0, err
	}
	return tok, ac.IssuedAt, nil
}

// copyClaims makes a deep copy through the claims' JSON.
func copyClaims(ac *jwt.AccountClaims) (*jwt.AccountClaims, error) {
	var c jwt.AccountClaims
	b, err := json.Marshal(ac)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// forget drops an account's writer state, as when the account is deleted.
func (s *Service) forget(account string) {
	s.writers.Delete(account)
	s.signers.Delete(account)
}

// revokedInJWT reports whether the last account JWT this service pushed
// revokes the user key.
func (s *Service) revokedInJWT(account, user string) bool {
	v, ok := s.writers.Load(account)
	if !ok {
		return false
	}
	w := v.(*writer)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.claims == nil {
		return false
	}
	_, revoked := w.claims.Revocations[user]
	return revoked
}
