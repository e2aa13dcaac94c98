package accounts

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"
)

// ActionAccountQuota is the audit action of a person's quota changed.
const ActionAccountQuota = "account.quota"

// MaxDisk bounds a disk quota: far above any one person's records, and
// far below where sizes overflow.
const MaxDisk = 1 << 50

// Quota is a change of a person's JetStream quotas; a zero field keeps
// what the person has.
type Quota struct {
	Disk   int64 `json:"disk,omitempty"`
	Memory int64 `json:"memory,omitempty"`
}

// SetQuota changes a person's disk and memory quotas: the records
// bucket's byte limit and the records history's, and the account's
// JetStream tier. A lower disk quota than the records hold loses nothing:
// the bucket refuses writes until deletes bring it under (the tier keeps
// room for what it holds, so deletes go through); the history, which
// keeps the latest writes it has room for, drops its oldest.
//
// The steps go in the order that keeps the account's tier at least what
// its streams may hold, so a change that fails half way leaves nothing
// refused that fits the old quota; the person's record, changed last,
// says which quota stands, and running the change again finishes it.
func (s *Service) SetQuota(ctx context.Context, name string, q Quota) (Person, error) {
	switch {
	case q.Disk < 0 || q.Disk > MaxDisk:
		return Person{}, invalid("disk", "the disk quota must be more than 0 and at most 1PiB")
	case q.Memory < 0 || q.Memory > MaxDisk:
		return Person{}, invalid("memory", "the memory quota must be more than 0 and at most 1PiB")
	case q.Disk == 0 && q.Memory == 0:
		return Person{}, invalid("quota", "give a disk quota, a memory quota, or both")
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
	next := old
	if q.Disk > 0 {
		next.Disk = q.Disk
	}
	if q.Memory > 0 {
		next.Memory = q.Memory
	}
	if next == old {
		return p, nil
	}
	// held is what the records hold when it is more than the new quota:
	// the tier keeps room for it, or the account would refuse every
	// write, deletes included, until an admin raised the quota again.
	var held int64
	tier := func() error {
		return s.update(p.Account, func(ac *jwt.AccountClaims) error {
			t, ok := ac.Limits.JetStreamTieredLimits["R1"]
			if !ok {
				return fmt.Errorf("account %s has no R1 tier", p.Account)
			}
			t.DiskStorage, t.MemoryStorage = tierDisk(max(next.Disk, held)), next.Memory
			ac.Limits.JetStreamTieredLimits["R1"] = t
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
		if err := rs.setBucketLimit(ctx, next.Disk); err != nil {
			return fmt.Errorf("set the records bucket's limit: %w", err)
		}
		if err := setStreamMaxBytes(ctx, rs.js, HistoryStream, next.Disk); err != nil && Kind(err) != "not_found" {
			return fmt.Errorf("set the records history's limit: %w", err)
		}
		u, err := rs.Usage(ctx)
		if err != nil {
			return err
		}
		held = u.Records
		return nil
	}
	steps := []func() error{tier, streams}
	if tierDisk(next.Disk) < tierDisk(old.Disk) {
		steps = []func() error{streams, tier}
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return Person{}, fmt.Errorf("change the quota of %s: %w; run it again to finish", name, err)
		}
	}
	p.Limits = next
	if err := putJSON(ctx, s.persons, p.Name, p); err != nil {
		return Person{}, err
	}
	s.auditAfter(ctx, AuditEvent{Action: ActionAccountQuota, Account: p.Account, AccountName: p.Name,
		Detail: fmt.Sprintf("disk %d → %d bytes, memory %d → %d bytes", old.Disk, next.Disk, old.Memory, next.Memory)})
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
