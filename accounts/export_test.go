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
	return s.withRecordsStream(ctx, person, func(js jetstream.JetStream, st jetstream.Stream) error {
		cfg := st.CachedInfo().Config
		cfg.ConsumerLimits = jetstream.StreamConsumerLimits{}
		_, err := js.UpdateStream(ctx, cfg)
		return err
	})
}

// KVStreamConfig is the stream a bucket of latch's is made as.
var KVStreamConfig = kvStreamConfig
