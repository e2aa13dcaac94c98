package accounts

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// SetWatchTTL shortens the lifetime of the service users behind records
// watches, so that a test sees a watch move to a fresh one.
func (s *Service) SetWatchTTL(d time.Duration) { s.watchTTL = d }

// UnlimitRecordsConsumers takes a person's records bucket back to before
// it had a consumer limit, as an older latch made it.
func (s *Service) UnlimitRecordsConsumers(ctx context.Context, person string) error {
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
		return err
	}
	cfg := st.CachedInfo().Config
	cfg.ConsumerLimits = jetstream.StreamConsumerLimits{}
	_, err = rs.js.UpdateStream(ctx, cfg)
	return err
}
