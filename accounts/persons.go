package accounts

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

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
	if ac, _, err := s.recorded(ctx, p.Account); err == nil {
		d.IssuedAt = time.Unix(ac.IssuedAt, 0).UTC()
		d.Issuer = ac.Issuer
		d.Revocations = len(ac.Revocations)
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
