package accounts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"
)

// Drift is an account whose JWT on a node is not latch's record of it and
// is not simply older: a JWT pushed by someone other than latch (nsc, say).
// latch does not overwrite it on its own; `latch cluster repair` pushes the
// record again.
type Drift struct {
	Account     string    `json:"account"`
	AccountName string    `json:"account_name,omitempty"`
	Recorded    time.Time `json:"recorded"` // the record's iat
	Found       time.Time `json:"found"`    // the iat of the JWT found
	FoundIssuer string    `json:"found_issuer"`
	Node        string    `json:"node,omitempty"`
}

// CatchUpResult is what a catch-up did.
type CatchUpResult struct {
	// Pushed counts the accounts whose JWT this node lacked or held an
	// older one of, and now has the record's: changes made while it was
	// down.
	Pushed int
	// Filled counts accounts the record lacked and got from the resolver
	// (accounts made before there was a record).
	Filled int
	Drift  []Drift
}

// CatchUp brings this node's resolver up to latch's record of account
// JWTs: every account whose JWT here is missing or older than the record's
// gets the record's (what changed while the node was down: revocations,
// limits), and one whose JWT here is newer, or as new and different, is
// drift: reported, audited, and left for Repair. Accounts the record lacks
// are filled in from the resolver first. Deleted accounts are
// Reconcile's. Config.Stored reads this node's own copy; without it (an
// external NATS cluster) the cluster's answer to a lookup is compared.
func (s *Service) CatchUp(ctx context.Context) (CatchUpResult, error) {
	var res CatchUpResult
	filled, err := s.fillRecord(ctx)
	if err != nil {
		return res, err
	}
	res.Filled = filled
	res.Drift, err = s.compare(ctx, func(account, tok string) error {
		if err := s.apply(ctx, account, tok); err != nil {
			return fmt.Errorf("apply account %s: %w", account, err)
		}
		res.Pushed++
		return nil
	})
	for _, d := range res.Drift {
		s.log.Warn("account drift: this node enforces a JWT that is not latch's record; `latch cluster repair` makes the record the one in force again",
			"account", d.Account, "name", d.AccountName, "found_iat", d.Found, "found_issuer", d.FoundIssuer, "recorded_iat", d.Recorded)
		s.auditAfter(ctx, AuditEvent{Action: ActionAccountDrift, Account: d.Account, AccountName: d.AccountName,
			Detail: fmt.Sprintf("node %s holds a JWT issued %s by %s; latch's record was issued %s",
				d.Node, d.Found.Format(time.RFC3339), d.FoundIssuer, d.Recorded.Format(time.RFC3339))})
	}
	return res, err
}

// Drift lists the accounts whose JWT on this node is not latch's record
// and not simply older than it, changing nothing.
func (s *Service) Drift(ctx context.Context) ([]Drift, error) {
	return s.compare(ctx, func(string, string) error { return nil })
}

// compare goes through latch's record and this node's resolver: behind is
// called for each account this node lacks or holds an older JWT of, and
// the accounts it holds a newer or different JWT of are returned.
func (s *Service) compare(ctx context.Context, behind func(account, tok string) error) ([]Drift, error) {
	var drift []Drift
	err := s.eachRecorded(ctx, func(account, tok string) error {
		here, err := s.stored(ctx, account)
		if err != nil {
			return err
		}
		if here == tok {
			return nil
		}
		rec, err := jwt.DecodeAccountClaims(tok)
		if err != nil {
			s.log.Warn("an invalid JWT in the record", "account", account, "err", err)
			return nil
		}
		found, err := jwt.DecodeAccountClaims(here)
		if here == "" || err == nil && found.IssuedAt < rec.IssuedAt {
			return behind(account, tok)
		}
		d := Drift{Account: account, AccountName: rec.Name, Recorded: time.Unix(rec.IssuedAt, 0).UTC(), Node: s.cfg.Node}
		if err == nil {
			d.Found, d.FoundIssuer = time.Unix(found.IssuedAt, 0).UTC(), found.Issuer
		}
		drift = append(drift, d)
		return nil
	})
	return drift, err
}

// Repair makes latch's record the JWT in force again of each drifted
// account: the record is signed anew, later than the JWT any node was
// found holding, and committed, so every node takes it as the newest.
// It returns the accounts repaired.
func (s *Service) Repair(ctx context.Context, drift []Drift) ([]string, error) {
	after := map[string]int64{}
	var order []string
	for _, d := range drift {
		if _, ok := after[d.Account]; !ok {
			order = append(order, d.Account)
		}
		after[d.Account] = max(after[d.Account], d.Found.Unix())
		if ahead := time.Until(d.Found); ahead > time.Minute {
			return nil, fmt.Errorf("account %s: node %s holds a JWT issued %s from now; put the clock of whoever signed it right, or push latch's record by hand", d.Account, d.Node, ahead.Round(time.Second))
		}
	}
	var repaired []string
	for _, account := range order {
		if err := s.updateAfter(account, after[account], func(*jwt.AccountClaims) error { return nil }); err != nil {
			return repaired, fmt.Errorf("repair account %s: %w", account, err)
		}
		repaired = append(repaired, account)
		s.auditAfter(ctx, AuditEvent{Action: ActionAccountRepair, Account: account,
			Detail: "latch's record signed anew over a JWT it did not make"})
	}
	return repaired, nil
}

// Follow applies every JWT committed to the record from now on to this
// node's resolver (Config.Apply), until ctx ends: it is how a change made
// on another node reaches this one. started is called once it follows:
// a CatchUp from then on misses nothing committed before.
func (s *Service) Follow(ctx context.Context, started func()) error {
	if s.cfg.Apply == nil {
		return errors.New("follow the record: this node cannot apply JWTs itself")
	}
	w, err := s.jwts.WatchAll(ctx, jetstream.UpdatesOnly(), jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer w.Stop()
	started()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("follow the record: the watch ended")
			}
			if e == nil {
				continue
			}
			// A JWT committed just before its account was deleted must
			// not bring the account back on a node that applies it after
			// the delete.
			if _, err := s.tombstones.Get(ctx, e.Key()); err == nil {
				continue
			}
			if err := s.cfg.Apply(e.Key(), string(e.Value())); err != nil {
				s.log.Warn("apply an account JWT from the record", "account", e.Key(), "err", err)
			}
		}
	}
}

// apply makes tok this node's JWT of account (Config.Apply), or every
// server's when the node cannot apply it itself.
func (s *Service) apply(ctx context.Context, account, tok string) error {
	if s.cfg.Apply != nil {
		return s.cfg.Apply(account, tok)
	}
	return s.cfg.Directory.Push(ctx, tok)
}

// eachRecorded calls f with every account of the record and its JWT.
func (s *Service) eachRecorded(ctx context.Context, f func(account, tok string) error) error {
	w, err := s.jwts.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e := <-w.Updates():
			if e == nil {
				return nil // all current entries seen
			}
			if err := f(e.Key(), string(e.Value())); err != nil {
				return err
			}
		}
	}
}

// stored is this node's copy of an account JWT, "" when it has none.
func (s *Service) stored(ctx context.Context, account string) (string, error) {
	if s.cfg.Stored != nil {
		return s.cfg.Stored(account)
	}
	return s.cfg.Directory.Lookup(ctx, account)
}

// fillRecord gives the record every person account and LATCH_ADMIN it
// lacks, from the resolver, and returns how many.
func (s *Service) fillRecord(ctx context.Context) (int, error) {
	have := map[string]bool{}
	keys, err := s.jwts.ListKeys(ctx)
	if err != nil {
		return 0, err
	}
	for k := range keys.Keys() {
		have[k] = true
	}
	want := []string{}
	if s.cfg.AdminAccount != "" {
		want = append(want, s.cfg.AdminAccount)
	}
	ps, err := s.Persons(ctx)
	if err != nil {
		return 0, err
	}
	for _, p := range ps {
		if p.Account != "" && p.Status != StatusCreating && p.Status != StatusDeleting {
			want = append(want, p.Account)
		}
	}
	n := 0
	for _, account := range want {
		if have[account] {
			continue
		}
		tok, err := s.stored(ctx, account)
		if err == nil && tok == "" {
			tok, err = s.cfg.Directory.Lookup(ctx, account)
		}
		if err != nil {
			return n, fmt.Errorf("read account %s: %w", account, err)
		}
		if tok == "" {
			continue
		}
		if _, err := s.record(ctx, account, tok, 0); err != nil && err != errCommitRace {
			return n, fmt.Errorf("record account %s: %w", account, err)
		}
		n++
	}
	return n, nil
}
