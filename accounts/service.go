// Package accounts is latch's domain: persons and their NATS accounts,
// devices and their users, the claims and keys behind them, revocation, the
// audit trail and the admin service that the CLI calls.
//
// The Service here is the only writer of account JWTs. Every change to one
// account goes through that account's writer, which applies changes one
// batch at a time and never signs a JWT whose iat is not later than the
// last one's: nats-server's resolver stores whatever it is pushed without
// comparing iat, so an older JWT pushed late would quietly undo a
// revocation.
package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// Names of latch's own buckets and streams in the LATCH account.
const (
	PersonsBucket    = "latch_persons"
	DevicesBucket    = "latch_devices"
	SecretsBucket    = "latch_secrets"
	TombstonesBucket = "latch_tombstones"
	PasskeysBucket   = "latch_passkeys"
	EnrollBucket     = "latch_enroll"
	InvitesBucket    = "latch_invites"
	AdminsBucket     = "latch_admins"
	SessionsBucket   = "latch_sessions"
	// JWTsBucket is the record of truth of account JWTs: each person's
	// and LATCH_ADMIN's last JWT, committed there before it is pushed.
	JWTsBucket   = "latch_jwts"
	AuditStream  = "latch_audit"
	auditSubject = "latch.audit"
)

// Directory is where account JWTs are published: the full resolver, over
// its system-account protocol.
type Directory interface {
	Push(ctx context.Context, accountJWT string) error
	// Lookup returns "" when no server holds the account.
	Lookup(ctx context.Context, account string) (string, error)
	Delete(ctx context.Context, signer nkeys.KeyPair, accounts ...string) error
	PurgeJetStream(ctx context.Context, account string) error
}

// Connections tells how many connections a device has open and closes
// them; the server's presence watcher and embedded nats-server do.
type Connections interface {
	Conns(account, user string) int
	Disconnect(account, user string) (int, error)
}

// Dialer connects to the NATS server as a user given by its JWT and seed.
type Dialer func(userJWT string, seed []byte) (*nats.Conn, error)

// Config is what a Service needs.
type Config struct {
	// Signer is the operator signing key; it signs every account JWT.
	Signer nkeys.KeyPair
	// Directory publishes account JWTs.
	Directory Directory
	// App is a connection of a LATCH account user with full rights there.
	App *nats.Conn
	// Dial opens connections into person accounts.
	Dial Dialer
	// Limits are the quotas of new person accounts.
	Limits Limits
	// Replicas of latch's buckets and of each records bucket.
	Replicas int
	// Clustered says the node is one of a cluster: a stream may wait to
	// be placed, and a request that is not answered is made again.
	Clustered bool
	// DeviceTTL is the default lifetime of an issued device JWT; 0 is none.
	DeviceTTL time.Duration
	// Connections counts and closes devices' connections; nil leaves the
	// counts at 0 and refuses to close any.
	Connections Connections
	// AdminAccount is LATCH_ADMIN's public key: the admin service answers
	// only its users. AdminSigner, its signing key, signs admins' creds.
	AdminAccount string
	AdminSigner  nkeys.KeyPair
	// AppAccount is LATCH's public key: person accounts import the device
	// API (operator.DeviceAPISubject) from it. Empty leaves the import out.
	AppAccount string
	// Stored reads this node's own copy of an account JWT ("" when it has
	// none); nil compares the cluster's answer to a lookup instead.
	Stored func(account string) (string, error)
	// Apply stores an account JWT in this node's own resolver when it is
	// newer than the one there (resolver.Server.Apply). With it each
	// node applies latch's record itself (Follow); nil pushes every JWT
	// to every server through $SYS.REQ.CLAIMS.UPDATE.
	Apply func(account, accountJWT string) error
	// Node names this node in drift reports and the audit trail.
	Node string
	// Joined says this node joined the deployment (operator.Join): it
	// waits for the first node to make latch's buckets.
	Joined bool
	// External says latch uses NATS servers it does not run: no stream's
	// leader is this node, and it reports on all of latch's streams.
	External bool
	// Log receives what the service reports.
	Log *slog.Logger
	// PublicURL is where people reach the web GUI, such as
	// https://latch.example.com; invite links start with it.
	PublicURL string
	// ReleaseSigner is the release signing key: it signs the manifest of
	// each release published. Nil refuses to publish.
	ReleaseSigner nkeys.KeyPair
	// NoRecordsHistory makes persons without a records history and gives
	// none to those who lack one: a stream, a sourcing consumer and six
	// goroutines fewer a person (docs/scale.md), but a lost or stolen
	// device can then destroy its person's records for good. Histories
	// made before are kept; Refresh gives one to every person without,
	// once this is false again.
	NoRecordsHistory bool
}

// Service manages persons, their accounts and their devices.
type Service struct {
	cfg        Config
	log        *slog.Logger
	js         jetstream.JetStream
	persons    jetstream.KeyValue
	devices    jetstream.KeyValue
	secrets    jetstream.KeyValue
	tombstones jetstream.KeyValue
	passkeys   jetstream.KeyValue
	enroll     jetstream.KeyValue
	invites    jetstream.KeyValue
	admins     jetstream.KeyValue
	sessions   jetstream.KeyValue
	jwts       jetstream.KeyValue
	// releaseIndex holds each release: kind.os.arch.version → Release.
	releaseIndex jetstream.KeyValue

	writers sync.Map // account public key → *writer
	// statusMu serializes the status changes of one person (name →
	// *sync.Mutex), so the saved status and the JWT always agree.
	statusMu sync.Map
	// signers caches each person account's signing keys (account public
	// key → signingKeys).
	signers sync.Map

	// replicasMoved says latch's buckets were given another number of
	// replicas when the service opened.
	replicasMoved atomic.Bool

	// watchTTL is the lifetime of the service user behind a records
	// watch; 0 is recordsWatchTTL. Tests shorten it.
	watchTTL time.Duration
}

// Open creates latch's buckets and audit stream when they are missing and
// returns a Service.
func Open(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.Limits == (Limits{}) {
		cfg.Limits = DefaultLimits()
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(cfg.App)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: log, js: js}
	if cfg.Joined {
		if err := waitForFirstNode(ctx, js, log); err != nil {
			return nil, err
		}
	}
	buckets := []struct {
		kv      *jetstream.KeyValue
		name    string
		desc    string
		history uint8
		ttl     time.Duration // every entry's lifetime; 0 is for ever
	}{
		{&s.persons, PersonsBucket, "latch persons: name → person", 5, 0},
		{&s.devices, DevicesBucket, "latch devices: account.dev.device → device; account.name.hash → device", 5, 0},
		{&s.secrets, SecretsBucket, "signing seeds of person accounts", 1, 0},
		{&s.tombstones, TombstonesBucket, "deleted accounts, kept so resolver sync cannot bring them back", 1, 0},
		{&s.passkeys, PasskeysBucket, "passkeys: p.person.id → passkey; c.id → person; h.handle → person", 1, 0},
		{&s.enroll, EnrollBucket, "pending device enrollments: d.hash → enrollment; u.code → hash", 1, enrollBucketTTL},
		{&s.invites, InvitesBucket, "invite links: hash of the token → invite", 1, InviteTTL},
		{&s.admins, AdminsBucket, "admins' creds: user key → name, created, revoked", 1, 0},
		{&s.jwts, JWTsBucket, "account JWTs: account public key → its last JWT, committed before it is pushed", 1, 0},
		// A session outlives its TTL only in a bucket that has not yet
		// expired it; the service refuses one older than SessionLifetime.
		{&s.sessions, SessionsBucket, "web sessions: s.<sha256 of the token> → session; p.<account>.<id> lists them", 1, SessionLifetime + time.Hour},
		{&s.releaseIndex, ReleaseIndexBucket, "releases: kind.os.arch.version → signed manifest, publisher, yanked", 1, 0},
	}
	// All at once: in a new cluster each waits to be placed.
	var wg sync.WaitGroup
	errs := make([]error, len(buckets)+1)
	for i, b := range buckets {
		wg.Go(func() {
			errs[i] = s.untilPlacedWaiting(ctx, "bucket "+b.name, time.Second, func(ctx context.Context) (err error) {
				kv, moved, err := ensureBucket(ctx, js, jetstream.KeyValueConfig{
					Bucket:      b.name,
					Description: b.desc,
					History:     b.history,
					Storage:     jetstream.FileStorage,
					Replicas:    cfg.Replicas,
					TTL:         b.ttl,
				})
				if moved {
					s.replicasMoved.Store(true)
				}
				if err == nil {
					*b.kv = kv
					if cfg.Replicas > 1 {
						*b.kv = steadyKV{KeyValue: kv, nc: cfg.App, bucket: b.name}
					}
				}
				return err
			})
		})
	}
	wg.Go(func() {
		errs[len(buckets)] = s.untilPlacedWaiting(ctx, "stream "+AuditStream, time.Second, func(ctx context.Context) error {
			_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
				Name:        AuditStream,
				Description: "latch audit trail: who did what, when",
				Subjects:    []string{auditSubject + ".>"},
				Storage:     jetstream.FileStorage,
				Replicas:    cfg.Replicas,
				// Append-only: no message or the whole trail can be removed
				// through the API.
				DenyDelete: true,
				DenyPurge:  true,
			})
			return err
		})
	})
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// The streams made on first use (release files and uploads) get the
	// deployment's replicas as the buckets do, when it changed.
	for _, name := range []string{"OBJ_" + ReleasesStore, releaseUploads} {
		err := s.untilPlaced(ctx, "stream "+name, func(ctx context.Context) error {
			if _, err := setReplicas(ctx, js, name, s.cfg.Replicas); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				return err
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Keys of the secrets bucket that say how far the deployment's first node
// is: openedKey that it has made latch's buckets as a node of a cluster
// (and brought in its data of when it ran alone); movingInKey that it is
// bringing that data in. The nodes that joined wait for openedKey before
// they open latch's buckets, which they would otherwise make anew, empty.
const (
	openedKey   = "opened.cluster"
	movingInKey = "moving-in"
)

// joinWaitLimit is how long a node that joined waits for a first node
// that says nothing, before it opens latch's buckets itself.
const joinWaitLimit = 2 * time.Minute

// waitForFirstNode waits until the deployment's first node has made
// latch's buckets, saying every 10 s what it waits for: as long as the
// first node says it brings in data, else up to joinWaitLimit. A
// deployment whose nodes ran as a cluster before there was such a key
// (its buckets replicated, its web sessions' secret made) needs no wait.
func waitForFirstNode(ctx context.Context, js jetstream.JetStream, log *slog.Logger) error {
	began, said := time.Now(), time.Now()
	for {
		status, moving := "latch's buckets are not made yet", false
		tctx, cancel := context.WithTimeout(ctx, tryWait)
		kv, err := js.KeyValue(tctx, SecretsBucket)
		if err == nil {
			if _, err := kv.Get(tctx, openedKey); err == nil {
				cancel()
				return nil
			}
			_, movingErr := kv.Get(tctx, movingInKey)
			_, secretErr := kv.Get(tctx, "shared.web-session")
			switch {
			case movingErr == nil:
				status, moving = "the first node is bringing in its data of when it ran alone", true
			case secretErr == nil && replicated(tctx, js):
				cancel()
				return nil
			}
		}
		cancel()
		if !moving && time.Since(began) > joinWaitLimit {
			log.Warn("the deployment's first node has not said it made latch's buckets; making them here", "waited", joinWaitLimit)
			return nil
		}
		if time.Since(said) >= 10*time.Second {
			said = time.Now()
			log.Info("waiting for the deployment's first node (the one made with latch init)", "status", status)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// replicated reports whether the secrets bucket has more than one replica.
func replicated(ctx context.Context, js jetstream.JetStream) bool {
	st, err := js.Stream(ctx, "KV_"+SecretsBucket)
	return err == nil && st.CachedInfo().Config.Replicas > 1
}

// MarkOpened says, for the nodes that joined, that latch's buckets are
// made (and the data of when the first node ran alone brought in).
func (s *Service) MarkOpened(ctx context.Context) error {
	// Made again after a try that timed out: a second create of a key the
	// first made is refused, and that is success too. (A bucket that has
	// just moved to more replicas may take a while.)
	err := steadily(ctx, true, func(ctx context.Context) error {
		_, err := s.secrets.Create(ctx, openedKey, []byte(s.cfg.Node))
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("say that latch's buckets are made: %w", err)
	}
	if _, err := s.secrets.Get(ctx, movingInKey); err == nil {
		return s.secrets.Purge(ctx, movingInKey)
	}
	return nil
}

// MarkMovingIn says, over nc (a connection of LATCH), that the first
// node is bringing in its data of when it ran alone: the nodes that
// joined wait for it however long it takes.
func MarkMovingIn(ctx context.Context, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	kv, err := js.KeyValue(ctx, SecretsBucket)
	if err == nil {
		_, err = kv.Put(ctx, movingInKey, []byte(time.Now().UTC().Format(time.RFC3339)))
	}
	return err
}

// ensureBucket makes one of latch's buckets when it is missing, brings its
// description, replicas, history and TTL to want's when they differ, and
// returns it bound. A replicated bucket answers reads from its leader
// only: a KV bucket lets any replica answer a read (direct get) by
// default, and the replica nearest a node may lag the leader by a moment,
// so a session made on one node, an enrollment started there or a secret
// another node just made could be "not found" on the next. latch's own
// buckets are read to decide, so they read what the leader has, at the
// price of a round trip to its region. The stream is changed only
// when it must be: a change that switched direct gets back on (as
// CreateOrUpdateKeyValue's would) could leave another node, starting at
// the same moment, bound to reading any replica.
func ensureBucket(ctx context.Context, js jetstream.JetStream, want jetstream.KeyValueConfig) (kv jetstream.KeyValue, moved bool, err error) {
	_, err = js.KeyValue(ctx, want.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		// Made as a stream with its final configuration, not with
		// CreateKeyValue: that makes it with direct reads on, to be turned
		// off after, and a node whose CreateKeyValue finds the bucket made
		// by another turns them on again. Nodes of a new cluster make the
		// buckets at the same moment, and flipped each other's configuration
		// back and forth until a request timed out. Made the same by each,
		// the stream is made once and the others' requests find it so.
		if _, err = js.CreateStream(ctx, kvStreamConfig(want)); errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			err = nil // another node made it at the same moment, otherwise: brought up to date below
		}
	}
	if err != nil {
		return nil, false, err
	}
	st, err := js.Stream(ctx, "KV_"+want.Bucket)
	if err != nil {
		return nil, false, err
	}
	cfg := st.CachedInfo().Config
	next := cfg
	next.Description, next.Replicas = want.Description, want.Replicas
	next.MaxMsgsPerSubject, next.MaxAge = int64(max(want.History, 1)), want.TTL
	if want.Replicas > 1 {
		next.AllowDirect = false
	}
	if next.Description != cfg.Description || next.Replicas != cfg.Replicas || next.MaxMsgsPerSubject != cfg.MaxMsgsPerSubject ||
		next.MaxAge != cfg.MaxAge || next.AllowDirect != cfg.AllowDirect {
		if _, err := js.UpdateStream(ctx, next); err != nil {
			return nil, false, fmt.Errorf("bring the bucket up to date: %w", err)
		}
	}
	kv, err = js.KeyValue(ctx, want.Bucket)
	return kv, next.Replicas != cfg.Replicas, err
}

// setReplicas gives stream name n replicas, and reports whether that
// changed it.
func setReplicas(ctx context.Context, js jetstream.JetStream, name string, n int) (bool, error) {
	st, err := js.Stream(ctx, name)
	if err != nil {
		return false, err
	}
	cfg := st.CachedInfo().Config
	if cfg.Replicas == n {
		return false, nil
	}
	cfg.Replicas = n
	_, err = js.UpdateStream(ctx, cfg)
	return err == nil, err
}

// kvStreamConfig is the stream of a bucket of want's, as nats.go's
// CreateKeyValue makes it, but that a bucket of several replicas is read
// from its leader only (AllowDirect off): latch reads its own writes.
func kvStreamConfig(want jetstream.KeyValueConfig) jetstream.StreamConfig {
	replicas := max(want.Replicas, 1)
	dups := 2 * time.Minute
	if want.TTL > 0 && want.TTL < dups {
		dups = want.TTL
	}
	return jetstream.StreamConfig{
		Name:              "KV_" + want.Bucket,
		Description:       want.Description,
		Subjects:          []string{"$KV." + want.Bucket + ".>"},
		MaxMsgsPerSubject: int64(max(want.History, 1)),
		MaxBytes:          -1,
		MaxAge:            want.TTL,
		MaxMsgSize:        -1,
		MaxMsgs:           -1,
		MaxConsumers:      -1,
		Storage:           want.Storage,
		Replicas:          replicas,
		AllowRollup:       true,
		DenyDelete:        true,
		Duplicates:        dups,
		AllowDirect:       replicas == 1,
		Discard:           jetstream.DiscardNew,
	}
}

// ReplicasMoved reports whether latch's own buckets were given another
// number of replicas when the service opened: the deployment's number
// changed, and persons' records are to follow (Rebalance).
func (s *Service) ReplicasMoved() bool { return s.replicasMoved.Load() }

// untilPlaced runs a JetStream request that makes or changes one of
// latch's streams until the cluster places it. While the nodes of a new
// cluster find each other a stream of several replicas has no home yet:
// the request times out, or JetStream says it lacks resources or peers.
// And when the nodes of a new cluster all create the same stream at the
// same moment, nats-server (2.15.2) answers none of them, though it makes
// the stream: so latch's own streams are first tried for 1 s
// (untilPlacedWaiting), then longer, and the next try finds the stream
// made. Alone (Config.Clustered unset), the first answer is final.
func (s *Service) untilPlaced(ctx context.Context, what string, req func(context.Context) error) error {
	return s.untilPlacedWaiting(ctx, what, 5*time.Second, req)
}

// untilPlacedWaiting is untilPlaced whose first try waits first, in a
// cluster (alone, 5 s).
func (s *Service) untilPlacedWaiting(ctx context.Context, what string, first time.Duration, req func(context.Context) error) error {
	began, said := time.Now(), time.Now()
	wait := 5 * time.Second
	if s.cfg.Clustered {
		wait = first
	}
	for {
		rctx, cancel := context.WithTimeout(ctx, wait)
		err := req(rctx)
		cancel()
		wait = min(2*wait, 5*time.Second)
		if err == nil || !s.cfg.Clustered || !placementPending(err) {
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			return nil
		}
		if time.Since(said) >= 5*time.Second {
			said = time.Now()
			s.log.Info("waiting for the cluster to place "+what, "replicas", s.cfg.Replicas, "waited", time.Since(began).Round(time.Second), "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (the cluster has not placed it: are %d nodes up, in different regions?)", what, err, s.cfg.Replicas)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// nats-server's JetStream error codes latch waits out in a cluster.
const (
	jsNoPeers      jetstream.ErrorCode = 10005 // no suitable peers for placement
	jsUnavailable  jetstream.ErrorCode = 10008 // JetStream system temporarily unavailable
	jsInsufficient jetstream.ErrorCode = 10023 // insufficient resources
	jsNoTier       jetstream.ErrorCode = 10120 // no JetStream default or applicable tiered limit present
	jsNoAccount    jetstream.ErrorCode = 10035 // account not found
	// jsStorageExceeded is a stream's limit beyond its account's tier: a
	// tier just raised has not reached JetStream yet.
	jsStorageExceeded jetstream.ErrorCode = 10047 // insufficient storage resources available
	// jsStoreFailed is a replica that could not make its store: on a node
	// enabling the account's JetStream at that moment, nats-server makes
	// and removes the account's folder to see that it can write there
	// (jetstream.go, EnableJetStream), which takes away the folder the
	// store is being made in. The stream's assignment is dropped; making
	// it again works.
	jsStoreFailed jetstream.ErrorCode = 10049 // error creating store for stream
)

// placementPending reports whether a JetStream error is one a forming
// cluster gives before it can place a replicated stream.
func placementPending(err error) bool {
	// nats-server's codes: no suitable peers (10005), JetStream system
	// temporarily unavailable (10008), insufficient resources (10023); and
	// JetStream not enabled for the account (10039), from a node that has
	// not yet applied the account's JWT (or account not found, 10035, on
	// the server a stream is placed on), or no tier of the stream's
	// replicas (10120), from one that has not yet applied the JWT that
	// gives it; a store that could not be made (10049, jsStoreFailed);
	// and a stream not found (10059) right after it was made.
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jsNoPeers, jsUnavailable, jsInsufficient, jsNoTier, jsNoAccount, jsStoreFailed, jetstream.JSErrCodeJetStreamNotEnabled, jetstream.JSErrCodeJetStreamNotEnabledForAccount,
			jetstream.JSErrCodeStreamNotFound: // a stream just made, asked after before the cluster settled
			return true
		}
		return false
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

// getJSON reads a KV entry into v and returns its revision.
func getJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) (uint64, error) {
	e, err := kv.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, fmt.Errorf("%s/%s is corrupt: %w", kv.Bucket(), key, err)
	}
	return e.Revision(), nil
}

// listJSON reads the values under every key that matches filter (">" for
// all), with their keys; a key deleted while it is read is left out.
func listJSON[T any](ctx context.Context, kv jetstream.KeyValue, filter string) ([]T, []string, error) {
	lister, err := kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, nil, err
	}
	var vals []T
	var keys []string
	for k := range lister.Keys() {
		var v T
		if _, err := getJSON(ctx, kv, k, &v); err != nil {
			if isNotFound(err) {
				continue
			}
			return nil, nil, err
		}
		vals = append(vals, v)
		keys = append(keys, k)
	}
	return vals, keys, nil
}

func putJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, key, b)
	return err
}

func createJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = kv.Create(ctx, key, b)
	return err
}

func isNotFound(err error) bool {
	return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
}
