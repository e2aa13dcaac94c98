package accounts

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/latch-dev/latch/internal/jsmove"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// MoveInResult is what MoveIn did: the streams moved, those found moved
// already (by a move-in cut short), the persons not moved, with why, and
// the accounts of no person, whose streams stay where they were.
type MoveInResult struct {
	Moved, Already int
	Messages       uint64
	Failed         map[string]string
	NoPerson       []string
}

// MoveIn moves the streams of persons' accounts (account public key →
// stream names) from a server that ran alone, which dialFrom connects to,
// into this deployment's JetStream, exactly as stored (jsmove: every
// message with its sequence and time, the consumers), with one replica;
// Rebalance then gives them the deployment's replicas. A stream already
// moved whole by an earlier move-in is left as it is; one moved in part
// is moved again. Each person moved is audited.
func (s *Service) MoveIn(ctx context.Context, dialFrom func(userJWT string, seed []byte) (*nats.Conn, error), streams map[string][]string) (MoveInResult, error) {
	res := MoveInResult{Failed: map[string]string{}}
	ps, err := s.Persons(ctx)
	if err != nil {
		return res, err
	}
	byAccount := map[string]Person{}
	for _, p := range ps {
		byAccount[p.Account] = p
	}
	for account, names := range streams {
		p, ok := byAccount[account]
		if !ok {
			res.NoPerson = append(res.NoPerson, account)
			continue
		}
		moved, already, msgs, err := s.moveInPerson(ctx, p, dialFrom, names)
		res.Moved, res.Already, res.Messages = res.Moved+moved, res.Already+already, res.Messages+msgs
		if err != nil {
			res.Failed[p.Name] = err.Error()
			continue
		}
		if moved > 0 {
			s.auditAfter(ctx, AuditEvent{Action: ActionRecordsMoveIn, Account: p.Account, AccountName: p.Name,
				Detail: fmt.Sprintf("%d streams, %d messages, from the node's data of when it ran alone", moved, msgs)})
		}
	}
	return res, nil
}

func (s *Service) moveInPerson(ctx context.Context, p Person, dialFrom func(string, []byte) (*nats.Conn, error), names []string) (moved, already int, msgs uint64, err error) {
	sk, err := s.keysOf(ctx, p)
	if err != nil {
		return 0, 0, 0, err
	}
	tok, seed, err := serviceUserJWT(p.Account, sk.service, time.Hour)
	if err != nil {
		return 0, 0, 0, err
	}
	defer clear(seed)
	src, err := dialFrom(tok, seed)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("connect to the account on the data of when the node ran alone: %w", err)
	}
	defer src.Close()
	dst, err := s.cfg.Dial(tok, seed)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("connect to the account: %w", err)
	}
	defer dst.Close()
	for _, name := range slices.Sorted(slices.Values(names)) {
		m, whole, err := MoveStream(ctx, src, dst, name, 1)
		if err != nil {
			return moved, already, msgs, err
		}
		if whole {
			already++
			continue
		}
		moved++
		msgs += m
	}
	return moved, already, msgs, nil
}

// MoveStream moves stream name from src to dst (connections into one
// account on two servers) with the given replicas, and returns how many
// messages it moved. A stream dst already holds whole (the same messages
// as src) is left, and whole is true; one it holds in part is deleted
// there and moved again.
func MoveStream(ctx context.Context, src, dst *nats.Conn, name string, replicas int) (msgs uint64, whole bool, err error) {
	// A cluster that has just formed may not yet serve the account's
	// JetStream, or place a stream: the move is made again meanwhile.
	deadline := time.Now().Add(time.Minute)
	for {
		msgs, whole, err = moveStream(ctx, src, dst, name, replicas)
		if err == nil || errors.Is(err, jsmove.ErrStreamNotFound) || !placementPending(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return msgs, whole, err
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func moveStream(ctx context.Context, src, dst *nats.Conn, name string, replicas int) (msgs uint64, whole bool, err error) {
	edit := func(c *jetstream.StreamConfig) { c.Replicas = replicas }
	m, err := jsmove.Move(ctx, src, dst, name, edit)
	if errors.Is(err, jsmove.ErrStreamExists) {
		same, serr := sameStream(ctx, src, dst, name)
		if serr != nil || same {
			return 0, same, serr
		}
		djs, jerr := jetstream.New(dst)
		if jerr != nil {
			return 0, false, jerr
		}
		if err := djs.DeleteStream(ctx, name); err != nil {
			return 0, false, fmt.Errorf("stream %s, moved in part before: delete it to move it again: %w", name, err)
		}
		m, err = jsmove.Move(ctx, src, dst, name, edit)
	}
	if err != nil {
		return 0, false, err
	}
	return m.Msgs, false, nil
}

// sameStream reports whether dst's stream name holds what src's does.
func sameStream(ctx context.Context, src, dst *nats.Conn, name string) (bool, error) {
	var states [2]jetstream.StreamState
	for i, nc := range []*nats.Conn{src, dst} {
		js, err := jetstream.New(nc)
		if err != nil {
			return false, err
		}
		st, err := js.Stream(ctx, name)
		if err != nil {
			return false, fmt.Errorf("stream %s: %w", name, err)
		}
		states[i] = st.CachedInfo().State
	}
	a, b := states[0], states[1]
	return a.Msgs == b.Msgs && a.Bytes == b.Bytes && a.FirstSeq == b.FirstSeq && a.LastSeq == b.LastSeq, nil
}
