package accounts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"
)

// ActionAccountEdit is the audit action of a person's limits changed.
const ActionAccountEdit Action = "account.edit"

// Bounds of the limits EditLimits takes: far above any one person's
// needs, and far below where sizes overflow.
const (
	// MinPayload is the smallest message limit: the server's own
	// requests into a person's account (creating the bucket) need it.
	MinPayload = 4 << 10
	MaxDisk    = 1 << 50
	maxPayload = 64 << 20 // nats-server's own ceiling
	maxCount   = 1 << 20  // connections, consumers
)

// LimitsEdit is a change of a person's limits; a zero field keeps what
// the person has.
type LimitsEdit struct {
	Disk      int64 `json:"disk,omitempty"`
	Memory    int64 `json:"memory,omitempty"`
	Conns     int64 `json:"conns,omitempty"`
	Payload   int64 `json:"payload,omitempty"`
	Consumers int64 `json:"consumers,omitempty"`
}

// EditLimits changes a person's limits through the account's writer:
// connections, largest message and consumers in the account JWT; the
// disk and memory quotas in the JetStream tier, and the disk quota in
// the records bucket's and the records history's byte limits too. A lower disk quota than the records hold loses nothing:
// the bucket refuses writes until deletes bring it under (the tier keeps
// room for what it holds, so deletes go through); the history, which
// keeps the latest writes it has room for, drops its oldest.
//
// The steps go in the order that keeps the account's tier at least what
// its streams may hold, so a change that fails half way leaves nothing
// refused that fits the old quota; the person's record, changed last,
// says which quota stands, and running the change again finishes it.
func (s *Service) EditLimits(ctx context.Context, name string, e LimitsEdit) (Person, error) {
	for _, f := range []struct {
		field    string
		v, upper int64
		what     string
	}{
		{"disk", e.Disk, MaxDisk, "1PiB"}, {"memory", e.Memory, MaxDisk, "1PiB"},
		{"conns", e.Conns, maxCount, "1048576"}, {"payload", e.Payload, maxPayload, "64MiB"},
		{"consumers", e.Consumers, maxCount, "1048576"},
	} {
		if f.v < 0 || f.v > f.upper {
			return Person{}, invalid(f.field, "the %s limit must be more than 0 and at most %s", f.field, f.what)
		}
	}
	if e.Payload != 0 && e.Payload < MinPayload {
		return Person{}, invalid("payload", "the payload limit must be at least %d bytes", MinPayload)
	}
	if e == (LimitsEdit{}) {
		return Person{}, invalid("limits", "give at least one limit to change: disk, memory, conns, payload or consumers")
	}
	defer s.lockPerson(name)()
	p, err := s.Person(ctx, name)
	if err != nil {
		return Person{}, err
	}
	if p.Status != StatusActive {
		return Person{}, errorf(ErrDisabled, "account %q is %s; enable it first, so that its records can be reached", name, p.Status)
	}
	old := p.Limits
	next := old.with(Limits{Disk: e.Disk, Memory: e.Memory, Conns: e.Conns, Payload: e.Payload, Consumers: e.Consumers})
	if next == old {
		return p, nil
	}
	// held is what the records hold when it is more than the new quota:
	// the tier keeps room for it, or the account would refuse every
	// write, deletes included, until an admin raised the quota again.
	var held int64
	tier := func() error {
		return s.update(p.Account, func(ac *jwt.AccountClaims) error {
			setTiers(ac, max(next.Disk, held), next.Memory, next.Consumers, s.cfg.Replicas)
			ac.Limits.Conn, ac.Limits.Payload = next.Conns, next.Payload
			return nil
		})
	}
	streams := func() error {
		if next.Disk == old.Disk {
			return nil
		}
		rs, err := s.openRecords(ctx, p, recordsSessionTTL)
		if err != nil {
			return err
		}
		defer rs.Close()
		// A tier just raised reaches the server's JetStream a moment after
		// the account's JWT: until then the larger limit does not fit
		// (insufficient storage resources, 10047).
		for deadline := time.Now().Add(5 * time.Second); ; {
			err := rs.setBucketLimit(ctx, next.Disk)
			var apiErr *jetstream.APIError
			if err != nil && errors.As(err, &apiErr) && apiErr.ErrorCode == jsStorageExceeded && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			if err != nil {
				return fmt.Errorf("set the records bucket's limit: %w", err)
			}
			break
		}
		if err := setStreamMaxBytes(ctx, rs.js, HistoryStream, next.Disk); err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("set the records history's limit: %w", err)
		}
		held, err = rs.bucketBytes(ctx)
		return err
	}
	steps := []func() error{tier, streams}
	if tierDisk(next.Disk) < tierDisk(old.Disk) {
		steps = []func() error{streams, tier}
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return Person{}, fmt.Errorf("change the limits of %s: %w; run it again to finish", name, err)
		}
	}
	p.Limits = next
	if err := putJSON(ctx, s.persons, p.Name, p); err != nil {
		return Person{}, err
	}
	s.auditAfter(ctx, AuditEvent{Action: ActionAccountEdit, Account: p.Account, AccountName: p.Name, Detail: limitsChange(old, next)})
	return p, nil
}

// setStreamMaxBytes sets a stream's byte limit.
func setStreamMaxBytes(ctx context.Context, js jetstream.JetStream, stream string, n int64) error {
	st, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return errorf(ErrNotFound, "no stream %s", stream)
	}
	if err != nil {
		return err
	}
	cfg := st.CachedInfo().Config
	if cfg.MaxBytes == n {
		return nil
	}
	cfg.MaxBytes = n
	_, err = js.UpdateStream(ctx, cfg)
	return err
}

// with is l with each field of o that is not zero.
func (l Limits) with(o Limits) Limits {
	for _, f := range []struct{ dst, src *int64 }{
		{&l.Disk, &o.Disk}, {&l.Memory, &o.Memory}, {&l.Conns, &o.Conns},
		{&l.Payload, &o.Payload}, {&l.Consumers, &o.Consumers}, {&l.Subs, &o.Subs},
	} {
		if *f.src != 0 {
			*f.dst = *f.src
		}
	}
	return l
}

// limitsChange says what changed, for the audit trail.
func limitsChange(a, b Limits) string {
	var parts []string
	for _, f := range []struct {
		name string
		a, b int64
	}{
		{"disk", a.Disk, b.Disk}, {"memory", a.Memory, b.Memory}, {"conns", a.Conns, b.Conns},
		{"payload", a.Payload, b.Payload}, {"consumers", a.Consumers, b.Consumers},
	} {
		if f.a != f.b {
			parts = append(parts, fmt.Sprintf("%s %d → %d", f.name, f.a, f.b))
		}
	}
	return strings.Join(parts, ", ")
}
