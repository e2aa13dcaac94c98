package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is the person's key-value bucket that devices sync; its stream
// is KV_records.
const Bucket = "records"

const (
	kvStream = "KV_" + Bucket
	kvPrefix = "$KV." + Bucket + "."
)

// Errors of the records API. Match them with errors.Is.
var (
	// ErrNotFound: the key has no value (never written, or deleted).
	ErrNotFound = errors.New("no such record")
	// ErrConflict: a compare-and-set (Update) found another revision;
	// the *ConflictError says which.
	ErrConflict = errors.New("the record changed")
	// ErrBadKey: the key breaks the rules of KeyRule.
	ErrBadKey = errors.New("not a valid key")
	// ErrQuota: the person's storage quota is used up.
	ErrQuota = errors.New("the records are over their storage quota")
	// ErrTooLarge: the value is larger than the server takes.
	ErrTooLarge = errors.New("the value is too large")
)

// KeyRule says which keys are valid: NATS KV's own rule, checked here so a
// bad key fails with this message before anything is sent.
const KeyRule = "a key is letters, digits and - / _ = . only, and does not start or end with '.' or hold '..'"

var keyRE = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)

// ValidateKey checks a key against KeyRule; the error matches ErrBadKey.
func ValidateKey(key string) error {
	if !keyRE.MatchString(key) || key[0] == '.' || key[len(key)-1] == '.' || strings.Contains(key, "..") {
		return fmt.Errorf("%w: %q; %s", ErrBadKey, key, KeyRule)
	}
	return nil
}

// validatePrefix checks a prefix of keys: empty, or the start of a valid
// key (so it may end with '.').
func validatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if !keyRE.MatchString(prefix) || prefix[0] == '.' || strings.Contains(prefix, "..") {
		return fmt.Errorf("%w: prefix %q; %s", ErrBadKey, prefix, KeyRule)
	}
	return nil
}

// Entry is a record: its value, or in a List only its size.
type Entry struct {
	Key      string
	Value    []byte // nil in the entries of List
	Size     int    // the value's length in bytes
	Revision uint64 // the bucket's sequence number of this write
	Created  time.Time
}

// Op is what a Change did.
type Op string

// The operations a Change reports.
const (
	OpPut    Op = "put"
	OpDelete Op = "del"
)

// Change is one write to the bucket as a watch sees it.
type Change struct {
	Op       Op
	Key      string
	Revision uint64
	Value    []byte // empty for a delete
	Time     time.Time
}

// ConflictError is a compare-and-set that found the record at another
// revision than the one expected. It matches ErrConflict.
type ConflictError struct {
	Key      string
	Expected uint64 // 0: the record was expected not to exist
	Current  uint64 // 0: the record has no value
}

func (e *ConflictError) Error() string {
	switch {
	case e.Current == 0:
		return fmt.Sprintf("record %q has no value, not revision %d; nothing was written", e.Key, e.Expected)
	case e.Expected == 0:
		return fmt.Sprintf("record %q exists already, at revision %d; nothing was written", e.Key, e.Current)
	}
	return fmt.Sprintf("record %q is at revision %d, not %d; nothing was written", e.Key, e.Current, e.Expected)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// Records is a device's live connection to its person's records. It
// reconnects on its own, and renews the device's JWT in the background
// when less than a third of its lifetime is left (see Renew). It is safe
// for concurrent use; Close it when done.
type Records struct {
	dev    *Device
	log    *slog.Logger
	sess   *session
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream // KV_records, for direct gets
	kv     jetstream.KeyValue
	push   nats.JetStreamContext // the push API, for List's headers-only consumer

	stop   context.CancelFunc
	done   chan struct{} // closed when the renewal loop has ended
	closed chan struct{} // closed when the connection has closed, Err set
	once   sync.Once     // closes closed

	mu  sync.Mutex
	err error // why the connection ended for good
}

// Option changes how Records connects.
type Option func(*options)

type options struct {
	log  *slog.Logger
	nats []nats.Option
}

// WithLogger logs disconnects, reconnects and renewals; by default
// nothing is logged.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithNATSOptions adds options for the NATS connection, after latch's own.
func WithNATSOptions(opts ...nats.Option) Option {
	return func(o *options) { o.nats = append(o.nats, opts...) }
}

// Records connects to the device's NATS servers and opens the records
// bucket. When the JWT is due for renewal (or has expired) it is renewed
// first.
func (d *Device) Records(ctx context.Context, opts ...Option) (*Records, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if len(d.Servers) == 0 {
		return nil, fmt.Errorf("no NATS server is known for this device; give one with --server or enroll again")
	}
	sess, err := loadSession(d.CredsPath, d.PublicKey)
	if err != nil {
		return nil, err
	}
	if sess.due(time.Now()) {
		if _, err := d.renewSession(ctx, sess); err != nil {
			if errors.Is(err, ErrRevoked) || errors.Is(err, ErrRenewRefused) || sess.expired(time.Now()) {
				return nil, err
			}
			o.log.Warn("could not renew the device's JWT; trying again later", "err", err)
		}
	}
	r := &Records{dev: d, log: o.log, sess: sess, done: make(chan struct{}), closed: make(chan struct{})}
	nopts := append([]nats.Option{
		nats.UserJWT(sess.jwtCB, sess.signCB),
		nats.Name("latch client " + d.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(2 * time.Second),
		nats.ReconnectJitter(500*time.Millisecond, time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				r.log.Warn("disconnected from the server; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { r.log.Info("reconnected", "server", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(nc *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrAuthRevoked) {
				// Final: reconnecting would only be refused.
				r.fail(fmt.Errorf("%w (the server closed the connection: %v)", ErrRevoked, err))
				go nc.Close()
				return
			}
			r.log.Warn("error from the server", "err", err)
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			defer r.once.Do(func() { close(r.closed) })
			switch err := nc.LastError(); {
			case err == nil:
			case sess.expired(time.Now()):
				r.fail(fmt.Errorf("the device's JWT expired and was not renewed; renew it with `latch client renew` (the server said: %v)", err))
			default:
				r.fail(explainConnErr(err))
			}
		}),
	}, append(d.natsTLS(), o.nats...)...)
	r.nc, err = nats.Connect(strings.Join(d.Servers, ","), nopts...)
	if errors.Is(err, nats.ErrMaxAccountConnectionsExceeded) && d.URL != "" {
		// A disabled account has a limit of no connections; the server
		// says only that the limit is reached. A renewal says why.
		if _, rerr := d.renewSession(ctx, sess); errors.Is(rerr, ErrDisabled) {
			return nil, rerr
		}
	}
	if errors.Is(err, nats.ErrAuthorization) && d.URL != "" {
		// The server does not say why it refuses a user. Ask for a
		// renewal: a revoked device learns so, and a JWT the server no
		// longer takes is replaced.
		if _, rerr := d.renewSession(ctx, sess); rerr == nil {
			r.nc, err = nats.Connect(strings.Join(d.Servers, ","), nopts...)
		} else if errors.Is(rerr, ErrRevoked) || errors.Is(rerr, ErrRenewRefused) {
			return nil, rerr
		}
	}
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", strings.Join(d.Servers, ", "), explainConnErr(err))
	}
	r.js, err = jetstream.New(r.nc)
	if err == nil {
		r.kv, err = r.js.KeyValue(ctx, Bucket)
	}
	if err == nil {
		r.stream, err = r.js.Stream(ctx, kvStream)
	}
	if err == nil {
		r.push, err = r.nc.JetStream()
	}
	if err != nil {
		r.nc.Close()
		return nil, fmt.Errorf("open the records bucket: %w", err)
	}
	rctx, stop := context.WithCancel(context.Background())
	r.stop = stop
	go r.renewLoop(rctx)
	return r, nil
}

// Close stops the renewals and closes the connection.
func (r *Records) Close() error {
	r.stop()
	<-r.done
	r.nc.Close()
	return nil
}

// Expires is when the JWT the connection uses expires; nil is never.
func (r *Records) Expires() *time.Time { return r.sess.expires() }

// Conn is the NATS connection, for what the records API does not cover.
func (r *Records) Conn() *nats.Conn { return r.nc }

// Err says why the connection ended for good (the device was revoked,
// say), or nil while it lives. A Watch's channel closes then too.
func (r *Records) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *Records) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
}

// Put writes value under key and returns the new revision.
func (r *Records) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	if err := ValidateKey(key); err != nil {
		return 0, err
	}
	return r.write(ctx, key, value, nil, nil)
}

// Update writes value under key only if the record is at revision; with
// revision 0, only if the record has no value (it was never written, or
// deleted). Otherwise it writes nothing and returns a *ConflictError
// (errors.Is(err, ErrConflict)).
func (r *Records) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	if err := ValidateKey(key); err != nil {
		return 0, err
	}
	expect := revision
	for {
		rev, err := r.write(ctx, key, value, nil, &expect)
		if !errors.Is(err, errWrongRevision) {
			return rev, err
		}
		last, err := r.last(ctx, key)
		if err != nil {
			return 0, err
		}
		switch {
		case revision == 0 && last.deleted && last.Revision != expect:
			// "No value" includes a delete; write over that delete, once
			// more if it changed meanwhile.
			expect = last.Revision
			continue
		case last.deleted || last.Revision == 0:
			return 0, &ConflictError{Key: key, Expected: revision}
		}
		return 0, &ConflictError{Key: key, Expected: revision, Current: last.Revision}
	}
}

// Get returns the record under key, or ErrNotFound.
func (r *Records) Get(ctx context.Context, key string) (Entry, error) {
	if err := ValidateKey(key); err != nil {
		return Entry{}, err
	}
	last, err := r.last(ctx, key)
	if err != nil {
		return Entry{}, err
	}
	if last.Revision == 0 || last.deleted {
		return Entry{}, fmt.Errorf("%w: %q", ErrNotFound, key)
	}
	return last.Entry, nil
}

// Delete deletes the record under key; ErrNotFound when it has no value.
// It is a purge: the key's earlier revisions go with it, and so does the
// room they took (the server's records history keeps them for a
// restore). Watches see the delete. On records too full for even the
// delete, JetStream refuses it, and Delete asks latch to make it
// (DeviceAPIRecordsDelete), which keeps room for deletes.
func (r *Records) Delete(ctx context.Context, key string) error {
	if _, err := r.Get(ctx, key); err != nil {
		return err
	}
	_, err := r.write(ctx, key, nil, nats.Header{
		"KV-Operation":      []string{"PURGE"},
		jetstream.MsgRollup: []string{jetstream.MsgRollupSubject},
	}, nil)
	if errors.Is(err, ErrQuota) {
		return r.deleteThroughServer(ctx, key)
	}
	return err
}

// DeviceAPIRecordsDelete is the device API's endpoint that deletes a
// record on a full bucket: a request of {"key": KEY} to
// latch.device.<the device's user key>.api.records.delete, answered with
// {"key", "revision"}, or an error in the headers Nats-Service-Error and
// Nats-Service-Error-Code. Any NATS client with the device's creds can
// send it.
const DeviceAPIRecordsDelete = "records.delete"

// deleteThroughServer asks latch to delete key.
func (r *Records) deleteThroughServer(ctx context.Context, key string) error {
	body, _ := json.Marshal(map[string]string{"key": key})
	subject := "latch.device." + r.dev.PublicKey + ".api." + DeviceAPIRecordsDelete
	var m *nats.Msg
	err := r.retry(ctx, func(ctx context.Context) error {
		var err error
		m, err = r.nc.RequestWithContext(ctx, subject, body)
		return err
	})
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("%w: %q was not deleted: the records are full, and the server does not offer deletes on full records; ask an admin", ErrQuota, key)
	}
	if err != nil {
		return fmt.Errorf("delete %q through the server: %w", key, err)
	}
	if msg := m.Header.Get("Nats-Service-Error"); msg != "" {
		if m.Header.Get("Nats-Service-Error-Code") == "404" {
			return fmt.Errorf("%w: %q", ErrNotFound, key)
		}
		return fmt.Errorf("delete %q: the server said: %s", key, msg)
	}
	return nil
}

// Usage is how much of the person's records quota is in use, in bytes.
// Quota is 0 when the records have no limit of their own.
type Usage struct {
	Used  int64 `json:"used"`
	Quota int64 `json:"quota"`
}

// Usage reads how full the person's records are.
func (r *Records) Usage(ctx context.Context) (Usage, error) {
	var u Usage
	err := r.retry(ctx, func(ctx context.Context) error {
		var err error
		u, err = StreamUsage(ctx, r.js)
		return err
	})
	return u, err
}

// StreamUsage reads how full the records bucket is, for any connection a
// device's creds opened.
func StreamUsage(ctx context.Context, js jetstream.JetStream) (Usage, error) {
	st, err := js.Stream(ctx, kvStream)
	if err != nil {
		return Usage{}, fmt.Errorf("read the records bucket's state: %w", err)
	}
	info := st.CachedInfo()
	u := Usage{Used: int64(info.State.Bytes)}
	if info.Config.MaxBytes > 0 {
		u.Quota = info.Config.MaxBytes
	}
	return u, nil
}

// errWrongRevision is a compare-and-set write the stream refused.
var errWrongRevision = errors.New("wrong last revision")

// write publishes to key's subject, as the KV API does, with a message ID
// of its own: when a reconnect (after a renewal, say) loses the answer,
// write sends again, and JetStream's duplicate window keeps the write
// single and answers with its revision.
func (r *Records) write(ctx context.Context, key string, value []byte, hdr nats.Header, expect *uint64) (uint64, error) {
	id := make([]byte, 16)
	rand.Read(id)
	opts := []jetstream.PublishOpt{jetstream.WithMsgID(hex.EncodeToString(id))}
	if expect != nil {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(*expect))
	}
	var ack *jetstream.PubAck
	err := r.retry(ctx, func(ctx context.Context) error {
		m := &nats.Msg{Subject: kvPrefix + key, Data: value, Header: nats.Header{}}
		for k, v := range hdr {
			m.Header[k] = v
		}
		var err error
		ack, err = r.js.PublishMsg(ctx, m, opts...)
		return err
	})
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return 0, errWrongRevision
	}
	if err != nil {
		return 0, r.writeErr(key, err)
	}
	return ack.Sequence, nil
}

// lastMsg is the last write to a key; Revision 0 when there is none.
type lastMsg struct {
	Entry
	deleted bool
}

// last reads the last write to key, a delete or not, with a direct get.
func (r *Records) last(ctx context.Context, key string) (lastMsg, error) {
	var m *jetstream.RawStreamMsg
	err := r.retry(ctx, func(ctx context.Context) error {
		var err error
		m, err = r.stream.GetLastMsgForSubject(ctx, kvPrefix+key)
		return err
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return lastMsg{}, nil
	}
	if err != nil {
		return lastMsg{}, fmt.Errorf("read %q: %w", key, err)
	}
	l := lastMsg{Entry: Entry{Key: key, Value: m.Data, Size: len(m.Data), Revision: m.Sequence, Created: m.Time}}
	l.deleted = isDelete(m.Header)
	return l, nil
}

// isDelete reports whether a write's headers make it a delete: a KV
// delete or purge, or a marker the server left for a removed message.
func isDelete(h nats.Header) bool {
	switch h.Get("KV-Operation") {
	case "DEL", "PURGE":
		return true
	}
	return h.Get(jetstream.MarkerReasonHeader) != ""
}

// retry runs op until it succeeds, fails for a reason other than a lost
// connection, or ctx ends: a reconnect fails the requests in flight, and
// the connection reconnects on its own.
func (r *Records) retry(ctx context.Context, op func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		lost := errors.Is(err, nats.ErrDisconnected) || errors.Is(err, nats.ErrTimeout) ||
			errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil
		if !lost || attempt == 10 {
			return err
		}
		if werr := r.waitConnected(ctx); werr != nil {
			return errors.Join(err, werr)
		}
	}
}

// waitConnected waits until the connection is up again.
func (r *Records) waitConnected(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		switch {
		case r.nc.IsConnected():
			return nil
		case r.nc.IsClosed():
			if err := r.Err(); err != nil {
				return err
			}
			return nats.ErrConnectionClosed
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// List returns the records whose keys start with prefix (all for ""),
// sorted by key, with their sizes but not their values.
func (r *Records) List(ctx context.Context, prefix string) ([]Entry, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	var (
		mu      sync.Mutex
		entries []Entry
		once    sync.Once
		caught  = make(chan struct{})
	)
	// A headers-only ordered consumer of the last write of every key: the
	// values stay on the server, the size comes in a header. The device's
	// permissions allow push consumers only, as KV watches use.
	sub, err := r.push.Subscribe(subjectFilter(prefix), func(m *nats.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		key := strings.TrimPrefix(m.Subject, kvPrefix)
		if !isDelete(m.Header) && strings.HasPrefix(key, prefix) {
			size, _ := strconv.Atoi(m.Header.Get(nats.MsgSize))
			mu.Lock()
			entries = append(entries, Entry{Key: key, Size: size, Revision: md.Sequence.Stream, Created: md.Timestamp})
			mu.Unlock()
		}
		if md.NumPending == 0 {
			once.Do(func() { close(caught) })
		}
	}, nats.BindStream(kvStream), nats.OrderedConsumer(), nats.DeliverLastPerSubject(), nats.HeadersOnly(), nats.Context(ctx))
	if err != nil {
		return nil, fmt.Errorf("list the records: %w", err)
	}
	defer sub.Unsubscribe()
	if n, err := sub.InitialConsumerPending(); err == nil && n == 0 {
		once.Do(func() { close(caught) })
	}
	select {
	case <-caught:
	case <-ctx.Done():
		return nil, fmt.Errorf("list the records: %w", ctx.Err())
	}
	mu.Lock()
	defer mu.Unlock()
	sort.Slice(entries, func(i, j int) bool { return entries[i].Key < entries[j].Key })
	return entries, nil
}

// WatchOption changes where a Watch starts.
type WatchOption func(*watchOpts)

type watchOpts struct {
	resume bool
	from   uint64
}

// ResumeFrom makes a Watch deliver every change after revision rev, in
// order, deletes included, then the live ones; ResumeFrom(0) delivers all
// the bucket still holds. Without it a Watch starts with the current value
// of every key (no deletes), then the live changes.
//
// The bucket keeps the last few revisions of each key: a device that was
// away long enough may not see every intermediate write of a key, but
// always sees its latest, delete or not, so applying the changes in order
// ends in the bucket's state.
func ResumeFrom(rev uint64) WatchOption {
	return func(o *watchOpts) { o.resume, o.from = true, rev }
}

// Watch delivers the changes to records whose keys start with prefix
// (all for ""). The channel closes when ctx ends or the connection ends
// for good (then Err says why).
func (r *Records) Watch(ctx context.Context, prefix string, opts ...WatchOption) (<-chan Change, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	var o watchOpts
	for _, opt := range opts {
		opt(&o)
	}
	var kvOpts []jetstream.WatchOpt
	if o.resume {
		kvOpts = append(kvOpts, jetstream.IncludeHistory(), jetstream.ResumeFromRevision(o.from+1))
	}
	filter := strings.TrimPrefix(subjectFilter(prefix), kvPrefix)
	w, err := r.kv.Watch(ctx, filter, kvOpts...)
	if err != nil {
		return nil, fmt.Errorf("watch the records: %w", err)
	}
	out := make(chan Change)
	go func() {
		defer close(out)
		defer func() {
			w.Stop()
			// The watcher's callback may be blocked handing over a
			// change; take what is left so it ends.
			go func() {
				for range w.Updates() {
				}
			}()
		}()
		initial := !o.resume
		for {
			var e jetstream.KeyValueEntry
			var ok bool
			select {
			case <-ctx.Done():
				return
			case e, ok = <-w.Updates():
			}
			if !ok {
				// The connection closed: wait for its handler to set
				// Err, so a reader of the closed channel learns why.
				select {
				case <-r.closed:
				case <-time.After(5 * time.Second):
				}
				return
			}
			if e == nil { // the current values are all delivered
				initial = false
				continue
			}
			if !strings.HasPrefix(e.Key(), prefix) {
				continue
			}
			c := Change{Op: OpPut, Key: e.Key(), Revision: e.Revision(), Value: e.Value(), Time: e.Created()}
			if e.Operation() != jetstream.KeyValuePut {
				if initial {
					continue // a key deleted before the watch began is simply absent
				}
				c.Op, c.Value = OpDelete, nil
			}
			select {
			case out <- c:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// subjectFilter is the stream subject a watch of prefix needs: the
// prefix's subtree when it ends with '.', else every key (a key prefix
// is not a subject token, so the rest is filtered here).
func subjectFilter(prefix string) string {
	if strings.HasSuffix(prefix, ".") {
		return kvPrefix + prefix + ">"
	}
	return kvPrefix + ">"
}

// writeErr says in words why a write failed where NATS's own words are
// obscure.
func (r *Records) writeErr(key string, err error) error {
	var apiErr *jetstream.APIError
	if errors.Is(err, nats.ErrMaxPayload) {
		return fmt.Errorf("%w: the server takes at most %d bytes per record", ErrTooLarge, r.nc.MaxPayload())
	}
	if !errors.As(err, &apiErr) {
		return fmt.Errorf("write %q: %w", key, err)
	}
	switch {
	// The account's disk tier (10002), or the bucket's own byte limit: a
	// DiscardNew stream refuses with 10077 "maximum bytes exceeded".
	case apiErr.ErrorCode == 10002 ||
		apiErr.ErrorCode == 10077 && strings.Contains(apiErr.Description, "maximum bytes"):
		return fmt.Errorf("%w: %q was not written: the records are full; delete records you no longer need (`latch client rm KEY`), or ask an admin for a larger quota (the server said: %s)", ErrQuota, key, apiErr.Description)
	// The server's own storage, shared by every person (10023, 10047).
	case apiErr.ErrorCode == 10023 || apiErr.ErrorCode == 10047:
		return fmt.Errorf("the server is out of storage, so %q was not written; tell its admin (the server said: %s)", key, apiErr.Description)
	case apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum:
		return fmt.Errorf("%w: %s", ErrTooLarge, apiErr.Description)
	}
	return fmt.Errorf("write %q: %w", key, err)
}

// explainConnErr turns the server's refusals into what to do.
func explainConnErr(err error) error {
	s := strings.ToLower(err.Error())
	switch {
	case strings.Contains(s, "revoked"):
		return fmt.Errorf("%w (the server said: %v)", ErrRevoked, err)
	case strings.Contains(s, "expired"):
		return fmt.Errorf("the device's JWT has expired; renew it with `latch client renew` (the server said: %v)", err)
	case strings.Contains(s, "maximum account active connections"):
		return fmt.Errorf("the person's devices hold every connection their account may have, or the account is disabled; close a connection (`latch device ls` shows them), or ask an admin (the server said: %v)", err)
	}
	return err
}
