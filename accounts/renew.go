package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// ActionDeviceRenew is the audit action of a device renewing its JWT.
const ActionDeviceRenew Action = "device.renew"

// RenewGrace is how long after its JWT expired a device may still renew
// it: a laptop closed over a weekend comes back without a new enrollment,
// while creds lost long ago cannot be brought back to life.
const RenewGrace = 24 * time.Hour

// ErrExpired is the kind of error RenewDevice returns for a device whose
// JWT expired more than RenewGrace ago. Such an error also matches
// ErrInvalid, so Kind names it "invalid".
var ErrExpired = errors.New("expired")

type expiredError struct{ msg string }

func (e *expiredError) Error() string        { return e.msg }
func (e *expiredError) Is(target error) bool { return target == ErrExpired || target == ErrInvalid }

// errRenewalSigned ends a renewal's turn in the account's writer. The
// renewal reads the account's claims and changes nothing, so it refuses
// its change with this error: the writer then neither signs nor pushes a
// new account JWT for it.
var errRenewalSigned = errors.New("renewal signed")

// RenewDevice issues a new JWT for a device's key, with the lifetime its
// current JWT has (or none, when it never expires), and records the new
// expiry. account is the person account's public key (A…), device the
// device's (U…). The caller has checked that whoever asks holds the
// device's seed.
//
// A revoked key is never renewed (ErrRevoked), an unknown one neither
// (ErrNotFound), nor one whose JWT expired more than RenewGrace ago
// (ErrExpired), nor one of a disabled person (ErrDisabled).
//
// Revocation is by time: the account JWT lists the key with the second it
// was revoked, and the server refuses every JWT of that key issued at or
// before it. A JWT signed a second after a revocation would pass, so the
// new JWT is checked and signed inside the account's writer, where
// revocations are applied one at a time: a revocation is either applied
// before the check, which then refuses, or after the signature, and then
// carries a time no earlier than the new JWT's.
func (s *Service) RenewDevice(ctx context.Context, account, device string) (Device, string, error) {
	unknown := errorf(ErrNotFound, "device %s is unknown in account %s; enroll the device again", device, account)
	if !nkeys.IsValidPublicAccountKey(account) || !nkeys.IsValidPublicUserKey(device) {
		return Device{}, "", unknown
	}
	key := deviceKey(account, device)
	var d Device
	rev, err := getJSON(ctx, s.devices, key, &d)
	if isNotFound(err) {
		return Device{}, "", unknown
	}
	if err != nil {
		return Device{}, "", err
	}
	if d.Revoked() {
		return Device{}, "", revokedError(d)
	}
	if d.Enrolled == EnrolledDownload {
		// A downloaded creds file is a stopgap for a machine without the
		// latch client, and is promised to last as long as it says.
		return Device{}, "", errorf(ErrForbidden, "device %q has downloaded creds, which are not renewed; download new ones or enroll the device with `latch client enroll`", d.Name)
	}
	p, err := s.Person(ctx, d.AccountName)
	if errors.Is(err, ErrNotFound) || err == nil && p.Account != account {
		return Device{}, "", unknown
	}
	if err != nil {
		return Device{}, "", err
	}
	switch p.Status {
	case StatusActive:
	case StatusDisabled:
		return Device{}, "", errorf(ErrDisabled, "account %q is disabled; its devices are not renewed until an admin enables it", p.Name)
	default:
		return Device{}, "", unknown
	}
	if d.Expires != nil && time.Now().After(d.Expires.Add(RenewGrace)) {
		return Device{}, "", &expiredError{fmt.Sprintf("the JWT of device %q expired at %s, more than %s ago; enroll the device again",
			d.Name, d.Expires.UTC().Format(time.RFC3339), RenewGrace)}
	}
	lifetime := s.lifetime(d)

	sk, err := s.keysOf(ctx, p)
	if err != nil {
		return Device{}, "", err
	}
	signer := sk.device
	signerPub, _ := signer.PublicKey()

	var tok string
	var issued, exp time.Time
	err = s.update(account, func(ac *jwt.AccountClaims) error {
		if _, revoked := ac.Revocations[device]; revoked || ac.Revocations.IsRevoked(device, time.Now()) {
			return revokedError(d)
		}
		if _, ok := ac.SigningKeys[signerPub]; !ok {
			return fmt.Errorf("the device signing key of %s is no longer one of its account's keys", p.Name)
		}
		now := time.Now()
		exp = time.Time{}
		if lifetime > 0 {
			exp = now.Add(lifetime).Truncate(time.Second)
		}
		uc := deviceUserClaims(account, device, d.Name, exp)
		t, err := uc.Encode(signer)
		if err != nil {
			return err
		}
		tok, issued = t, time.Unix(uc.IssuedAt, 0).UTC()
		return errRenewalSigned
	})
	if !errors.Is(err, errRenewalSigned) {
		if err == nil {
			err = errors.New("the renewal was not signed")
		}
		return Device{}, "", err
	}

	// The record says when the device expires now. Compare-and-set: a
	// revocation or a last-seen time written meanwhile is kept.
	for attempt := 0; ; attempt++ {
		d.Renewed = &issued
		d.Expires = nil
		if !exp.IsZero() {
			e := exp.UTC()
			d.Expires = &e
		}
		b, err := json.Marshal(d)
		if err != nil {
			return Device{}, "", err
		}
		if _, err = s.devices.Update(ctx, key, b, rev); err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrKeyExists) || attempt == 4 {
			return Device{}, "", fmt.Errorf("record the renewal of %q: %w", d.Name, err)
		}
		d = Device{}
		if rev, err = getJSON(ctx, s.devices, key, &d); err != nil {
			return Device{}, "", err
		}
		if d.Revoked() {
			// Revoked after the signature: the new JWT is dead already,
			// and it is not handed out.
			return Device{}, "", revokedError(d)
		}
	}
	// As with issuing, the JWT goes out only once the renewal is on the
	// audit trail.
	detail := "expires never"
	if d.Expires != nil {
		detail = "expires " + d.Expires.Format(time.RFC3339)
	}
	if err := s.audit(ctx, AuditEvent{Action: ActionDeviceRenew, Account: account, AccountName: p.Name,
		Device: device, DeviceName: d.Name, Detail: detail}); err != nil {
		return Device{}, "", fmt.Errorf("audit: %w", err)
	}
	return d, tok, nil
}

func revokedError(d Device) error {
	when := "earlier"
	if d.RevokedAt != nil {
		when = "at " + d.RevokedAt.UTC().Format(time.RFC3339)
	}
	return errorf(ErrRevoked, "device %q was revoked %s; a revoked key is never renewed: enroll the device again with a new key", d.Name, when)
}

// lifetime is how long a device's JWTs last: from its creation or last
// renewal to its expiry; 0 when they never expire. Expiries are whole
// seconds cut down from the time of signing, so the difference is
// rounded up to the second to give back the lifetime asked for.
func (s *Service) lifetime(d Device) time.Duration {
	if d.Expires == nil {
		return 0
	}
	from := d.Created
	if d.Renewed != nil {
		from = *d.Renewed
	}
	l := d.Expires.Sub(from)
	if l <= 0 {
		return s.cfg.DeviceTTL // never written so; the default is the policy
	}
	return (l + time.Second - 1).Truncate(time.Second)
}
