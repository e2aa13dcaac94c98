package accounts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// CreatePerson creates a person and their account: keys, the account JWT
// pushed to the resolver, and the records bucket. It either does all of it
// or, on failure, undoes what it did. Without a name but with a display
// name, it takes the first free name derived from the display name
// ("Ann Lee" → ann-lee, ann-lee-2, …).
func (s *Service) CreatePerson(ctx context.Context, np NewPerson) (Person, error) {
	if np.Name != "" || np.DisplayName == "" {
		return s.createPerson(ctx, np)
	}
	base := personNameFrom(np.DisplayName)
	for i := 1; i <= maxNameTries; i++ {
		np.Name = numberedName(base, i)
		if reservedNames[np.Name] {
			continue
		}
		p, err := s.createPerson(ctx, np)
		if !errors.Is(err, ErrExists) {
			return p, err
		}
	}
	return Person{}, errorf(ErrExists, "the names %s to %s are all taken; choose a name", base, numberedName(base, maxNameTries))
}

func (s *Service) createPerson(ctx context.Context, np NewPerson) (Person, error) {
	if err := ValidatePersonName(np.Name); err != nil {
		return Person{}, err
	}
	if np.Handle == "" {
		np.Handle = NewHandle()
	} else if err := validateHandle(np.Handle); err != nil {
		return Person{}, err
	}
	if np.Role == "" {
		np.Role = RoleMember
	}
	if np.Role != RoleAdmin && np.Role != RoleMember {
		return Person{}, invalid("role", "%q is not a role; use %q or %q", np.Role, RoleAdmin, RoleMember)
	}
	// What is not given is the server's.
	limits := s.cfg.Limits.with(np.Limits)
	// One device limit for everybody, so Refresh can keep it current.
	limits.DeviceSubs = s.cfg.Limits.DeviceSubs
	if err := limits.validate(); err != nil {
		return Person{}, err
	}
	k := newPersonKeys()
	pub, _ := k.account.PublicKey()
	p := Person{
		Name: np.Name, DisplayName: np.DisplayName, Handle: np.Handle, Role: np.Role, Account: pub,
		Status: StatusCreating, Limits: limits, Created: time.Now().UTC(), BucketVersion: s.wantBucket(),
	}
	// Create refuses an existing key, so two requests for one name cannot
	// both win.
	if err := createJSON(ctx, s.persons, p.Name, p); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return Person{}, errorf(ErrExists, "a person named %q already exists; see `latch account ls`", p.Name)
		}
		return Person{}, fmt.Errorf("create person %s: %w", p.Name, err)
	}
	pushed := false
	undo := func(cause error) (Person, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if pushed {
			if err := s.cfg.Directory.PurgeJetStream(ctx, pub); err != nil {
				s.log.Warn("undo account creation: purge", "account", pub, "err", err)
			}
			if err := s.cfg.Directory.Delete(ctx, s.cfg.Signer, pub); err != nil {
				s.log.Warn("undo account creation: delete JWT", "account", pub, "err", err)
			}
			s.jwts.Purge(ctx, pub)
		}
		s.secrets.Delete(ctx, pub)
		s.persons.Delete(ctx, p.Name)
		return Person{}, fmt.Errorf("create person %s: %w; nothing was kept", p.Name, cause)
	}
	devSeed, _ := k.device.Seed()
	svcSeed, _ := k.service.Seed()
	if err := putJSON(ctx, s.secrets, pub, personSecrets{Device: string(devSeed), Service: string(svcSeed)}); err != nil {
		return undo(err)
	}
	tok, _, err := s.sign(personAccountClaims(p.Name, k, limits, s.cfg.AppAccount, s.cfg.Replicas), 0)
	if err != nil {
		return undo(err)
	}
	pushed = true
	rev, err := s.record(ctx, pub, tok, 0)
	if err == nil {
		err = s.push(ctx, pub, tok, rev)
	}
	if err != nil {
		return undo(err)
	}
	if err := s.createRecordsBucket(ctx, pub, k.service, limits); err != nil {
		return undo(err)
	}
	p.Status = StatusActive
	if err := putJSON(ctx, s.persons, p.Name, p); err != nil {
		return undo(err)
	}
	if err := s.audit(ctx, AuditEvent{Action: ActionAccountCreate, Account: pub, AccountName: p.Name}); err != nil {
		return undo(fmt.Errorf("audit: %w", err))
	}
	s.log.Info("person created", "name", p.Name, "account", pub)
	return p, nil
}

// createRecordsBucket creates the person's records bucket through a
// short-lived service user of their account.
func (s *Service) createRecordsBucket(ctx context.Context, account string, service nkeys.KeyPair, l Limits) error {
	tok, seed, err := serviceUserJWT(account, service, time.Minute)
	if err != nil {
		return err
	}
	nc, err := s.cfg.Dial(tok, seed)
	if err != nil {
		return fmt.Errorf("connect to the new account: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	// In a cluster, the node that places the bucket may not have applied
	// the new account yet: until it has, it says JetStream is not enabled
	// for it, and the request is made again.
	err = s.untilPlaced(ctx, "the records bucket", func(ctx context.Context) error {
		_, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      RecordsBucket,
			Description: "records synced between the person's devices",
			History:     10,
			Storage:     jetstream.FileStorage,
			Replicas:    s.cfg.Replicas,
			MaxBytes:    l.Disk,
		})
		return err
	})
	if err != nil {
		return err
	}
	if err := limitConsumers(ctx, js); err != nil {
		return err
	}
	if s.cfg.NoRecordsHistory {
		return nil
	}
	return s.untilPlaced(ctx, "the records history", func(ctx context.Context) error { return s.ensureHistory(ctx, js, l) })
}

// limitConsumers gives the records stream its consumer limit: every
// consumer, durable ones too, goes once idle for ConsumerIdle. A KV
// bucket's config has no place for it, so the stream is updated.
func limitConsumers(ctx context.Context, js jetstream.JetStream) error {
	st, err := js.Stream(ctx, "KV_"+RecordsBucket)
	if err != nil {
		return fmt.Errorf("the records bucket: %w", err)
	}
	cfg := st.CachedInfo().Config
	if cfg.ConsumerLimits.InactiveThreshold == ConsumerIdle {
		return nil
	}
	cfg.ConsumerLimits.InactiveThreshold = ConsumerIdle
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("limit the records bucket's consumers: %w", err)
	}
	return nil
}

func (l Limits) validate() error {
	switch {
	case l.Disk <= 0:
		return invalid("disk", "the disk quota must be more than 0")
	case l.Memory <= 0:
		return invalid("memory", "the memory quota must be more than 0 (KV watchers need it)")
	case l.Conns <= 0:
		return invalid("conns", "the connection limit must be more than 0")
	case l.Payload < MinPayload:
		return invalid("payload", "the payload limit must be at least %d bytes: latch's own requests into the account need that much", MinPayload)
	case l.Consumers <= 0:
		return invalid("consumers", "the consumer limit must be more than 0")
	}
	return nil
}

// DisablePerson refuses new connections to a person's account and closes
// the open ones. Their records and devices are kept.
func (s *Service) DisablePerson(ctx context.Context, name string) (Person, error) {
	return s.setDisabled(ctx, name, true)
}

// EnablePerson lets a disabled person's devices connect again.
func (s *Service) EnablePerson(ctx context.Context, name string) (Person, error) {
	return s.setDisabled(ctx, name, false)
}

func (s *Service) setDisabled(ctx context.Context, name string, disable bool) (Person, error) {
	defer s.lockPerson(name)()
	p, err := s.Person(ctx, name)
	if err != nil {
		return Person{}, err
	}
	switch {
	case p.Status == StatusDisabled && disable, p.Status == StatusActive && !disable:
		return p, nil
	case p.Status != StatusActive && p.Status != StatusDisabled:
		return Person{}, errorf(ErrInvalid, "account %q is %s; wait for that to finish", name, p.Status)
	}
	conns := p.Limits.Conns
	if disable {
		conns = 0 // the server closes connections over the limit at once
	}
	if err := s.update(p.Account, func(ac *jwt.AccountClaims) error {
		ac.Limits.Conn = conns
		return nil
	}); err != nil {
		return Person{}, err
	}
	action := ActionAccountEnable
	p.Status, p.DisabledAt = StatusActive, nil
	if disable {
		action = ActionAccountDisable
		now := time.Now().UTC()
		p.Status, p.DisabledAt = StatusDisabled, &now
	}
	if err := putJSON(ctx, s.persons, p.Name, p); err != nil {
		return Person{}, err
	}
	if disable {
		// The web refuses a disabled person anyway; their sessions go too.
		if _, err := s.dropSessions(ctx, p.Account, ""); err != nil {
			s.log.Warn("end the web sessions of a disabled person", "person", p.Name, "err", err)
		}
	}
	s.auditAfter(ctx, AuditEvent{Action: action, Account: p.Account, AccountName: p.Name})
	return p, nil
}

// DeletePerson deletes a person and their account: every device is
// revoked, the account's JetStream data purged, its JWT deleted from the
// resolver and a tombstone kept so resolver sync cannot bring it back. If
// a step fails, running it again finishes the job.
func (s *Service) DeletePerson(ctx context.Context, name string) (Person, error) {
	// Serialized with disable and enable: one of those reading the person
	// before the delete marks it, and writing it back after the delete
	// removed it, would bring a deleted person back.
	defer s.lockPerson(name)()
	p, err := s.Person(ctx, name)
	if err != nil {
		return Person{}, err
	}
	step := func(what string, err error) error {
		return fmt.Errorf("deleting %s stopped while %s: %w; run the delete again to finish it", name, what, err)
	}
	p.Status = StatusDeleting
	if err := putJSON(ctx, s.persons, p.Name, p); err != nil {
		return Person{}, step("marking it", err)
	}
	if err := putJSON(ctx, s.tombstones, p.Account, tombstone{Account: p.Account, Name: p.Name, Deleted: time.Now().UTC()}); err != nil {
		return Person{}, step("writing the tombstone", err)
	}
	// The records history goes first, through a service user of the
	// account (dropHistory says why). So that one can connect, even to a
	// disabled account or one a stopped delete closed: every user made
	// until now is revoked and connections are allowed, then the service
	// user is made in the next second, after the revocation.
	err = s.update(p.Account, func(ac *jwt.AccountClaims) error {
		ac.RevokeAt(jwt.All, time.Now())
		ac.Limits.Conn = max(p.Limits.Conns, 1)
		return nil
	})
	if err != nil && !errors.Is(err, errNoJWT) {
		return Person{}, step("revoking its devices", err)
	}
	if err == nil {
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 20*time.Millisecond)))
	}
	if err := s.dropHistory(ctx, p); err != nil {
		s.log.Warn("delete the records history first", "person", p.Name, "err", err)
	}
	// Should the JWT ever come back, it lets nobody in.
	err = s.update(p.Account, func(ac *jwt.AccountClaims) error {
		// RevokeAt makes the list when the account has none yet.
		ac.RevokeAt(jwt.All, time.Now())
		ac.Limits.Conn = 0
		return nil
	})
	if err != nil && !errors.Is(err, errNoJWT) {
		return Person{}, step("revoking its devices", err)
	}
	if err := s.cfg.Directory.PurgeJetStream(ctx, p.Account); err != nil {
		return Person{}, step("purging its JetStream data", err)
	}
	if err := s.cfg.Directory.Delete(ctx, s.cfg.Signer, p.Account); err != nil {
		return Person{}, step("deleting its JWT from the resolver", err)
	}
	if err := s.jwts.Purge(ctx, p.Account); err != nil && !isNotFound(err) {
		return Person{}, step("deleting its JWT from the record", err)
	}
	s.forget(p.Account)
	devs, err := s.devices.ListKeysFiltered(ctx, p.Account+".>")
	if err == nil {
		for k := range devs.Keys() {
			s.devices.Purge(ctx, k)
		}
	}
	if err := s.purgePasskeys(ctx, p); err != nil {
		return Person{}, step("removing its passkeys", err)
	}
	if _, err := s.dropSessions(ctx, p.Account, ""); err != nil {
		return Person{}, step("ending its web sessions", err)
	}
	if err := s.secrets.Purge(ctx, p.Account); err != nil && !isNotFound(err) {
		return Person{}, step("removing its signing keys", err)
	}
	if err := s.persons.Delete(ctx, p.Name); err != nil {
		return Person{}, step("removing the person", err)
	}
	s.auditAfter(ctx, AuditEvent{Action: ActionAccountDelete, Account: p.Account, AccountName: p.Name})
	s.log.Info("person deleted", "name", p.Name, "account", p.Account)
	return p, nil
}

// Reconcile deletes again any tombstoned account the resolver holds, as
// one brought back by a peer that missed the delete.
func (s *Service) Reconcile(ctx context.Context) error {
	// The deleted accounts are asked after one by one rather than the
	// resolver listed: a list of thousands of accounts holds the system
	// connection, which revocations use too, for seconds.
	lister, err := s.tombstones.ListKeys(ctx)
	if err != nil {
		return err
	}
	var back []string
	var half []tombstone // deletes that stopped with the person still there
	for pub := range lister.Keys() {
		tok, err := s.stored(ctx, pub)
		if err != nil {
			lister.Stop()
			return err
		}
		// A delete that stopped half way (a crash, a lost connection)
		// left the tombstone and a person record still naming the
		// account; the tombstone names the person, so it is one read.
		var ts tombstone
		if _, err := getJSON(ctx, s.tombstones, pub, &ts); err == nil && ts.Name != "" {
			if p, err := s.Person(ctx, ts.Name); err == nil && p.Account == pub {
				half = append(half, ts)
				continue
			}
		}
		if tok != "" {
			back = append(back, pub)
		}
	}
	// Finish those deletes rather than leave a person with no account.
	for _, ts := range half {
		s.log.Warn("finishing the delete of a person that stopped half way", "person", ts.Name, "account", ts.Account)
		if _, err := s.DeletePerson(ctx, ts.Name); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	for _, pub := range back {
		s.log.Warn("deleted account came back; deleting it again", "account", pub)
		if err := s.cfg.Directory.Delete(ctx, s.cfg.Signer, pub); err != nil {
			return err
		}
		// The delete reaches every server; the answer comes from the
		// first. This node is not ready until its own resolver is rid of
		// the account.
		if err := s.untilGone(ctx, pub); err != nil {
			return err
		}
		if err := s.jwts.Purge(ctx, pub); err != nil && !isNotFound(err) {
			return err
		}
	}
	return nil
}

// untilGone waits until this node's resolver holds no JWT of account.
func (s *Service) untilGone(ctx context.Context, account string) error {
	if s.cfg.Stored == nil {
		return nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		tok, err := s.cfg.Stored(account)
		if err != nil || tok == "" {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("account %s: this node's resolver still holds it 10 s after its delete", account)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
