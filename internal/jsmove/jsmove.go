// Package jsmove copies a JetStream stream from one server (or cluster) to
// another through JetStream's own snapshot and restore API, so that every
// message keeps its sequence number, time and headers, and the consumers
// keep their state. It speaks the protocol as nats-server implements it
// (server/jetstream_api.go, jsStreamSnapshotRequest and
// jsStreamRestoreRequest); no file of either server is touched.
package jsmove

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Moved is what a Move copied, as the destination counts it right after
// the restore.
type Moved struct {
	Msgs, Bytes uint64
	Consumers   int
}

var (
	// ErrStreamExists is returned, wrapped, when the destination already
	// has a stream of that name; the destination's stream is left as it was.
	ErrStreamExists = errors.New("stream already exists on the destination")
	// ErrStreamNotFound is returned, wrapped, when the source has no
	// stream of that name.
	ErrStreamNotFound = errors.New("no such stream on the source")
)

const (
	// chunkSize is the server's default snapshot chunk; Move uses less
	// when the destination's max_payload is smaller, since each chunk is
	// published there as one message.
	chunkSize = 128 * 1024
	// stepTimeout bounds each single wait (one chunk, one API reply) when
	// the caller's context has no nearer deadline: both servers give up
	// after 5s without progress (defaultSnapshotAckTimeout, and the
	// restore's activityInterval), so a longer silence means a peer is gone.
	stepTimeout = 30 * time.Second
	// cleanupTimeout bounds undoing a failed restore, which runs even when
	// the caller's context is already done.
	cleanupTimeout = 10 * time.Second
)

// Move copies stream name of one account from the server behind src (a
// connection of a user of that account) to the server or cluster behind
// dst (a connection of a user of the same account there), through
// $JS.API.STREAM.SNAPSHOT.<name> and $JS.API.STREAM.RESTORE.<name>: every
// message with its sequence number, time and headers, and the stream's
// consumers with their delivered and ack state.
//
// The destination is given the stream's configuration as the source
// reports it with the snapshot; edit, when not nil, may change it first
// (Replicas, Placement, limits) but not the name. A clustered destination
// places the stream by that configuration, so Replicas up to the cluster's
// size take effect directly.
//
// The snapshot starts before the restore is asked for, since the restore
// needs the configuration the snapshot reports. The source pushes its
// window of chunks (8MiB) without acks and then gives up after 5s
// without one, so a destination that takes longer than that to accept
// the restore fails the move of a stream bigger than the window.
//
// A stream that already exists on dst is an error (ErrStreamExists) and
// is left untouched. When the restore fails after it began, Move deletes
// what the destination kept of it. Move returns once the destination
// lists all the restored consumers, with the message and byte counts of
// the destination's stream info after the restore.
func Move(ctx context.Context, src, dst *nats.Conn, name string, edit func(*jetstream.StreamConfig)) (Moved, error) {
	if err := checkName(name); err != nil {
		return Moved{}, err
	}
	if err := checkAbsent(ctx, dst, name); err != nil {
		return Moved{}, err
	}
	snap, err := startSnapshot(ctx, src, name, chunkSizeFor(dst))
	if err != nil {
		return Moved{}, err
	}
	// Unsubscribing also stops the source: it sees no interest and ends
	// the snapshot.
	defer snap.sub.Unsubscribe()

	cfg, err := editConfig(snap.Config, name, edit)
	if err != nil {
		return Moved{}, err
	}
	rs, err := startRestore(ctx, dst, name, cfg, snap.State)
	if err != nil {
		return Moved{}, err
	}
	moved, err := relay(ctx, snap, rs)
	if err == nil {
		err = waitConsumers(ctx, dst, name, moved.Consumers)
	}
	if err != nil {
		if uerr := rs.undo(ctx); uerr != nil {
			err = fmt.Errorf("%w; %w", err, uerr)
		}
		return Moved{}, err
	}
	return moved, nil
}

// checkName refuses names that would change the API subjects they are
// put into; the servers check the rest.
func checkName(name string) error {
	if name == "" || strings.ContainsAny(name, ".*> \t\r\n") {
		return fmt.Errorf("jsmove: %q is not a stream name", name)
	}
	return nil
}

func checkAbsent(ctx context.Context, dst *nats.Conn, name string) error {
	var resp apiResponse
	err := request(ctx, dst, "$JS.API.STREAM.INFO."+name, nil, &resp)
	switch {
	case err != nil:
		return fmt.Errorf("jsmove: look for stream %q on the destination: %w", name, err)
	case resp.Error == nil:
		return existsError(name)
	case resp.Error.ErrorCode == jetstream.JSErrCodeStreamNotFound:
		return nil
	default:
		return fmt.Errorf("jsmove: look for stream %q on the destination: %w", name, resp.Error)
	}
}

func existsError(name string) error {
	return fmt.Errorf("jsmove: stream %q: %w; remove it there first if it should be replaced", name, ErrStreamExists)
}

func chunkSizeFor(dst *nats.Conn) int {
	if mp := dst.MaxPayload(); mp > 0 && mp < chunkSize {
		return int(mp)
	}
	return chunkSize
}

// snapshot is a running snapshot on the source: its chunks arrive on sub.
type snapshot struct {
	nc  *nats.Conn
	sub *nats.Subscription
	snapshotResponse
}

// startSnapshot asks the source for a snapshot with consumers. The
// server starts pushing chunks as soon as it has answered, up to its
// window (8MiB by default) ahead of our acks.
func startSnapshot(ctx context.Context, src *nats.Conn, name string, chunk int) (*snapshot, error) {
	// The subscription comes first: the server waits only about 2s for
	// interest on the deliver subject before it gives up.
	sub, err := src.SubscribeSync(src.NewInbox())
	if err != nil {
		return nil, fmt.Errorf("jsmove: subscribe for the snapshot of %q: %w", name, err)
	}
	s := &snapshot{nc: src, sub: sub}
	req := snapshotRequest{DeliverSubject: sub.Subject, ChunkSize: chunk}
	err = request(ctx, src, "$JS.API.STREAM.SNAPSHOT."+name, req, &s.snapshotResponse)
	switch {
	case err != nil:
		err = fmt.Errorf("jsmove: snapshot stream %q on the source: %w", name, err)
	case s.Error != nil && s.Error.ErrorCode == jetstream.JSErrCodeStreamNotFound:
		err = fmt.Errorf("jsmove: stream %q: %w; check the name (nats stream ls)", name, ErrStreamNotFound)
	case s.Error != nil:
		err = fmt.Errorf("jsmove: snapshot stream %q on the source: %w", name, s.Error)
	case len(s.Config) == 0 || len(s.State) == 0:
		err = fmt.Errorf("jsmove: snapshot stream %q on the source: the reply has no config or state", name)
	}
	if err != nil {
		sub.Unsubscribe()
		return nil, err
	}
	return s, nil
}

// editConfig applies edit to the stream configuration raw, as the server
// wrote it. Only the fields edit changed are taken from nats.go's
// encoding, so fields this nats.go does not know (placement.preferred in
// server 2.15) reach the destination unchanged.
func editConfig(raw json.RawMessage, name string, edit func(*jetstream.StreamConfig)) (json.RawMessage, error) {
	if edit == nil {
		return raw, nil
	}
	var before, after jetstream.StreamConfig
	if err := json.Unmarshal(raw, &before); err != nil {
		return nil, fmt.Errorf("jsmove: read the configuration of stream %q: %w", name, err)
	}
	_ = json.Unmarshal(raw, &after) // a deep copy for edit to change
	edit(&after)
	if after.Name != name {
		return nil, fmt.Errorf("jsmove: edit renamed stream %q to %q; a restored stream keeps its name", name, after.Name)
	}
	fields, err := fieldsOf(raw)
	if err != nil {
		return nil, fmt.Errorf("jsmove: read the configuration of stream %q: %w", name, err)
	}
	was, err := fieldsOf(before)
	if err != nil {
		return nil, fmt.Errorf("jsmove: edit the configuration of stream %q: %w", name, err)
	}
	is, err := fieldsOf(after)
	if err != nil {
		return nil, fmt.Errorf("jsmove: edit the configuration of stream %q: %w", name, err)
	}
	for k, v := range is {
		if !bytes.Equal(was[k], v) {
			fields[k] = v
		}
	}
	for k := range was {
		if _, ok := is[k]; !ok {
			delete(fields, k)
		}
	}
	return json.Marshal(fields)
}

// fieldsOf is v's JSON encoding, field by field.
func fieldsOf(v any) (map[string]json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	err = json.Unmarshal(b, &fields)
	return fields, err
}

// restore is a restore the destination has accepted: it takes chunks on
// deliver.
type restore struct {
	nc      *nats.Conn
	name    string
	deliver string
	// ended is set once the empty end-of-data message went out.
	ended bool
	// exists is set when the destination reported, only at the end, that
	// the name was taken meanwhile: the stream there is someone else's.
	exists bool
}

// startRestore asks the destination to restore name with cfg. In a
// cluster the answer comes from the stream's new leader, after the
// meta leader has placed the stream.
func startRestore(ctx context.Context, dst *nats.Conn, name string, cfg, state json.RawMessage) (*restore, error) {
	// A subscription of our own rather than a request: if the wait ends
	// before the answer, the answer may still come, and then a restore
	// is waiting on the destination that has to be undone.
	sub, err := dst.SubscribeSync(dst.NewInbox())
	if err != nil {
		return nil, fmt.Errorf("jsmove: subscribe for the restore of %q: %w", name, err)
	}
	defer sub.Unsubscribe()
	body, err := json.Marshal(restoreRequest{Config: cfg, State: state})
	if err != nil {
		return nil, fmt.Errorf("jsmove: restore stream %q: %w", name, err)
	}
	if err := dst.PublishRequest("$JS.API.STREAM.RESTORE."+name, sub.Subject, body); err != nil {
		return nil, fmt.Errorf("jsmove: restore stream %q on the destination: %w", name, err)
	}
	answer := func(ctx context.Context) (*restore, error) {
		ctx, cancel := step(ctx)
		defer cancel()
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, err
		}
		var resp restoreResponse
		if err := decode(m, &resp); err != nil {
			return nil, err
		}
		switch {
		case resp.Error != nil && resp.Error.ErrorCode == errCodeRestoreNameExists:
			return nil, existsError(name)
		case resp.Error != nil:
			return nil, resp.Error
		case resp.DeliverSubject == "":
			return nil, errors.New("the reply has no deliver subject")
		}
		return &restore{nc: dst, name: name, deliver: resp.DeliverSubject}, nil
	}
	rs, err := answer(ctx)
	if err == nil {
		return rs, nil
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		late, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if rs, lerr := answer(late); lerr == nil {
			if uerr := rs.undo(late); uerr != nil {
				err = fmt.Errorf("%w; %w", err, uerr)
			}
		}
	}
	if errors.Is(err, ErrStreamExists) {
		return nil, err
	}
	return nil, fmt.Errorf("jsmove: restore stream %q on the destination: %w", name, err)
}

// relay passes the snapshot's chunks to the restore one at a time, and
// acks each to the source only once the destination has taken it, so
// neither side runs more than the source's window ahead.
func relay(ctx context.Context, snap *snapshot, rs *restore) (Moved, error) {
	for {
		m, err := nextChunk(ctx, snap.sub)
		if err != nil {
			return Moved{}, fmt.Errorf("jsmove: snapshot of stream %q: %w", rs.name, err)
		}
		if len(m.Data) == 0 {
			// The end: a 204 status, or no headers at all when every
			// chunk was short; any other status is the source's error.
			if code := m.Header.Get("Status"); code != "" && code != "204" {
				return Moved{}, fmt.Errorf("jsmove: the source ended the snapshot of stream %q: %s %s",
					rs.name, code, m.Header.Get("Description"))
			}
			return rs.finish(ctx)
		}
		if err := rs.send(ctx, m.Data); err != nil {
			return Moved{}, err
		}
		// The last, short chunk has no reply subject; the rest carry
		// $JS.SNAPSHOT.ACK.<stream>.<id>.<size>.<index>, and any message
		// to it frees one chunk of the window.
		if m.Reply != "" {
			if err := snap.nc.Publish(m.Reply, nil); err != nil {
				return Moved{}, fmt.Errorf("jsmove: ack a snapshot chunk of stream %q: %w", rs.name, err)
			}
		}
	}
}

func nextChunk(ctx context.Context, sub *nats.Subscription) (*nats.Msg, error) {
	ctx, cancel := step(ctx)
	defer cancel()
	return sub.NextMsgWithContext(ctx)
}

// send gives the destination one chunk and waits for its empty ack; a
// reply with a body is the destination's error, after which it has
// stopped taking chunks.
func (rs *restore) send(ctx context.Context, chunk []byte) error {
	ctx, cancel := step(ctx)
	defer cancel()
	m, err := rs.nc.RequestWithContext(ctx, rs.deliver, chunk)
	if err == nil && len(m.Data) > 0 {
		var resp apiResponse
		if err = json.Unmarshal(m.Data, &resp); err == nil && resp.Error != nil {
			err = resp.Error
		}
	}
	if err != nil {
		return fmt.Errorf("jsmove: restore stream %q on the destination: %w", rs.name, err)
	}
	return nil
}

// finish sends the empty message that ends the data; the destination
// answers it with the restored stream's info, or the restore's error.
func (rs *restore) finish(ctx context.Context) (Moved, error) {
	ctx, cancel := step(ctx)
	defer cancel()
	rs.ended = true
	m, err := rs.nc.RequestWithContext(ctx, rs.deliver, nil)
	var resp streamInfoResponse
	if err == nil {
		err = decode(m, &resp)
	}
	if err == nil && resp.Error != nil {
		if resp.Error.ErrorCode == errCodeRestoreNameExists {
			rs.exists = true
			return Moved{}, existsError(rs.name)
		}
		err = resp.Error
	}
	if err != nil {
		return Moved{}, fmt.Errorf("jsmove: restore stream %q on the destination: %w", rs.name, err)
	}
	return Moved{Msgs: resp.State.Msgs, Bytes: resp.State.Bytes, Consumers: resp.State.Consumers}, nil
}

// undo removes what a failed restore left on the destination. The server
// keeps a stream that failed part way (RestoreStreamV2 registers it before
// the messages arrive, and a cluster keeps the failed assignment "for
// explicit cleanup"), so it is deleted here; first the restore is ended,
// so that the delete does not race the server still writing.
func (rs *restore) undo(ctx context.Context) error {
	if rs.exists {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if !rs.ended {
		rs.ended = true
		// The answer is the restore's error, or no responders when the
		// server has already given up; either way it is over.
		rs.nc.RequestWithContext(ctx, rs.deliver, nil)
	}
	var resp apiResponse
	err := request(ctx, rs.nc, "$JS.API.STREAM.DELETE."+rs.name, nil, &resp)
	if err == nil && resp.Error != nil && resp.Error.ErrorCode != jetstream.JSErrCodeStreamNotFound {
		err = resp.Error
	}
	if err != nil {
		return fmt.Errorf("could not delete the partly restored stream %q on the destination, remove it by hand: %w", rs.name, err)
	}
	return nil
}

// waitConsumers waits until the destination lists n consumers of name. A
// cluster registers restored consumers with its meta leader only after
// the restore has answered, and until then it does not list them.
func waitConsumers(ctx context.Context, dst *nats.Conn, name string, n int) error {
	if n == 0 {
		return nil
	}
	ctx, cancel := step(ctx)
	defer cancel()
	pause := 10 * time.Millisecond
	for {
		var resp consumerNamesResponse
		err := request(ctx, dst, "$JS.API.CONSUMER.NAMES."+name, struct{}{}, &resp)
		if err == nil && resp.Error == nil && resp.Total >= n {
			return nil
		}
		if err == nil && resp.Error != nil {
			err = resp.Error
		}
		if err == nil {
			err = fmt.Errorf("%d of %d listed", resp.Total, n)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("jsmove: stream %q was restored but the destination does not list its consumers (%w): %w",
				name, err, ctx.Err())
		case <-time.After(pause):
			pause = min(2*pause, 250*time.Millisecond)
		}
	}
}

// step bounds one wait by stepTimeout within ctx.
func step(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, stepTimeout)
}
