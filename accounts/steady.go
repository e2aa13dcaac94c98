package accounts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// steadyKV is one of latch's buckets that rides out a change of its
// stream's leader. When a node of a cluster goes down, the streams it led
// elect a new leader among the others, which takes a few seconds; latch's
// buckets are read from the leader only (leaderReads), so meanwhile a
// request gets no responders, or no answer in time. steadyKV asks again,
// for up to leaderWait, whichever of those two went wrong (see Put for
// the writes).
type steadyKV struct {
	jetstream.KeyValue
	nc     *nats.Conn
	bucket string
}

// leaderWait is how long a request to one of latch's buckets is made
// again while the bucket has no leader.
const leaderWait = 15 * time.Second

// Get reads a key's last value from the stream's leader. It asks the
// leader itself (STREAM.MSG.GET) rather than through the bound bucket,
// which reads any replica when it was bound while the stream still
// allowed that: on a cluster that is starting, one node may bind a
// bucket just before another turns direct reads off.
func (kv steadyKV) Get(ctx context.Context, key string) (e jetstream.KeyValueEntry, err error) {
	err = steadily(ctx, true, func(ctx context.Context) error { e, err = kv.leaderGet(ctx, key); return err })
	return e, err
}

func (kv steadyKV) leaderGet(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	subject := "$KV." + kv.bucket + "." + key
	req, _ := json.Marshal(map[string]string{"last_by_subj": subject})
	m, err := kv.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+kv.bucket, req)
	if err != nil {
		return nil, err
	}
	var r struct {
		Error   *jetstream.APIError `json:"error"`
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Header  []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return nil, fmt.Errorf("read %s: %w", subject, err)
	}
	switch {
	case r.Error != nil && r.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return nil, jetstream.ErrKeyNotFound
	case r.Error != nil:
		return nil, r.Error
	case r.Message == nil:
		return nil, fmt.Errorf("read %s: an empty answer", subject)
	}
	e := entry{bucket: kv.bucket, key: key, value: r.Message.Data, rev: r.Message.Seq, created: r.Message.Time, op: jetstream.KeyValuePut}
	if len(r.Message.Header) > 0 {
		h, err := nats.DecodeHeadersMsg(r.Message.Header)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", subject, err)
		}
		switch h.Get("KV-Operation") {
		case "DEL", "PURGE":
			return nil, jetstream.ErrKeyNotFound
		}
		if reason := h.Get(jetstream.MarkerReasonHeader); reason != "" {
			return nil, jetstream.ErrKeyNotFound
		}
	}
	return e, nil
}

// entry is a key's value as leaderGet read it.
type entry struct {
	bucket, key string
	value       []byte
	rev         uint64
	created     time.Time
	op          jetstream.KeyValueOp
}

func (e entry) Bucket() string                  { return e.bucket }
func (e entry) Key() string                     { return e.key }
func (e entry) Value() []byte                   { return e.value }
func (e entry) Revision() uint64                { return e.rev }
func (e entry) Created() time.Time              { return e.created }
func (e entry) Delta() uint64                   { return 0 }
func (e entry) Operation() jetstream.KeyValueOp { return e.op }

// Writes are made again after no responders, and after a timeout too: a
// write sent while the stream changes leader or replicas (R1 to R3 when
// a node joins) may be lost, and one that was done is done again to the
// same effect. A put or a delete made twice leaves the key as once; a
// conditional delete (LastRevision) is not made again after a timeout,
// for it takes something once and cannot tell its own try from another's.
// A create or an update made again after a timeout may find its own first
// try done, and fail on the revision it expected: when the key then holds
// the value it wrote, that is the write having been done, and it succeeds.

func (kv steadyKV) Put(ctx context.Context, key string, value []byte) (rev uint64, err error) {
	err = steadily(ctx, true, func(ctx context.Context) error { rev, err = kv.KeyValue.Put(ctx, key, value); return err })
	return rev, err
}

func (kv steadyKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (rev uint64, err error) {
	err = kv.casAgain(ctx, key, value, &rev, func(ctx context.Context) (uint64, error) { return kv.KeyValue.Create(ctx, key, value, opts...) })
	return rev, err
}

func (kv steadyKV) Update(ctx context.Context, key string, value []byte, last uint64) (rev uint64, err error) {
	err = kv.casAgain(ctx, key, value, &rev, func(ctx context.Context) (uint64, error) { return kv.KeyValue.Update(ctx, key, value, last) })
	return rev, err
}

// casAgain runs write, a create or an update of key to value, steadily.
// If a try timed out and a later one fails because the key has changed,
// it reads the key: holding value, the timed-out try was done.
func (kv steadyKV) casAgain(ctx context.Context, key string, value []byte, rev *uint64, write func(context.Context) (uint64, error)) error {
	timedOut := false
	return steadily(ctx, true, func(ctx context.Context) error {
		r, err := write(ctx)
		if timedOut && errors.Is(err, jetstream.ErrKeyExists) {
			if e, gerr := kv.leaderGet(ctx, key); gerr == nil && bytes.Equal(e.Value(), value) {
				*rev = e.Revision()
				return nil
			}
		}
		timedOut = timedOut || isTimeout(err)
		*rev = r
		return err
	})
}

func (kv steadyKV) Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	return steadily(ctx, len(opts) == 0, func(ctx context.Context) error { return kv.KeyValue.Delete(ctx, key, opts...) })
}

func (kv steadyKV) Purge(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	return steadily(ctx, len(opts) == 0, func(ctx context.Context) error { return kv.KeyValue.Purge(ctx, key, opts...) })
}

func (kv steadyKV) ListKeys(ctx context.Context, opts ...jetstream.WatchOpt) (l jetstream.KeyLister, err error) {
	// The lister reads on after the try: it keeps the caller's context.
	err = steadily(ctx, true, func(context.Context) error { l, err = kv.KeyValue.ListKeys(ctx, opts...); return err })
	return l, err
}

func (kv steadyKV) ListKeysFiltered(ctx context.Context, filters ...string) (l jetstream.KeyLister, err error) {
	err = steadily(ctx, true, func(context.Context) error { l, err = kv.KeyValue.ListKeysFiltered(ctx, filters...); return err })
	return l, err
}

// tryWait bounds one try of a request to a bucket, whatever the caller's
// deadline: a request to a stream with no leader is answered by no one,
// and would otherwise wait out the caller's deadline (an admin request's
// minute) rather than be made again once a leader is elected.
const tryWait = 5 * time.Second

// steadily runs req until it succeeds, fails for another reason, ctx
// ends or leaderWait has passed; again says whether it may be made again
// after a timeout. Each try has tryWait at most.
func steadily(ctx context.Context, again bool, req func(context.Context) error) error {
	deadline := time.Now().Add(leaderWait)
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		tctx, cancel := context.WithTimeout(ctx, tryWait)
		err := req(tctx)
		cancel()
		if err == nil || !leaderless(err, again) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// leaderless reports whether err is what a bucket whose stream is between
// leaders answers: no responders, JetStream "temporarily unavailable"
// (10008), or, when again, no answer in time.
func leaderless(err error, again bool) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse):
		return true
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jsUnavailable:
		return true
	case again && isTimeout(err):
		return true
	}
	return false
}

func isTimeout(err error) bool {
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)
}
