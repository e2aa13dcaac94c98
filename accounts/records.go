package accounts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The server reads a person's records as a user of their account, signed
// by the account's service key and made for the occasion: it lives a few
// minutes and its connection is closed as soon as the work is done. The
// server never holds a connection per person open.
const (
	// recordsSessionTTL is the lifetime of a session for one request.
	recordsSessionTTL = 2 * time.Minute
	// recordsWatchTTL is the lifetime of the user behind a watch; the
	// watch moves to a fresh user well before it runs out.
	recordsWatchTTL = 10 * time.Minute
)

// ActionRecordDelete is the audit action of a record deleted in the web
// GUI. The entry names the revision of the delete, not the key: record
// keys are the person's data, and the audit trail is for admins.
const ActionRecordDelete Action = "record.delete"

// Record operations, as a device's `latch client watch` prints them.
const (
	RecordPut    = "put"
	RecordDelete = "del"
	RecordPurge  = "purge"
)

// DefaultRecordsPage and MaxRecordsPage bound a page of keys.
const (
	DefaultRecordsPage = 100
	MaxRecordsPage     = 1000
)

// Record is one revision of a key of a person's records bucket.
type Record struct {
	Key      string    `json:"key"`
	Revision uint64    `json:"revision"`
	Op       string    `json:"op"` // RecordPut, RecordDelete or RecordPurge
	Size     int       `json:"size"`
	Time     time.Time `json:"time"`
	// Value is nil in listings and in a change's history.
	Value []byte `json:"value,omitempty"`
}

// Deleted reports whether this revision is a delete or a purge.
func (r Record) Deleted() bool { return r.Op != RecordPut }

// RecordQuery selects a page of keys.
type RecordQuery struct {
	// Prefix keeps the keys that start with it.
	Prefix string
	// After is the cursor: only keys sorted after it.
	After string
	// Limit is the most keys in the page; 0 is DefaultRecordsPage.
	Limit int
}

// RecordsPage is a page of keys, sorted, each with its latest revision.
// Deleted keys are left out.
type RecordsPage struct {
	Records []Record
	// Total counts the keys that match the prefix, on every page.
	Total int
	// Before counts the matching keys before this page.
	Before int
	// More tells whether keys follow the last one of this page.
	More bool
	// Revision is the bucket's last revision when the keys were listed: a
	// watch from it on misses no change.
	Revision uint64
	// History is how far the records history reaches; zero when there is
	// none yet.
	History History
	// NoHistory says the person has no records history at all.
	NoHistory bool
	// Usage is how full the records are.
	Usage Usage
}

// Usage is how much of a person's disk quota their records use, in bytes.
type Usage struct {
	// Records is what the records bucket holds, of Quota.
	Records int64 `json:"records"`
	Quota   int64 `json:"quota"`
	// History is what the records history holds, which has room for as
	// much again and drops its oldest writes when full.
	History int64 `json:"history"`
}

// Usage reads how full a person's records and their history are.
func (rs *RecordsSession) Usage(ctx context.Context) (Usage, error) {
	held, err := rs.bucketBytes(ctx)
	if err != nil {
		return Usage{}, err
	}
	u := Usage{Records: held, Quota: rs.person.Limits.Disk}
	if hs, err := rs.historyInfo(ctx); err == nil {
		u.History = int64(hs.State.Bytes)
	}
	return u, nil
}

// bucketBytes is what the records bucket holds, in bytes.
func (rs *RecordsSession) bucketBytes(ctx context.Context) (int64, error) {
	st, err := rs.js.Stream(ctx, "KV_"+RecordsBucket)
	if err != nil {
		return 0, err
	}
	return int64(st.CachedInfo().State.Bytes), nil
}

// RecordDetail is one revision of a key with the key's history.
type RecordDetail struct {
	// Record is the revision asked for, the latest by default, with its
	// value.
	Record
	// Latest is the key's latest revision.
	Latest uint64
	// History is every revision the bucket keeps of the key, newest
	// first, without values.
	History []Record
}

// RecordChange is a change to a person's records, seen by WatchRecords.
type RecordChange struct {
	// Record is the change, without its value.
	Record
	// Listed tells whether the key held a value at the revision the watch
	// was asked about, or at any revision after it and before the watch's
	// first: whether a listing made at that revision, and kept up to date
	// until the watch started, shows the key. It is the same for every
	// change of a key.
	Listed bool
}

// RecordsSession is a connection into a person's account as a short-lived
// service user, for reading and changing their records. Close it when
// done; its user expires on its own a few minutes after it was made.
type RecordsSession struct {
	person  Person
	nc      *nats.Conn
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	expires time.Time
	log     *slog.Logger
}

// OpenRecords opens a records session for a person (by name).
func (s *Service) OpenRecords(ctx context.Context, person string) (*RecordsSession, error) {
	p, err := s.Person(ctx, person)
	if err != nil {
		return nil, err
	}
	return s.openRecords(ctx, p, recordsSessionTTL)
}

func (s *Service) openRecords(ctx context.Context, p Person, ttl time.Duration) (*RecordsSession, error) {
	if p.Status != StatusActive {
		return nil, errorf(ErrDisabled, "account %q is %s; its records cannot be read now", p.Name, p.Status)
	}
	nc, expires, err := s.serviceConn(ctx, p, ttl)
	if err != nil {
		return nil, err
	}
	rs := &RecordsSession{person: p, nc: nc, expires: expires, log: s.log}
	if rs.js, err = jetstream.New(nc); err == nil {
		rs.kv, err = rs.js.KeyValue(ctx, RecordsBucket)
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("the records bucket of %s: %w", p.Name, err)
	}
	return rs, nil
}

// serviceConn connects as a short-lived service user of a person's
// account, whatever the person's status, and says when the user expires.
func (s *Service) serviceConn(ctx context.Context, p Person, ttl time.Duration) (*nats.Conn, time.Time, error) {
	sk, err := s.keysOf(ctx, p)
	if err != nil {
		return nil, time.Time{}, err
	}
	tok, seed, err := serviceUserJWT(p.Account, sk.service, ttl)
	if err != nil {
		return nil, time.Time{}, err
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return nil, time.Time{}, err
	}
	nc, err := s.cfg.Dial(tok, seed)
	clear(seed)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("connect to the account of %s: %w", p.Name, err)
	}
	return nc, time.Unix(uc.Expires, 0), nil
}

// Close closes the session's connection.
func (rs *RecordsSession) Close() { rs.nc.Close() }

// Expires is when the session's user expires.
func (rs *RecordsSession) Expires() time.Time { return rs.expires }

// withRecords runs f in a records session of its own.
func (s *Service) withRecords(ctx context.Context, person string, f func(*RecordsSession) error) error {
	rs, err := s.OpenRecords(ctx, person)
	if err != nil {
		return err
	}
	defer rs.Close()
	return f(rs)
}

// Records lists a page of a person's keys.
func (s *Service) Records(ctx context.Context, person string, q RecordQuery) (page RecordsPage, err error) {
	err = s.withRecords(ctx, person, func(rs *RecordsSession) error {
		if page, err = rs.List(ctx, q); err != nil {
			return err
		}
		info, err := rs.historyInfo(ctx)
		if err == nil {
			page.History = historyOf(info)
			page.Usage.History = int64(info.State.Bytes)
		} else if errors.Is(err, ErrNotFound) {
			page.NoHistory = true
		} else {
			return err
		}
		page.Usage.Quota = rs.person.Limits.Disk
		page.Usage.Records, err = rs.bucketBytes(ctx)
		return err
	})
	return page, err
}

// Record reads a revision of one of a person's keys, the latest when
// revision is 0, with its history.
func (s *Service) Record(ctx context.Context, person, key string, revision uint64) (d RecordDetail, err error) {
	err = s.withRecords(ctx, person, func(rs *RecordsSession) error {
		d, err = rs.Get(ctx, key, revision)
		return err
	})
	return d, err
}

// DeleteRecord deletes one of a person's keys as a device's delete
// would, and says so in the audit trail. See RecordsSession.Delete.
func (s *Service) DeleteRecord(ctx context.Context, person, key string) (r Record, err error) {
	p, err := s.Person(ctx, person)
	if err != nil {
		return Record{}, err
	}
	return s.deleteRecord(ctx, p, key)
}

func (s *Service) deleteRecord(ctx context.Context, p Person, key string) (r Record, err error) {
	rs, err := s.openRecords(ctx, p, recordsSessionTTL)
	if err != nil {
		return Record{}, err
	}
	defer rs.Close()
	r, err = rs.Delete(ctx, key)
	if errors.Is(err, errBucketFull) {
		// One lift of the limit at a time per person, and none while
		// the person is being disabled or deleted.
		unlock := s.lockPerson(p.Name)
		r, err = rs.deleteInReserve(ctx, key)
		unlock()
	}
	if err != nil {
		return Record{}, err
	}
	s.auditAfter(ctx, AuditEvent{Action: ActionRecordDelete, Account: p.Account, AccountName: p.Name,
		Detail: "revision " + strconv.FormatUint(r.Revision, 10)})
	return r, nil
}

// kvPrefix is the subject prefix of the records bucket's keys.
const kvPrefix = "$KV." + RecordsBucket + "."

// List lists a page of keys. It reads the headers of the latest message
// of every key, so a page costs one pass over the keys whatever their
// values weigh.
func (rs *RecordsSession) List(ctx context.Context, q RecordQuery) (RecordsPage, error) {
	if q.Limit <= 0 {
		q.Limit = DefaultRecordsPage
	}
	q.Limit = min(q.Limit, MaxRecordsPage)
	st, err := rs.js.Stream(ctx, "KV_"+RecordsBucket)
	if err != nil {
		return RecordsPage{}, err
	}
	state := st.CachedInfo().State
	page := RecordsPage{Revision: state.LastSeq}
	if state.Msgs == 0 {
		return page, nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{kvPrefix + ">"},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
		HeadersOnly:    true,
	})
	if err != nil {
		return RecordsPage{}, err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		return RecordsPage{}, err
	}
	defer it.Stop()
	var all []Record
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return RecordsPage{}, fmt.Errorf("list records: %w", err)
		}
		r, pending, err := recordOfMsg(m)
		if err != nil {
			return RecordsPage{}, err
		}
		if !r.Deleted() && strings.HasPrefix(r.Key, q.Prefix) {
			all = append(all, r)
		}
		if pending == 0 {
			break
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Key < all[j].Key })
	page.Total = len(all)
	page.Before = sort.Search(len(all), func(i int) bool { return all[i].Key > q.After })
	rest := all[page.Before:]
	if len(rest) > q.Limit {
		rest, page.More = rest[:q.Limit], true
	}
	page.Records = rest
	return page, nil
}

// recordOfMsg reads a headers-only message of the records stream, and
// how many messages follow it.
func recordOfMsg(m jetstream.Msg) (Record, uint64, error) {
	meta, err := m.Metadata()
	if err != nil {
		return Record{}, 0, err
	}
	r := Record{
		Key:      strings.TrimPrefix(m.Subject(), kvPrefix),
		Revision: meta.Sequence.Stream,
		Op:       opOfHeader(m.Headers().Get("KV-Operation")),
		Time:     meta.Timestamp.UTC(),
	}
	r.Size, _ = strconv.Atoi(m.Headers().Get(nats.MsgSize))
	return r, meta.NumPending, nil
}

func opOfHeader(h string) string {
	switch h {
	case "DEL":
		return RecordDelete
	case "PURGE":
		return RecordPurge
	}
	return RecordPut
}

func opOf(op jetstream.KeyValueOp) string {
	switch op {
	case jetstream.KeyValueDelete:
		return RecordDelete
	case jetstream.KeyValuePurge:
		return RecordPurge
	}
	return RecordPut
}

func recordOf(e jetstream.KeyValueEntry, withValue bool) Record {
	r := Record{Key: e.Key(), Revision: e.Revision(), Op: opOf(e.Operation()), Size: len(e.Value()), Time: e.Created().UTC()}
	if withValue {
		r.Value = e.Value()
	}
	return r
}

// MaxRecordKey is the longest record key latch reads or deletes, in
// bytes: a key is part of a subject, and nats-server refuses a message
// whose subject overflows its control line.
const MaxRecordKey = 1024

func checkRecordKey(key string) error {
	if len(key) > MaxRecordKey {
		return invalid("key", "a record key is at most %d bytes; this one has %d", MaxRecordKey, len(key))
	}
	return nil
}

// recordsError turns the KV's errors about a key into domain errors.
func recordsError(key string, err error) error {
	switch {
	case errors.Is(err, jetstream.ErrInvalidKey):
		return invalid("key", "%q is not a record key: keys are letters, digits and - _ = / . (no leading or trailing dot)", clip(key, 64))
	case isNotFound(err):
		return errorf(ErrNotFound, "there is no record %q", clip(key, 64))
	}
	return err
}

// Get reads a revision of a key, the latest when revision is 0, with the
// key's history. A deleted key is found, as its delete.
func (rs *RecordsSession) Get(ctx context.Context, key string, revision uint64) (RecordDetail, error) {
	if err := checkRecordKey(key); err != nil {
		return RecordDetail{}, err
	}
	hist, err := rs.kv.History(ctx, key)
	if err != nil {
		return RecordDetail{}, recordsError(key, err)
	}
	var d RecordDetail
	d.Latest = hist[len(hist)-1].Revision()
	found := false
	for i := len(hist) - 1; i >= 0; i-- {
		e := hist[i]
		d.History = append(d.History, recordOf(e, false))
		if !found && (revision == 0 || e.Revision() == revision) {
			d.Record, found = recordOf(e, true), true
		}
	}
	if !found {
		return RecordDetail{}, errorf(ErrNotFound, "record %q has no revision %d: the bucket keeps only the latest revisions of each key", key, revision)
	}
	return d, nil
}

// errBucketFull is a write the records bucket refused for room.
var errBucketFull = errors.New("the records bucket is full")

// Delete deletes a key and returns the delete. It is a purge, as a
// device's delete with the latch client is: the key's earlier revisions
// go with it, and so does the room they took, which the records history
// keeps for a restore. Every device watching sees the delete. On a
// bucket too full for even the delete it returns errBucketFull, and the
// Service lifts the limit for it (deleteInReserve).
func (rs *RecordsSession) Delete(ctx context.Context, key string) (Record, error) {
	if err := checkRecordKey(key); err != nil {
		return Record{}, err
	}
	e, err := rs.kv.Get(ctx, key)
	if err != nil {
		return Record{}, recordsError(key, err)
	}
	rev, err := rs.purge(ctx, key, e.Revision())
	if err != nil {
		return Record{}, err
	}
	return Record{Key: key, Revision: rev, Op: RecordPurge, Time: time.Now().UTC()}, nil
}

// purge writes a purge of key, on condition that its last revision is
// still last: a write that came in between is not purged unseen.
func (rs *RecordsSession) purge(ctx context.Context, key string, last uint64) (uint64, error) {
	m := nats.NewMsg(kvPrefix + key)
	m.Header.Set("KV-Operation", "PURGE")
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	ack, err := rs.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(last))
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		return ack.Sequence, nil
	case errors.As(err, &apiErr) && isRoomRefusal(apiErr):
		return 0, fmt.Errorf("%w: %s", errBucketFull, apiErr.Description)
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence:
		return 0, errorf(ErrConflict, "record %q changed while it was being deleted; look at it again", clip(key, 64))
	}
	return 0, recordsError(key, err)
}

// isRoomRefusal reports whether JetStream refused a write for room: the
// bucket's byte limit (10077, "maximum bytes exceeded") or the account's
// disk tier (10002).
func isRoomRefusal(e *jetstream.APIError) bool {
	return e.ErrorCode == 10002 || e.ErrorCode == 10077 && strings.Contains(e.Description, "maximum bytes")
}

// deleteInReserve deletes key on a full bucket: it lifts the bucket's
// byte limit by DeleteReserve, purges, and sets the limit back to the
// quota. The purge frees the key's room, so the bucket ends no fuller
// than it was, give or take the purge itself. A device's write that comes
// in during those milliseconds may use the reserve too; the limit is set
// back regardless, and puts are refused until there is room again. Were
// the server to stop in between, the limit stays lifted by at most the
// reserve until the next delete on a full bucket sets it back.
func (rs *RecordsSession) deleteInReserve(ctx context.Context, key string) (Record, error) {
	quota := rs.person.Limits.Disk
	held, err := rs.bucketBytes(ctx)
	if err != nil {
		return Record{}, err
	}
	// Above what the bucket holds, which is more than the quota after the
	// quota shrank.
	if err := rs.setBucketLimit(ctx, max(quota, held)+DeleteReserve(quota)); err != nil {
		return Record{}, fmt.Errorf("make room to delete %q: %w", clip(key, 64), err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := rs.setBucketLimit(ctx, quota); err != nil {
			rs.log.Warn("set a records bucket's limit back to the quota", "person", rs.person.Name, "err", err)
		}
	}()
	r, err := rs.Delete(ctx, key)
	if errors.Is(err, errBucketFull) {
		// Not even the reserve: someone else's writes took it.
		return Record{}, errorf(ErrQuota, "the records of %s are full, past the room kept for deletes; try again, or raise the quota", rs.person.Name)
	}
	return r, err
}

// setBucketLimit sets the records bucket's byte limit. The bucket
// discards nothing when the limit is below what it holds: it refuses
// writes until deletes make room.
func (rs *RecordsSession) setBucketLimit(ctx context.Context, n int64) error {
	return setStreamMaxBytes(ctx, rs.js, "KV_"+RecordsBucket, n)
}

// WatchRecords streams the changes to a person's records from revision
// from on, for as long as ctx lasts. Each change says whether its key held
// a value at revision listed (see RecordChange.Listed). The channel is
// closed when ctx ends or the connection is lost; the caller may watch
// again from the revision after the last it saw.
//
// The watch runs as a service user like any records session, and moves
// to a fresh one before that user expires, so that a page left open for
// a day still holds no user for more than minutes.
func (s *Service) WatchRecords(ctx context.Context, person string, from, listed uint64) (<-chan RecordChange, error) {
	p, err := s.Person(ctx, person)
	if err != nil {
		return nil, err
	}
	rs, err := s.openRecords(ctx, p, s.watchUserTTL())
	if err != nil {
		return nil, err
	}
	out := make(chan RecordChange, 64)
	go s.watchRecords(ctx, p, rs, max(from, 1), listed, out)
	return out, nil
}

func (s *Service) watchRecords(ctx context.Context, p Person, rs *RecordsSession, next, listed uint64, out chan<- RecordChange) {
	defer close(out)
	defer func() { rs.Close() }()
	first := next
	listedKeys := map[string]bool{}
	for {
		w, err := rs.kv.WatchAll(ctx, jetstream.IncludeHistory(), jetstream.ResumeFromRevision(next))
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("watch records", "account", p.Account, "err", err)
			}
			return
		}
		// Move to a fresh user when three quarters of this one's life
		// have gone.
		renew := time.NewTimer(time.Until(rs.expires) * 3 / 4)
	changes:
		for {
			select {
			case <-ctx.Done():
				renew.Stop()
				w.Stop()
				return
			case <-renew.C:
				break changes
			case e, ok := <-w.Updates():
				if !ok {
					renew.Stop()
					return // the connection is gone
				}
				if e == nil {
					continue // caught up
				}
				c := RecordChange{Record: recordOf(e, false)}
				was, seen := listedKeys[c.Key]
				if !seen {
					was = listedAt(ctx, rs.kv, c.Key, listed, first)
					listedKeys[c.Key] = was
				}
				c.Listed = was
				select {
				case out <- c:
				case <-ctx.Done():
					renew.Stop()
					w.Stop()
					return
				}
				next = e.Revision() + 1
			}
		}
		w.Stop()
		fresh, err := s.openRecords(ctx, p, s.watchUserTTL())
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("watch records: renew the service user", "account", p.Account, "err", err)
			}
			return
		}
		rs.Close()
		rs = fresh
	}
}

func (s *Service) watchUserTTL() time.Duration {
	if s.watchTTL > 0 {
		return s.watchTTL
	}
	return recordsWatchTTL
}

// listedAt tells whether a key held a value at revision listed (the latest
// of its entries up to it is a put) or was put after it and before
// revision before. When the bucket no longer keeps entries that old, it
// answers from those it keeps.
func listedAt(ctx context.Context, kv jetstream.KeyValue, key string, listed, before uint64) bool {
	hist, err := kv.History(ctx, key)
	if err != nil {
		return false
	}
	for i := len(hist) - 1; i >= 0; i-- {
		e := hist[i]
		switch {
		case e.Revision() >= before:
		case e.Revision() > listed:
			if e.Operation() == jetstream.KeyValuePut {
				return true
			}
		default:
			return listed > 0 && e.Operation() == jetstream.KeyValuePut
		}
	}
	return false
}
