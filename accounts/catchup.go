package accounts

import (
	"context"
	"fmt"
	"slices"
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
	// older one of: changes made while it was down.
	Pushed int
	// Filled counts accounts the record lacked and got from the resolver
	// (accounts made before there was a record).
	Filled int
	Drift  []Drift
}

// CatchUp brings this node's resolver up to latch's record of account
// JWTs: every account whose JWT here is missing or older than the record's
// is pushed again (what changed while the node was down: revocations,
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
	err = s.eachRecorded(ctx, func(account, tok string) error {
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
			if err := s.cfg.Directory.Push(ctx, tok); err != nil {
				return fmt.Errorf("push account %s: %w", account, err)
			}
			res.Pushed++
			return nil
		}
		d := Drift{Account: account, AccountName: rec.Name, Recorded: time.Unix(rec.IssuedAt, 0).UTC(), Node: s.cfg.Node}
		if err == nil {
			d.Found, d.FoundIssuer = time.Unix(found.IssuedAt, 0).UTC(), found.Issuer
		}
		res.Drift = append(res.Drift, d)
		return nil
	})
	for _, d := range res.Drift {
		s.log.Warn("account drift: this node enforces a JWT that is not latch's record; `latch cluster repair` pushes the record again",
			"account", d.Account, "name", d.AccountName, "found_iat", d.Found, "found_issuer", d.FoundIssuer, "recorded_iat", d.Recorded)
		s.auditAfter(ctx, AuditEvent{Action: ActionAccountDrift, Account: d.Account, AccountName: d.AccountName,
			Detail: fmt.Sprintf("node %s holds a JWT issued %s by %s; latch's record was issued %s",
				d.Node, d.Found.Format(time.RFC3339), d.FoundIssuer, d.Recorded.Format(time.RFC3339))})
	}
	return res, err
}

// Repair pushes latch's record of each account again, every drifted
// account of this node when none is named, and returns those it pushed.
func (s *Service) Repair(ctx context.Context, accounts ...string) ([]string, error) {
	var repaired []string
	err := s.eachRecorded(ctx, func(account, tok string) error {
		if len(accounts) > 0 && !slices.Contains(accounts, account) {
			return nil
		}
		here, err := s.stored(ctx, account)
		if err != nil {
			return err
		}
		if here == tok {
			return nil
		}
		if err := s.cfg.Directory.Push(ctx, tok); err != nil {
			return fmt.Errorf("push account %s: %w", account, err)
		}
		repaired = append(repaired, account)
		s.auditAfter(ctx, AuditEvent{Action: ActionAccountRepair, Account: account,
			Detail: "latch's record pushed again over the JWT node " + s.cfg.Node + " held"})
		return nil
	})
	return repaired, err
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
