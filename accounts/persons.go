package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// Roles of a person.
const (
	RoleAdmin  = "admin"
	RoleMember = "member"
)

// Statuses of a person account.
const (
	StatusCreating = "creating"
	StatusActive   = "active"
	StatusDisabled = "disabled"
	StatusDeleting = "deleting"
)

// Person is someone with a person account.
type Person struct {
	Name        string     `json:"name"`
	DisplayName string     `json:"display_name,omitempty"`
	Handle      string     `json:"handle"` // the WebAuthn user handle (see NewHandle); it never changes
	Role        string     `json:"role"`
	Account     string     `json:"account"`
	Status      string     `json:"status"`
	Limits      Limits     `json:"limits"`
	Created     time.Time  `json:"created"`
	DisabledAt  *time.Time `json:"disabled_at,omitempty"`
	// BucketVersion is the version of the records bucket's configuration
	// (bucketVersion); Refresh brings an older one up to date.
	BucketVersion int `json:"bucket_version,omitempty"`
}

// NewPerson is what CreatePerson needs.
type NewPerson struct {
	// Name is the account name. When it is empty and DisplayName is not,
	// CreatePerson derives a free name from the display name.
	Name        string
	DisplayName string
	// Handle is the WebAuthn user handle, as NewHandle makes it; empty
	// makes a new one. The web layer sets it when the handle was already
	// shown to an authenticator during sign-up.
	Handle string
	Role   string
	// Limits overrides the service's default quotas, field by field: a
	// zero field is the service's.
	Limits Limits
}

// signingKeys are a person account's two signing keys, read from the
// secrets bucket once and then kept in memory until the account is deleted.
type signingKeys struct {
	device, service nkeys.KeyPair
}

// keysOf returns the signing keys of a person account.
func (s *Service) keysOf(ctx context.Context, p Person) (signingKeys, error) {
	if k, ok := s.signers.Load(p.Account); ok {
		return k.(signingKeys), nil
	}
	var sec personSecrets
	if _, err := getJSON(ctx, s.secrets, p.Account, &sec); err != nil {
		return signingKeys{}, fmt.Errorf("signing keys of %s: %w", p.Name, err)
	}
	var k signingKeys
	var err error
	if k.device, err = nkeys.FromSeed([]byte(sec.Device)); err != nil {
		return signingKeys{}, fmt.Errorf("device signing key of %s is corrupt: %w", p.Name, err)
	}
	if k.service, err = nkeys.FromSeed([]byte(sec.Service)); err != nil {
		return signingKeys{}, fmt.Errorf("service signing key of %s is corrupt: %w", p.Name, err)
	}
	s.signers.Store(p.Account, k)
	return k, nil
}

// personSecrets are the signing seeds of a person account, kept in the
// secrets bucket. The account's identity seed is not kept.
type personSecrets struct {
	Device  string `json:"device"`
	Service string `json:"service"`
}

// tombstone marks a deleted account.
type tombstone struct {
	Account string    `json:"account"`
	Name    string    `json:"name"`
	Deleted time.Time `json:"deleted"`
}

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
		Status: StatusCreating, Limits: limits, Created: time.Now().UTC(), BucketVersion: bucketVersion,
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
	tok, _, err := s.sign(personAccountClaims(p.Name, k, limits, s.cfg.AppAccount), 0)
	if err != nil {
		return undo(err)
	}
	pushed = true
	if err := s.cfg.Directory.Push(ctx, tok); err != nil {
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
	_, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      RecordsBucket,
		Description: "records synced between the person's devices",
		History:     10,
		Storage:     jetstream.FileStorage,
		Replicas:    s.cfg.Replicas,
		MaxBytes:    l.Disk,
	})
	if err != nil {
		return fmt.Errorf("create the records bucket: %w", err)
	}
	if err := limitConsumers(ctx, js); err != nil {
		return err
	}
	return s.ensureHistory(ctx, js, l)
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

// Person returns the person with the given name.
func (s *Service) Person(ctx context.Context, name string) (Person, error) {
	// A name becomes a KV key, so part of a subject: one that is not a
	// person name is nobody's, and never reaches NATS (a long one would
	// overflow nats-server's control line and cost the connection).
	if ValidatePersonName(name) != nil {
		return Person{}, errorf(ErrNotFound, "no account named %q; see `latch account ls`", clip(name, 40))
	}
	var p Person
	if _, err := getJSON(ctx, s.persons, name, &p); err != nil {
		if isNotFound(err) || errors.Is(err, jetstream.ErrInvalidKey) {
			return Person{}, errorf(ErrNotFound, "no account named %q; see `latch account ls`", name)
		}
		return Person{}, err
	}
	return p, nil
}

// Persons returns every person, sorted by name.
func (s *Service) Persons(ctx context.Context) ([]Person, error) {
	out, _, err := listJSON[Person](ctx, s.persons, ">")
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// PersonCount returns how many persons there are, counting those being
// created or deleted.
func (s *Service) PersonCount(ctx context.Context) (int, error) {
	lister, err := s.persons.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return 0, nil
		}
		return 0, err
	}
	n := 0
	for k := range lister.Keys() {
		// Person names hold no dot; any other key is not a person.
		if !strings.Contains(k, ".") {
			n++
		}
	}
	return n, nil
}

// AccountDetail is a person with what the resolver and the device
// registry say about their account.
type AccountDetail struct {
	Person
	IssuedAt       time.Time `json:"jwt_issued_at"`
	Issuer         string    `json:"jwt_issuer"`
	Revocations    int       `json:"revocations"`
	DevicesActive  int       `json:"devices_active"`
	DevicesRevoked int       `json:"devices_revoked"`
	// Usage is how full the records are; nil unless the person is active.
	Usage *Usage `json:"usage,omitempty"`
}

// Account returns a person with the state of their account.
func (s *Service) Account(ctx context.Context, name string) (AccountDetail, error) {
	p, err := s.Person(ctx, name)
	if err != nil {
		return AccountDetail{}, err
	}
	d := AccountDetail{Person: p}
	if tok, err := s.cfg.Directory.Lookup(ctx, p.Account); err == nil {
		if ac, err := jwt.DecodeAccountClaims(tok); err == nil {
			d.IssuedAt = time.Unix(ac.IssuedAt, 0).UTC()
			d.Issuer = ac.Issuer
			d.Revocations = len(ac.Revocations)
		}
	}
	if p.Status == StatusActive {
		rs, err := s.openRecords(ctx, p, time.Minute)
		if err != nil {
			return AccountDetail{}, err
		}
		u, err := rs.Usage(ctx)
		rs.Close()
		if err != nil {
			return AccountDetail{}, fmt.Errorf("read how full %s's records are: %w", p.Name, err)
		}
		d.Usage = &u
	}
	devs, err := s.devicesOf(ctx, p)
	if err != nil {
		return AccountDetail{}, err
	}
	for _, dv := range devs {
		if dv.RevokedAt != nil {
			d.DevicesRevoked++
		} else {
			d.DevicesActive++
		}
	}
	return d, nil
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

// auditAfter records an action that has already taken effect; a failure
// to record it is logged, not returned, since the action stands.
func (s *Service) auditAfter(ctx context.Context, e AuditEvent) {
	if err := s.audit(ctx, e); err != nil {
		s.log.Error("audit entry lost", "action", e.Action, "account", e.Account, "device", e.Device, "err", err)
	}
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
		tok, err := s.cfg.Directory.Lookup(ctx, pub)
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
	}
	return nil
}

// Refresh brings every person account and LATCH_ADMIN up to date after
// an upgrade or a signing-key rotation: a JWT that another operator
// signing key issued is re-signed with the key in use, and a device key
// whose template is not today's DeviceTemplate gets it, so that a change
// of the template reaches people who already exist. Both go through the
// account's single writer; each template change is audited. It returns
// how many accounts it re-signed and how many got the new template.
func (s *Service) Refresh(ctx context.Context) (resigned, templated int, err error) {
	signer, err := s.cfg.Signer.PublicKey()
	if err != nil {
		return 0, 0, err
	}
	ps, err := s.Persons(ctx)
	if err != nil {
		return 0, 0, err
	}
	type target struct {
		account, name string
		disk          int64
	}
	targets := []target{{s.cfg.AdminAccount, "", 0}}
	for _, p := range ps {
		if p.Status != StatusCreating && p.Status != StatusDeleting {
			targets = append(targets, target{p.Account, p.Name, p.Limits.Disk})
		}
		// A disabled person's bucket cannot be reached; it is brought up
		// to date at a start after they are enabled.
		if p.Status == StatusActive && p.BucketVersion < bucketVersion {
			if err := s.upgradeBucket(ctx, p); err != nil {
				s.log.Warn("bring a records bucket up to date", "person", p.Name, "err", err)
			}
		}
	}
	want := DeviceTemplate(s.cfg.Limits.DeviceSubs)
	subs := s.cfg.Limits.Subs
	if subs <= 0 {
		subs = DefaultLimits().Subs
	}
	for _, t := range targets {
		if t.account == "" {
			continue
		}
		tok, err := s.cfg.Directory.Lookup(ctx, t.account)
		if err != nil || tok == "" {
			continue
		}
		ac, err := jwt.DecodeAccountClaims(tok)
		if err != nil {
			continue
		}
		stale := ac.Issuer != signer
		// Accounts made before subscriptions were limited get the limit.
		unlimited := t.name != "" && ac.Limits.Subs == jwt.NoLimit
		// Accounts made before the records history get room for it.
		tier, hasTier := ac.Limits.JetStreamTieredLimits["R1"]
		short := t.name != "" && hasTier && tier.DiskStorage < tierDisk(t.disk)
		// Accounts made before the device API get its import.
		noAPI := t.name != "" && s.cfg.AppAccount != "" && !hasDeviceAPI(ac, s.cfg.AppAccount)
		oldTemplate := t.name != "" && (deviceScopeDiffers(ac, want) || unlimited || short || noAPI)
		if !stale && !oldTemplate {
			continue
		}
		// An empty change re-signs: commit signs with the key in use.
		err = s.update(t.account, func(ac *jwt.AccountClaims) error {
			if oldTemplate {
				setDeviceTemplate(ac, want)
				if ac.Limits.Subs == jwt.NoLimit {
					ac.Limits.Subs = subs
				}
				if tier, ok := ac.Limits.JetStreamTieredLimits["R1"]; ok && tier.DiskStorage < tierDisk(t.disk) {
					tier.DiskStorage = tierDisk(t.disk)
					ac.Limits.JetStreamTieredLimits["R1"] = tier
				}
				if s.cfg.AppAccount != "" && !hasDeviceAPI(ac, s.cfg.AppAccount) {
					setDeviceAPI(ac, s.cfg.AppAccount)
				}
			}
			return nil
		})
		if err != nil {
			return resigned, templated, fmt.Errorf("refresh %s (%s): %w", t.account, ac.Name, err)
		}
		if stale {
			resigned++
		}
		if oldTemplate {
			templated++
			s.auditAfter(ctx, AuditEvent{Action: ActionAccountTemplate, Account: t.account, AccountName: t.name,
				Detail: "device permissions brought up to date"})
		}
	}
	return resigned, templated, nil
}

// deviceScopeDiffers reports whether an account has a device key whose
// template is not want.
func deviceScopeDiffers(ac *jwt.AccountClaims, want jwt.UserPermissionLimits) bool {
	for _, sc := range ac.SigningKeys {
		us, ok := sc.(*jwt.UserScope)
		if !ok || us.Role != DeviceRole {
			continue
		}
		a, _ := json.Marshal(us.Template)
		b, _ := json.Marshal(want)
		if string(a) != string(b) {
			return true
		}
	}
	return false
}

// setDeviceTemplate gives every device key of an account the template.
func setDeviceTemplate(ac *jwt.AccountClaims, t jwt.UserPermissionLimits) {
	for _, sc := range ac.SigningKeys {
		if us, ok := sc.(*jwt.UserScope); ok && us.Role == DeviceRole {
			us.Template = t
		}
	}
}

// maxNameTries is how many numbered names CreatePerson tries for one
// display name.
const maxNameTries = 50

// personNameFrom makes a valid person name of a display name: lower case,
// every run of other characters than a-z, 0-9, '-' and '_' one '-', no
// leading or trailing '-' or '_', at most 32 characters; "person" when
// nothing is left.
func personNameFrom(display string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(display) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
			dash = false
		case !dash:
			b.WriteByte('-')
			dash = true
		}
	}
	name := strings.Trim(b.String(), "-_")
	if len(name) > maxPersonName {
		name = strings.TrimRight(name[:maxPersonName], "-_")
	}
	if name == "" {
		name = "person"
	}
	return name
}

// numberedName is base for i = 1 and base-i after, cut to fit the longest
// name allowed.
func numberedName(base string, i int) string {
	if i == 1 {
		return base
	}
	suffix := fmt.Sprintf("-%d", i)
	if len(base)+len(suffix) > maxPersonName {
		base = strings.TrimRight(base[:maxPersonName-len(suffix)], "-_")
	}
	return base + suffix
}

// lockPerson serializes the changes of one person's record; it returns
// the unlock.
func (s *Service) lockPerson(name string) func() {
	mu, _ := s.statusMu.LoadOrStore(name, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	return mu.(*sync.Mutex).Unlock
}
