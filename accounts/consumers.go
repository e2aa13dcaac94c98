package accounts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// bucketVersion is what a records bucket is made with today: 1 has the
// consumer limit (ConsumerIdle), 2 the records history. A person whose
// bucket is older than wantBucket gets what it lacks from Refresh.
const bucketVersion = 2

// wantBucket is the bucket version this service makes and brings persons
// to: without the records history, 1.
func (s *Service) wantBucket() int {
	if s.cfg.NoRecordsHistory {
		return 1
	}
	return bucketVersion
}

// RecordsConsumer is a consumer of a person's records bucket: a device's
// or the server's watch, keys or history, or a durable consumer a device
// made.
type RecordsConsumer struct {
	Name    string    `json:"name"`
	Durable bool      `json:"durable"`
	Created time.Time `json:"created"`
	Filter  string    `json:"filter,omitempty"`
	// Idle is how long the server keeps it once unused; 0 is for ever
	// (a consumer made before the bucket's consumer limit).
	Idle    time.Duration `json:"idle"`
	Pending uint64        `json:"pending"`
}

// RecordsConsumers lists the consumers of a person's records bucket.
func (s *Service) RecordsConsumers(ctx context.Context, person string) ([]RecordsConsumer, error) {
	var out []RecordsConsumer
	err := s.withRecordsStream(ctx, person, func(_ jetstream.JetStream, st jetstream.Stream) error {
		l := st.ListConsumers(ctx)
		for ci := range l.Info() {
			c := RecordsConsumer{Name: ci.Name, Durable: ci.Config.Durable != "", Created: ci.Created,
				Filter: ci.Config.FilterSubject, Idle: ci.Config.InactiveThreshold, Pending: ci.NumPending}
			if c.Filter == "" && len(ci.Config.FilterSubjects) > 0 {
				c.Filter = fmt.Sprint(ci.Config.FilterSubjects)
			}
			out = append(out, c)
		}
		return l.Err()
	})
	return out, err
}

// ClearRecordsConsumers deletes every consumer of a person's records
// bucket, as after a device filled the bucket's consumer limit. Watches
// of connected devices (and of the web's Records page) make themselves
// again; durable consumers are gone. It returns how many it deleted.
func (s *Service) ClearRecordsConsumers(ctx context.Context, person string) (int, error) {
	n := 0
	var account string
	err := s.withRecordsStream(ctx, person, func(_ jetstream.JetStream, st jetstream.Stream) error {
		account = st.CachedInfo().Config.Name
		l := st.ListConsumers(ctx)
		var names []string
		for ci := range l.Info() {
			names = append(names, ci.Name)
		}
		if err := l.Err(); err != nil {
			return err
		}
		for _, name := range names {
			if err := st.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				return fmt.Errorf("delete consumer %s: %w", name, err)
			}
			n++
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	if p, err := s.Person(ctx, person); err == nil {
		s.auditAfter(ctx, AuditEvent{Action: ActionConsumersClear, Account: p.Account, AccountName: p.Name,
			Detail: fmt.Sprintf("%d consumers of %s", n, account)})
	}
	return n, nil
}

// withRecordsStream runs f on a person's records stream, through a
// short-lived service user of the account whose JetStream context js is.
func (s *Service) withRecordsStream(ctx context.Context, person string, f func(js jetstream.JetStream, st jetstream.Stream) error) error {
	p, err := s.Person(ctx, person)
	if err != nil {
		return err
	}
	rs, err := s.openRecords(ctx, p, time.Minute)
	if err != nil {
		return err
	}
	defer rs.Close()
	st, err := rs.js.Stream(ctx, "KV_"+RecordsBucket)
	if err != nil {
		return fmt.Errorf("the records bucket of %s: %w", p.Name, err)
	}
	return f(rs.js, st)
}

// upgradeBucket brings a person's records bucket to wantBucket.
func (s *Service) upgradeBucket(ctx context.Context, p Person) error {
	rs, err := s.openRecords(ctx, p, time.Minute)
	if err != nil {
		return err
	}
	defer rs.Close()
	if err := limitConsumers(ctx, rs.js); err != nil {
		return err
	}
	if !s.cfg.NoRecordsHistory {
		if err := s.ensureHistory(ctx, rs.js, p.Limits); err != nil {
			return err
		}
	}
	defer s.lockPerson(p.Name)()
	cur, err := s.Person(ctx, p.Name)
	if err != nil {
		return err
	}
	cur.BucketVersion = s.wantBucket()
	return putJSON(ctx, s.persons, cur.Name, cur)
}
