package accounts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/latch-dev/latch/keys"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// IsUserKey accepts a user public key exactly as nkeys writes it: 56
// characters of the base32 alphabet. nkeys' own check decodes the key and
// lets characters base32 ignores (a trailing newline) through, which would
// then make an invalid KV key.
func IsUserKey(s string) bool {
	if len(s) != 56 {
		return false
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= '2' && r <= '7') {
			return false
		}
	}
	return nkeys.IsValidPublicUserKey(s)
}

// MaxDeviceTTL is the longest lifetime a device JWT may be given (other
// than never): ten years.
const MaxDeviceTTL = 10 * 365 * 24 * time.Hour

// How a device came to be.
const (
	EnrolledIssued   = "issued"   // `latch device issue`: the server made the key
	EnrolledEnrolled = "enrolled" // the device made its key and a person approved it (device flow)
	EnrolledDownload = "download" // the server made the key for a creds file downloaded from the GUI
)

// Device is one NATS user of a person account.
type Device struct {
	Account     string     `json:"account"`
	AccountName string     `json:"account_name"`
	Name        string     `json:"name"`
	PublicKey   string     `json:"public_key"`
	Enrolled    string     `json:"enrolled"`
	Platform    string     `json:"platform,omitempty"`
	Created     time.Time  `json:"created"`
	Expires     *time.Time `json:"expires,omitempty"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	// Conns is how many connections the device has open now; it is not
	// stored, and is filled in when devices are listed.
	Conns    int        `json:"conns"`
	LastSeen *time.Time `json:"last_seen,omitempty"`
	Renewed  *time.Time `json:"renewed,omitempty"` // last RenewDevice; nil when never
}

// Revoked reports whether the device is revoked.
func (d Device) Revoked() bool { return d.RevokedAt != nil }

// NewDevice is what AuthorizeDevice and IssueDevice need.
type NewDevice struct {
	// Person is the person's name.
	Person string
	Name   string
	// PublicKey is the device's user key (U…). IssueDevice makes one.
	PublicKey string
	Enrolled  string
	Platform  string
	// TTL is how long the JWT is valid: 0 takes the service's default,
	// a negative TTL never expires; at most MaxDeviceTTL.
	TTL time.Duration
}

// devices bucket keys: <account>.dev.<device key> holds a Device and
// <account>.name.<hash of the lower-cased name> the key of the active
// device with that name, so two devices of one person never share a name.
func deviceKey(account, pub string) string { return account + ".dev." + pub }

func nameKey(account, name string) string {
	h := sha256.Sum256([]byte(strings.ToLower(name)))
	return account + ".name." + hex.EncodeToString(h[:16])
}

// IssueDevice makes a device key on the server, authorizes it and returns
// the device and its creds. The creds are returned once and never stored.
func (s *Service) IssueDevice(ctx context.Context, nd NewDevice) (Device, []byte, error) {
	kp, _ := nkeys.CreateUser()
	nd.PublicKey, _ = kp.PublicKey()
	if nd.Enrolled == "" {
		nd.Enrolled = EnrolledIssued
	}
	d, tok, err := s.AuthorizeDevice(ctx, nd)
	if err != nil {
		return Device{}, nil, err
	}
	seed, _ := kp.Seed()
	creds, err := keys.FormatCreds(tok, seed)
	if err != nil {
		return Device{}, nil, err
	}
	return d, creds, nil
}

// AuthorizeDevice registers a device key with a person account and returns
// the device user's JWT, signed by the account's scoped device key. A key
// that was ever revoked or enrolled before is refused.
func (s *Service) AuthorizeDevice(ctx context.Context, nd NewDevice) (Device, string, error) {
	if err := ValidateDeviceName(nd.Name); err != nil {
		return Device{}, "", err
	}
	if !IsUserKey(nd.PublicKey) {
		return Device{}, "", invalid("public_key", "%q is not a user public key (U…)", clip(nd.PublicKey, 60))
	}
	if nd.TTL > MaxDeviceTTL {
		return Device{}, "", invalid("ttl", "a device's lifetime is at most %d days (or never)", int(MaxDeviceTTL/(24*time.Hour)))
	}
	p, err := s.Person(ctx, nd.Person)
	if err != nil {
		return Device{}, "", err
	}
	switch p.Status {
	case StatusActive:
	case StatusDisabled:
		return Device{}, "", errorf(ErrDisabled, "account %q is disabled; enable it with `latch account enable %s` first", p.Name, p.Name)
	default:
		return Device{}, "", errorf(ErrInvalid, "account %q is %s", p.Name, p.Status)
	}
	if _, err := s.devices.Get(ctx, deviceKey(p.Account, nd.PublicKey)); err == nil {
		return Device{}, "", errorf(ErrRevoked, "key %s was enrolled before; a device key is never issued twice, so make a new one", nd.PublicKey)
	} else if !isNotFound(err) {
		return Device{}, "", err
	}
	// Every key latch revokes has a device record, which the check above
	// finds; the account JWT this service last pushed is checked too, as
	// a second line, without a round trip to the resolver.
	if s.revokedInJWT(p.Account, nd.PublicKey) {
		return Device{}, "", errorf(ErrRevoked, "key %s is revoked in account %q and is never issued again; make a new key", nd.PublicKey, p.Name)
	}
	sk, err := s.keysOf(ctx, p)
	if err != nil {
		return Device{}, "", err
	}
	signer := sk.device

	now := time.Now().UTC()
	d := Device{
		Account: p.Account, AccountName: p.Name, Name: nd.Name, PublicKey: nd.PublicKey,
		Enrolled: nd.Enrolled, Platform: nd.Platform, Created: now,
	}
	ttl := nd.TTL
	if ttl == 0 {
		ttl = s.cfg.DeviceTTL
	}
	var exp time.Time
	if ttl > 0 {
		exp = now.Add(ttl).Truncate(time.Second)
		d.Expires = &exp
	}
	tok, err := deviceUserClaims(p.Account, d.PublicKey, d.Name, exp).Encode(signer)
	if err != nil {
		return Device{}, "", err
	}

	// Claim the name first: Create fails when an active device has it.
	if _, err := s.devices.Create(ctx, nameKey(p.Account, d.Name), []byte(d.PublicKey)); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return Device{}, "", errorf(ErrExists, "account %q already has a device named %q; choose another name or revoke that device", p.Name, d.Name)
		}
		return Device{}, "", err
	}
	undo := func(cause error) (Device, string, error) {
		ctx := context.WithoutCancel(ctx)
		s.devices.Purge(ctx, deviceKey(p.Account, d.PublicKey))
		s.devices.Delete(ctx, nameKey(p.Account, d.Name))
		return Device{}, "", cause
	}
	if err := createJSON(ctx, s.devices, deviceKey(p.Account, d.PublicKey), d); err != nil {
		return undo(err)
	}
	// The JWT is handed out only once the issuance is on the audit trail.
	if err := s.audit(ctx, AuditEvent{Action: ActionDeviceIssue, Account: p.Account, AccountName: p.Name, Device: d.PublicKey, DeviceName: d.Name, Detail: d.Enrolled}); err != nil {
		return undo(fmt.Errorf("audit: %w", err))
	}
	return d, tok, nil
}

// Devices returns the devices of a person, newest first.
func (s *Service) Devices(ctx context.Context, person string) ([]Device, error) {
	p, err := s.Person(ctx, person)
	if err != nil {
		return nil, err
	}
	return s.devicesOf(ctx, p)
}

func (s *Service) devicesOf(ctx context.Context, p Person) ([]Device, error) {
	out, _, err := listJSON[Device](ctx, s.devices, p.Account+".dev.*")
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	if s.cfg.Connections != nil {
		for i := range out {
			out[i].Conns = s.cfg.Connections.Conns(out[i].Account, out[i].PublicKey)
		}
	}
	return out, nil
}

// DisconnectDevice closes every open connection of a device without
// revoking it: its creds still work, and its client reconnects, as after
// a network failure. It returns the device and how many connections it
// closed.
func (s *Service) DisconnectDevice(ctx context.Context, person, ref string) (Device, int, error) {
	p, d, err := s.personDevice(ctx, person, ref)
	if err != nil {
		return Device{}, 0, err
	}
	if s.cfg.Connections == nil {
		return d, 0, errorf(ErrInvalid, "this server cannot close connections")
	}
	n, err := s.cfg.Connections.Disconnect(p.Account, d.PublicKey)
	if err != nil {
		return d, n, fmt.Errorf("close the connections of %s: %w", d.Name, err)
	}
	s.auditAfter(ctx, AuditEvent{Action: ActionDeviceDisconnect, Account: p.Account, AccountName: p.Name,
		Device: d.PublicKey, DeviceName: d.Name, Detail: fmt.Sprintf("%d connections", n)})
	return d, n, nil
}

// Device finds a device of a person by public key or by name. A name
// matches the active device first, then the newest revoked one.
func (s *Service) Device(ctx context.Context, person, ref string) (Device, error) {
	_, d, err := s.personDevice(ctx, person, ref)
	return d, err
}

// personDevice finds a person and one of their devices, by name or key.
func (s *Service) personDevice(ctx context.Context, person, ref string) (Person, Device, error) {
	p, err := s.Person(ctx, person)
	if err != nil {
		return Person{}, Device{}, err
	}
	d, err := s.deviceOf(ctx, p, ref)
	return p, d, err
}

func (s *Service) deviceOf(ctx context.Context, p Person, ref string) (Device, error) {
	notFound := errorf(ErrNotFound, "account %q has no device %q; see `latch device ls --account %s`", p.Name, ref, p.Name)
	pub := ref
	if !nkeys.IsValidPublicUserKey(ref) {
		e, err := s.devices.Get(ctx, nameKey(p.Account, ref))
		if err == nil {
			pub = string(e.Value())
		} else if !isNotFound(err) {
			return Device{}, err
		} else {
			// No active device has the name; look among the revoked.
			devs, err := s.devicesOf(ctx, p)
			if err != nil {
				return Device{}, err
			}
			for _, d := range devs {
				if strings.EqualFold(d.Name, ref) {
					return d, nil
				}
			}
			return Device{}, notFound
		}
	}
	var d Device
	if _, err := getJSON(ctx, s.devices, deviceKey(p.Account, pub), &d); err != nil {
		if isNotFound(err) {
			return Device{}, notFound
		}
		return Device{}, err
	}
	return d, nil
}

// RevokeDevice revokes a device: its key goes into the account JWT's
// revocation list, the JWT is pushed, and the server closes the device's
// connections at once. Its creds never connect again. Revoking a revoked
// device changes nothing and returns it.
func (s *Service) RevokeDevice(ctx context.Context, person, ref string) (Device, error) {
	p, d, err := s.personDevice(ctx, person, ref)
	if err != nil {
		return Device{}, err
	}
	if d.Revoked() {
		return d, nil
	}
	if err := s.update(p.Account, func(ac *jwt.AccountClaims) error {
		ac.Revoke(d.PublicKey)
		return nil
	}); err != nil {
		return Device{}, fmt.Errorf("revoke %q: %w", d.Name, err)
	}
	now := time.Now().UTC()
	d.RevokedAt = &now
	if err := putJSON(ctx, s.devices, deviceKey(p.Account, d.PublicKey), d); err != nil {
		return Device{}, fmt.Errorf("device %q is revoked, but its record was not updated: %w", d.Name, err)
	}
	if err := s.devices.Delete(ctx, nameKey(p.Account, d.Name)); err != nil {
		s.log.Warn("revoked device keeps its name", "account", p.Account, "device", d.PublicKey, "err", err)
	}
	s.auditAfter(ctx, AuditEvent{Action: ActionDeviceRevoke, Account: p.Account, AccountName: p.Name, Device: d.PublicKey, DeviceName: d.Name})
	s.log.Info("device revoked", "account", p.Account, "device", d.PublicKey)
	return d, nil
}

// RenameDevice gives an active device another name, unique among the
// person's active devices as any device name is. The device's JWT keeps
// the old name until it is renewed; the name is latch's, not the key's.
func (s *Service) RenameDevice(ctx context.Context, person, ref, name string) (Device, error) {
	if err := ValidateDeviceName(name); err != nil {
		return Device{}, err
	}
	p, d, err := s.personDevice(ctx, person, ref)
	if err != nil {
		return Device{}, err
	}
	if d.Revoked() {
		return Device{}, errorf(ErrRevoked, "device %q is revoked; a revoked device keeps its name", d.Name)
	}
	if d.Name == name {
		return d, nil
	}
	old := d.Name
	sameKey := nameKey(p.Account, old) == nameKey(p.Account, name) // only the case changes
	if !sameKey {
		if _, err := s.devices.Create(ctx, nameKey(p.Account, name), []byte(d.PublicKey)); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) {
				return Device{}, errorf(ErrExists, "account %q already has a device named %q; choose another name", p.Name, name)
			}
			return Device{}, err
		}
	}
	// Compare-and-set: a revocation or renewal written meanwhile is never
	// undone; the rename is then refused and may be tried again.
	var cur Device
	rev, err := getJSON(ctx, s.devices, deviceKey(p.Account, d.PublicKey), &cur)
	if err == nil && cur.Revoked() {
		err = errorf(ErrRevoked, "device %q was revoked meanwhile", old)
	}
	if err == nil {
		cur.Name = name
		var b []byte
		if b, err = json.Marshal(cur); err == nil {
			_, err = s.devices.Update(ctx, deviceKey(p.Account, d.PublicKey), b, rev)
			if errors.Is(err, jetstream.ErrKeyExists) {
				err = errorf(ErrConflict, "device %q changed while it was being renamed; try again", old)
			}
		}
	}
	if err != nil {
		if !sameKey {
			s.devices.Delete(context.WithoutCancel(ctx), nameKey(p.Account, name))
		}
		return Device{}, err
	}
	if !sameKey {
		if err := s.devices.Delete(ctx, nameKey(p.Account, old)); err != nil {
			s.log.Warn("renamed device keeps its old name too", "account", p.Account, "device", d.PublicKey, "err", err)
		}
	}
	s.auditAfter(ctx, AuditEvent{Action: ActionDeviceRename, Account: p.Account, AccountName: p.Name, Device: d.PublicKey, DeviceName: name,
		Detail: "was " + old})
	return cur, nil
}

// SetLastSeen records when a device was last connected. account is the
// person account's public key. An older time than the one recorded
// changes nothing.
func (s *Service) SetLastSeen(ctx context.Context, account, pub string, at time.Time) error {
	at = at.UTC()
	for range 5 {
		var d Device
		rev, err := getJSON(ctx, s.devices, deviceKey(account, pub), &d)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return errorf(ErrNotFound, "no device %s in account %s", pub, account)
		}
		if err != nil {
			return err
		}
		if d.LastSeen != nil && !at.After(*d.LastSeen) {
			return nil
		}
		d.LastSeen = &at
		b, err := json.Marshal(d)
		if err != nil {
			return err
		}
		// Compare-and-set: a revocation written meanwhile is never undone.
		if _, err = s.devices.Update(ctx, deviceKey(account, pub), b, rev); err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return err
		}
	}
	return fmt.Errorf("device %s: last seen not recorded: the record kept changing", pub)
}
