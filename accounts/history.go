package accounts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A person's records history: the stream records_history in the person's
// account sources the records bucket's stream, keeping every write for
// HistoryAge (up to the person's disk quota again), so that a device that
// wipes the bucket (a put with "Nats-Rollup: all", or a purge of every
// key) destroys nothing for good. Devices cannot touch it: their
// permissions name the records stream alone. It denies deletes and purges,
// and, as it does not allow rollups, it stores a sourced rollup as a
// message instead of applying it. Its times are when each write reached
// it, a moment after the bucket stored it. RestoreRecords sets the bucket
// back to what it was at a time within the history.
const (
	HistoryStream = "records_history"
	HistoryAge    = 30 * 24 * time.Hour
)

func historyConfig(l Limits, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        HistoryStream,
		Description: "every write to the records bucket, for restoring it; devices cannot reach it",
		// A source, not a mirror: a mirror of a stream that allows direct
		// gets answers them too, and would serve what a wipe removed.
		Sources:    []*jetstream.StreamSource{{Name: "KV_" + RecordsBucket}},
		Storage:    jetstream.FileStorage,
		Replicas:   replicas,
		MaxAge:     HistoryAge,
		MaxBytes:   l.Disk,
		Discard:    jetstream.DiscardOld,
		DenyDelete: true,
		DenyPurge:  true,
	}
}

// ensureHistory makes the records history when it is missing.
func (s *Service) ensureHistory(ctx context.Context, js jetstream.JetStream, l Limits) error {
	if _, err := js.Stream(ctx, HistoryStream); err == nil {
		return nil
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	if _, err := js.CreateStream(ctx, historyConfig(l, s.cfg.Replicas)); err != nil {
		return fmt.Errorf("create the records history: %w", err)
	}
	return nil
}

// Restored is what RestoreRecords did.
type Restored struct {
	At      time.Time `json:"at"`
	Put     int       `json:"put"`
	Deleted int       `json:"deleted"`
	// Oldest is the time of the oldest write the history holds.
	Oldest time.Time `json:"oldest,omitzero"`
}

// RestoreRecords sets a person's records back to what they were just
// before at: keys that did not exist then are deleted, keys that did get
// their value of then back. It writes through the bucket like a device
// (every change stays in the bucket's and the history's revisions), so a
// restore can itself be undone by another.
func (s *Service) RestoreRecords(ctx context.Context, person string, at time.Time) (Restored, error) {
	out := Restored{At: at.UTC()}
	p, rs, info, err := s.openHistory(ctx, person, 5*time.Minute)
	if err != nil {
		return out, err
	}
	defer rs.Close()
	out.Oldest = info.State.FirstTime
	if info.State.Msgs > 0 && at.Before(info.State.FirstTime) {
		return out, errorf(ErrInvalid, "the history of %s's records reaches back to %s only; choose a later time",
			p.Name, info.State.FirstTime.UTC().Format(time.RFC3339))
	}
	then, err := recordsAt(ctx, rs.js, info.State.LastSeq, at)
	if err != nil {
		return out, err
	}
	// Delete what was not there then.
	lister, err := rs.kv.ListKeys(ctx)
	if err != nil {
		return out, err
	}
	var now []string
	for k := range lister.Keys() {
		now = append(now, k)
	}
	for _, k := range now {
		if _, ok := then[k]; !ok {
			if err := rs.kv.Delete(ctx, k); err != nil {
				return out, fmt.Errorf("delete %s: %w", k, err)
			}
			out.Deleted++
		}
	}
	for k, v := range then {
		e, gerr := rs.kv.Get(ctx, k)
		if gerr == nil && string(e.Value()) == string(v) {
			continue
		}
		if _, err := rs.kv.Put(ctx, k, v); err != nil {
			return out, fmt.Errorf("put %s: %w", k, err)
		}
		out.Put++
	}
	s.auditAfter(ctx, AuditEvent{Action: ActionRecordsRestore, Account: p.Account, AccountName: p.Name,
		Detail: fmt.Sprintf("to %s: %d put, %d deleted", out.At.Format(time.RFC3339), out.Put, out.Deleted)})
	return out, nil
}

// recordsAt reads the history up to its sequence last and returns the
// bucket's keys and values as they were just before at.
func recordsAt(ctx context.Context, js jetstream.JetStream, last uint64, at time.Time) (map[string][]byte, error) {
	state := map[string][]byte{}
	if last == 0 {
		return state, nil
	}
	c, err := js.OrderedConsumer(ctx, HistoryStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("read the records history: %w", err)
	}
	prefix := "$KV." + RecordsBucket + "."
	for {
		batch, err := c.Fetch(256, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("read the records history: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			if !md.Timestamp.Before(at) {
				return state, nil
			}
			h := m.Headers()
			if h.Get("Nats-Rollup") == "all" {
				clear(state)
			}
			key := strings.TrimPrefix(m.Subject(), prefix)
			switch h.Get("KV-Operation") {
			case "DEL", "PURGE":
				delete(state, key)
			default:
				state[key] = append([]byte(nil), m.Data()...)
			}
			if md.Sequence.Stream >= last {
				return state, nil
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("read the records history: %w", err)
		}
		if n == 0 {
			return state, nil
		}
	}
}

// History says how far a person's records history reaches.
type History struct {
	Writes uint64    `json:"writes"`
	Bytes  uint64    `json:"bytes"`
	Oldest time.Time `json:"oldest,omitzero"`
	Newest time.Time `json:"newest,omitzero"`
}

// RecordsHistory reports a person's records history.
func (s *Service) RecordsHistory(ctx context.Context, person string) (History, error) {
	_, rs, info, err := s.openHistory(ctx, person, time.Minute)
	if err != nil {
		return History{}, err
	}
	rs.Close()
	return historyOf(info), nil
}

func historyOf(info *jetstream.StreamInfo) History {
	return History{Writes: info.State.Msgs, Bytes: info.State.Bytes, Oldest: info.State.FirstTime, Newest: info.State.LastTime}
}

// openHistory opens a records session of a person for ttl and reads their
// records history's state; the caller closes the session.
func (s *Service) openHistory(ctx context.Context, person string, ttl time.Duration) (Person, *RecordsSession, *jetstream.StreamInfo, error) {
	p, err := s.Person(ctx, person)
	if err != nil {
		return p, nil, nil, err
	}
	rs, err := s.openRecords(ctx, p, ttl)
	if err != nil {
		return p, nil, nil, err
	}
	info, err := rs.historyInfo(ctx)
	if err != nil {
		rs.Close()
		return p, nil, nil, err
	}
	return p, rs, info, nil
}

// historyInfo reads the state of the session's person's records history.
func (rs *RecordsSession) historyInfo(ctx context.Context) (*jetstream.StreamInfo, error) {
	hs, err := rs.js.Stream(ctx, HistoryStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, errorf(ErrNotFound, "%s's records have no history: latch serve makes one at its next start, unless it runs with --records-history=false", rs.person.Name)
	}
	if err != nil {
		return nil, err
	}
	return hs.Info(ctx)
}

// dropHistory deletes a person's records history ahead of deleting the
// account, and waits until the bucket's stream has let go of the history's
// sourcing consumer. nats-server removes that consumer from a goroutine of
// its own when a sourcing stream goes, and that goroutine races with the
// removal of the account (the JetStream purge and the resolver's delete);
// done first, it has finished when they come.
func (s *Service) dropHistory(ctx context.Context, p Person) error {
	nc, _, err := s.serviceConn(ctx, p, time.Minute)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	st, err := js.Stream(ctx, "KV_"+RecordsBucket)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	before := st.CachedInfo().State.Consumers
	if err := js.DeleteStream(ctx, HistoryStream); errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	// One consumer fewer: the history's (devices' watches may come and go
	// meanwhile; the wait is bounded). None before: nothing to wait for.
	if before == 0 {
		return nil
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Consumers < before {
			return nil
		}
	}
	return nil
}
