package accounts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// RebalanceResult is what a rebalance did.
type RebalanceResult struct {
	// Moved counts the persons whose records (the bucket and its history)
	// were given the configured number of replicas.
	Moved int `json:"moved"`
	// Failed names the persons whose records could not be moved, with why.
	Failed map[string]string `json:"failed,omitempty"`
}

// Rebalance gives every person's records (the bucket and its history) the
// number of replicas latch runs with, as when a deployment grows from one
// node to three: JetStream copies each stream to the new replicas while
// it keeps serving, so nothing is lost or stopped. A person's account JWT
// must first have the JetStream tier of that many replicas (Refresh gives
// it), or the move is refused for room. latch's own buckets are moved
// when the service opens. Each person moved is audited.
func (s *Service) Rebalance(ctx context.Context) (RebalanceResult, error) {
	res := RebalanceResult{Failed: map[string]string{}}
	ps, err := s.Persons(ctx)
	if err != nil {
		return res, err
	}
	for _, p := range ps {
		if p.Status != StatusActive && p.Status != StatusDisabled {
			continue
		}
		moved, err := s.rebalancePerson(ctx, p)
		if err != nil {
			res.Failed[p.Name] = err.Error()
			s.log.Warn("give a person's records their replicas", "person", p.Name, "replicas", s.cfg.Replicas, "err", err)
			continue
		}
		if moved {
			res.Moved++
			s.auditAfter(ctx, AuditEvent{Action: ActionRecordsReplicas, Account: p.Account, AccountName: p.Name,
				Detail: fmt.Sprintf("records and their history moved to %d replicas", s.cfg.Replicas)})
		}
	}
	return res, nil
}

// rebalancePerson gives one person's records streams the configured
// number of replicas, and reports whether it changed any.
func (s *Service) rebalancePerson(ctx context.Context, p Person) (bool, error) {
	nc, _, err := s.serviceConn(ctx, p, time.Minute)
	if err != nil {
		return false, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return false, err
	}
	moved := false
	for _, name := range []string{"KV_" + RecordsBucket, HistoryStream} {
		err := s.untilPlaced(ctx, "stream "+name+" of "+p.Name, func(ctx context.Context) error {
			changed, err := setReplicas(ctx, js, name, s.cfg.Replicas)
			if errors.Is(err, jetstream.ErrStreamNotFound) && name == HistoryStream {
				return nil // made at the next start (Refresh)
			}
			moved = moved || changed
			return err
		})
		if err != nil {
			return moved, err
		}
	}
	return moved, nil
}
