package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"
)

// errNoJWT is returned for a change to an account neither the record nor
// the resolver has.
var errNoJWT = errorf(ErrNotFound, "the resolver holds no JWT for this account")

// A change edits an account's claims. It returns an error to refuse the
// edit; the other changes of the same batch still go through. A change
// may be applied more than once (when another node committed first, the
// batch is applied again to what it committed), so it only edits ac.
type change func(ac *jwt.AccountClaims) error

// writer serializes this process's changes to one account JWT. Changes
// that arrive while a JWT is being signed and pushed wait and then go out
// together in the next one, so a burst of revocations costs one push, not
// one each.
//
// Across processes (the nodes of a cluster) the order comes from the
// record of truth, the LATCH bucket latch_jwts: each new JWT is committed
// there with compare-and-set on the revision it was made from before it is
// pushed. A writer that lost the race reads the winner's JWT, applies its
// batch to it again and commits anew, so no node's change is ever lost to
// another's, and the iat of an account's JWTs keeps going up.
type writer struct {
	mu      sync.Mutex
	queue   []*pending
	running bool

	// claims, iat and rev are the last JWT this writer committed or read
	// from the record (its revision there); nil until the first change.
	claims *jwt.AccountClaims
	iat    int64
	rev    uint64
}

type pending struct {
	change change
	// after, when set, is an iat the new JWT must be later than (one
	// found on a node that is not latch's, for a repair).
	after int64
	done  chan error
}

func (s *Service) writer(account string) *writer {
	w, _ := s.writers.LoadOrStore(account, &writer{})
	return w.(*writer)
}

// update applies a change to an account JWT, signs it, commits it to the
// record, pushes it and returns once the resolver has it. It always waits
// for the outcome, even when ctx ends: a revocation is never left in doubt.
func (s *Service) update(account string, c change) error {
	return s.updateAfter(account, 0, c)
}

// updateAfter is update with a JWT issued later than after.
func (s *Service) updateAfter(account string, after int64, c change) error {
	w := s.writer(account)
	p := &pending{change: c, after: after, done: make(chan error, 1)}
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

// maxCommitRaces is how often a batch is applied again after another
// node committed first, before the batch fails.
const maxCommitRaces = 20

// commit applies a batch of changes in one JWT.
func (s *Service) commit(account string, w *writer, batch []*pending) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fail := func(err error) {
		for _, p := range batch {
			p.done <- err
		}
		// What the record holds is now unknown; read it again next time.
		w.set(nil, 0, 0)
	}
	for race := 0; ; race++ {
		if w.claims == nil {
			ac, rev, err := s.recorded(ctx, account)
			if err != nil {
				fail(err)
				return
			}
			w.set(ac, ac.IssuedAt, rev)
		}
		// Changes edit a copy, so a failed commit leaves the cached claims
		// as the record has them.
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
			last := w.iat
			for _, p := range batch {
				last = max(last, p.after)
			}
			tok, iat, err := s.sign(next, last)
			if err != nil {
				fail(err)
				return
			}
			rev, err := s.record(ctx, account, tok, w.rev)
			if errors.Is(err, errCommitRace) && race < maxCommitRaces {
				w.set(nil, 0, 0) // another node committed first: again, on its JWT
				continue
			}
			if err != nil {
				fail(fmt.Errorf("commit account %s: %w", account, err))
				return
			}
			w.set(next, iat, rev)
			if err := s.push(ctx, account, tok, rev); err != nil {
				// Committed but not pushed: the record has it, and the
				// next push or the reconciliation at start sends it.
				for _, p := range batch {
					p.done <- fmt.Errorf("publish account %s: %w", account, err)
				}
				return
			}
		}
		for i, p := range batch {
			p.done <- errs[i]
		}
		return
	}
}

// errCommitRace is a commit that lost to another: the record moved on
// since the JWT was read.
var errCommitRace = errors.New("another change of the account was committed first")

// recorded reads an account's last JWT from the record of truth, with its
// revision there. An account the record lacks (one made before there was
// a record) is read from the resolver, with revision 0: the next commit
// creates its entry.
func (s *Service) recorded(ctx context.Context, account string) (*jwt.AccountClaims, uint64, error) {
	var tok string
	var rev uint64
	e, err := s.jwts.Get(ctx, account)
	switch {
	case err == nil:
		tok, rev = string(e.Value()), e.Revision()
	case isNotFound(err):
		if tok, err = s.cfg.Directory.Lookup(ctx, account); err != nil {
			return nil, 0, fmt.Errorf("read account %s: %w", account, err)
		}
		if tok == "" {
			return nil, 0, errNoJWT
		}
	default:
		return nil, 0, fmt.Errorf("read account %s: %w", account, err)
	}
	ac, err := jwt.DecodeAccountClaims(tok)
	if err != nil {
		return nil, 0, fmt.Errorf("account %s: its recorded JWT is invalid: %w", account, err)
	}
	return ac, rev, nil
}

// record commits an account's new JWT to the record of truth if its entry
// is still at revision last (0: it has none), and returns the new
// revision; errCommitRace when another commit came first.
func (s *Service) record(ctx context.Context, account, tok string, last uint64) (uint64, error) {
	var rev uint64
	var err error
	if last == 0 {
		rev, err = s.jwts.Create(ctx, account, []byte(tok))
	} else {
		rev, err = s.jwts.Update(ctx, account, []byte(tok), last)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, errCommitRace
	}
	return rev, err
}

// push makes a committed JWT the one in force. With Config.Apply this
// node's resolver takes it now, and every other node's from the record
// (Follow), each keeping the newest it has seen whatever the order the
// JWTs arrive in. Without it (servers latch does not run in) the JWT goes
// to every server's resolver through $SYS.REQ.CLAIMS.UPDATE. A resolver
// takes the last JWT it is sent that way, not the newest, and another
// node may have committed a later JWT and pushed it before this push
// arrived: so when the record moved on meanwhile its JWT goes out again,
// and the last push is of the last commit.
func (s *Service) push(ctx context.Context, account, tok string, rev uint64) error {
	if s.cfg.Apply != nil {
		return s.cfg.Apply(account, tok)
	}
	if err := s.cfg.Directory.Push(ctx, tok); err != nil {
		return err
	}
	e, err := s.jwts.Get(ctx, account)
	if err != nil || e.Revision() == rev {
		return nil
	}
	return s.cfg.Directory.Push(ctx, string(e.Value()))
}

// set records the claims the record now holds. Only the writer's
// goroutine sets or reads them, except revokedInJWT, which reads under mu;
// claims are never changed once set (changes edit a copy).
func (w *writer) set(ac *jwt.AccountClaims, iat int64, rev uint64) {
	w.mu.Lock()
	w.claims, w.iat, w.rev = ac, iat, rev
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
