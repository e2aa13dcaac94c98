package accounts

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
)

// Device enrollment is the device authorization grant of RFC 8628: the
// device makes its own nkey, starts an enrollment with the public half and
// gets a device code (its secret) and a user code (for the person); a
// logged-in person approves the user code; the device polls with its
// device code and receives its user JWT once. The seed never leaves the
// device.
//
// The enroll bucket holds, with a bucket TTL that outlives every enrollment:
//
//	d.<sha256 hex of the device code>  the Enrollment
//	u.<user code>                      the hash, while the enrollment is pending
//
// Only the hash of a device code is kept, so reading the bucket does not
// let anyone pick up a JWT.
const (
	// EnrollTTL is how long an enrollment may wait for approval.
	EnrollTTL = 10 * time.Minute
	// EnrollInterval is how long a device waits between polls at first.
	EnrollInterval = 5 * time.Second
	// enrollBucketTTL drops every entry a while after its enrollment
	// expired, so abandoned ones clean themselves up.
	enrollBucketTTL = 15 * time.Minute
	// slowDownStep is what a slow_down adds to the interval (RFC 8628 §3.5).
	slowDownStep = 5 * time.Second
	// pollGrace forgives a poll that comes this much early, so network
	// jitter does not earn a well-behaved device a slow_down.
	pollGrace = 500 * time.Millisecond
)

// Statuses of an enrollment.
const (
	EnrollPending  = "pending"
	EnrollApproved = "approved"
	EnrollDenied   = "denied"
	// enrollApproving marks an enrollment a person is approving: the device
	// is being authorized and nobody else may decide it meanwhile.
	enrollApproving = "approving"
)

// userCodeAlphabet is RFC 8628 §6.1's: no vowels (no words), no digits.
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

const userCodeLen = 8

// Outcomes of a poll other than the JWT. They are not kinds of domain
// error: the web layer maps each to its RFC 8628 error code (see
// PollErrorCode).
var (
	ErrAuthorizationPending = errors.New("the enrollment waits for a person to approve it")
	ErrSlowDown             = errors.New("polling too often; wait longer between polls")
	ErrAccessDenied         = errors.New("the enrollment was denied")
	ErrExpiredToken         = errors.New("no such enrollment: it expired, its JWT was picked up already, or it never existed; start again")
)

// PollErrorCode returns the RFC 8628 error code of an error from
// PollEnrollment, or "" for any other error.
func PollErrorCode(err error) string {
	switch {
	case errors.Is(err, ErrAuthorizationPending):
		return "authorization_pending"
	case errors.Is(err, ErrSlowDown):
		return "slow_down"
	case errors.Is(err, ErrAccessDenied):
		return "access_denied"
	case errors.Is(err, ErrExpiredToken):
		return "expired_token"
	}
	return ""
}

// EnrollRequest is what a device sends to start its enrollment. Address
// and UserAgent are the web layer's view of the request, shown to the
// person who approves.
type EnrollRequest struct {
	PublicKey string
	Name      string
	Platform  string
	Address   string
	UserAgent string
}

// Enrollment is a device's request to join a person account.
type Enrollment struct {
	UserCode  string        `json:"user_code"` // normalized: 8 letters, no dash; see FormatUserCode
	PublicKey string        `json:"public_key"`
	Name      string        `json:"name"`
	Platform  string        `json:"platform,omitempty"`
	Address   string        `json:"address,omitempty"`
	UserAgent string        `json:"user_agent,omitempty"`
	Requested time.Time     `json:"requested"`
	Expires   time.Time     `json:"expires"`
	Interval  time.Duration `json:"interval_ns"` // how long the device must wait between polls
	LastPoll  time.Time     `json:"last_poll,omitzero"`
	Status    string        `json:"status"`
	// Account and AccountName are the person who approved or denied it.
	Account     string `json:"account,omitempty"`
	AccountName string `json:"account_name,omitempty"`
	// JWT is the device's user JWT, set on approval and handed out once.
	JWT           string     `json:"jwt,omitempty"`
	DeviceExpires *time.Time `json:"device_expires,omitempty"`
}

// FormatUserCode shows a normalized user code as people read it:
// "WDJBMJHT" → "WDJB-MJHT".
func FormatUserCode(code string) string {
	if len(code) != userCodeLen {
		return code
	}
	return code[:4] + "-" + code[4:]
}

// NormalizeUserCode reads a user code as a person typed it: upper case,
// and only the letters of the alphabet, so dashes, spaces and other
// punctuation go (RFC 8628 §6.1).
func NormalizeUserCode(in string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(in) {
		if strings.ContainsRune(userCodeAlphabet, r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func newUserCode() string {
	code := make([]byte, 0, userCodeLen)
	for len(code) < userCodeLen {
		for _, c := range randomBytes(16) {
			// 240 is the largest multiple of 20 below 256: no letter is
			// likelier than another.
			if c < 240 && len(code) < userCodeLen {
				code = append(code, userCodeAlphabet[c%20])
			}
		}
	}
	return string(code)
}

func deviceCodeKey(deviceCode string) string {
	h := sha256.Sum256([]byte(deviceCode))
	return "d." + hex.EncodeToString(h[:])
}

func userCodeKey(code string) string { return "u." + code }

func validatePlatform(p string) error {
	if !utf8.ValidString(p) || utf8.RuneCountInString(p) > 64 {
		return invalid("platform", "the platform is at most 64 characters of UTF-8")
	}
	for _, r := range p {
		if !unicode.IsPrint(r) {
			return invalid("platform", "the platform %q holds a control or non-printing character", p)
		}
	}
	return nil
}

// clip cuts s to at most n runes and makes it valid UTF-8.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

// StartEnrollment starts a device's enrollment and returns its device code,
// a secret for the device alone, and the enrollment with the user code to
// show. A key that any account knows already, as a device or a revoked
// one, is refused: a device key is never enrolled twice.
func (s *Service) StartEnrollment(ctx context.Context, r EnrollRequest) (string, Enrollment, error) {
	if !IsUserKey(r.PublicKey) {
		return "", Enrollment{}, invalid("public_key", "%q is not a user public key (U…); send the public half of a user nkey the device made", clip(r.PublicKey, 60))
	}
	if err := ValidateDeviceName(r.Name); err != nil {
		return "", Enrollment{}, err
	}
	if err := validatePlatform(r.Platform); err != nil {
		return "", Enrollment{}, err
	}
	if err := s.checkNewDeviceKey(ctx, r.PublicKey); err != nil {
		return "", Enrollment{}, err
	}
	now := time.Now().UTC()
	e := Enrollment{
		PublicKey: r.PublicKey, Name: r.Name, Platform: r.Platform,
		Address: clip(r.Address, 128), UserAgent: clip(r.UserAgent, 256),
		Requested: now, Expires: now.Add(EnrollTTL), Interval: EnrollInterval, Status: EnrollPending,
	}
	deviceCode := base64.RawURLEncoding.EncodeToString(randomBytes(32))
	key := deviceCodeKey(deviceCode)
	// The user code is claimed with Create, so two pending enrollments
	// never share one; on a clash another is drawn.
	for try := 0; ; try++ {
		e.UserCode = newUserCode()
		_, err := s.enroll.Create(ctx, userCodeKey(e.UserCode), []byte(key))
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrKeyExists) || try == 10 {
			return "", Enrollment{}, fmt.Errorf("start enrollment: %w", err)
		}
	}
	if err := createJSON(ctx, s.enroll, key, e); err != nil {
		s.enroll.Delete(context.WithoutCancel(ctx), userCodeKey(e.UserCode))
		return "", Enrollment{}, fmt.Errorf("start enrollment: %w", err)
	}
	return deviceCode, e, nil
}

// checkNewDeviceKey refuses a key that is a device, active or revoked, of
// any account.
func (s *Service) checkNewDeviceKey(ctx context.Context, pub string) error {
	lister, err := s.devices.ListKeysFiltered(ctx, "*.dev."+pub)
	if err != nil {
		return err
	}
	var found []string
	for k := range lister.Keys() {
		found = append(found, k)
	}
	for _, k := range found {
		var d Device
		if _, err := getJSON(ctx, s.devices, k, &d); err != nil {
			if isNotFound(err) {
				continue
			}
			return err
		}
		if d.Revoked() {
			return errorf(ErrRevoked, "key %s belongs to a revoked device and is never enrolled again; make a new key", pub)
		}
		return errorf(ErrExists, "key %s is enrolled already, as device %q; make a new key to enroll another device", pub, d.Name)
	}
	return nil
}

func noPendingEnrollment(userCode string) error {
	code := NormalizeUserCode(userCode)
	if len(code) != userCodeLen {
		code = strings.TrimSpace(userCode)
	}
	return errorf(ErrNotFound, "no pending enrollment with code %s; check the code the device shows, or start again on the device", FormatUserCode(code))
}

// enrollmentKey finds the key of the pending enrollment with a user code.
func (s *Service) enrollmentKey(ctx context.Context, userCode string) (string, error) {
	code := NormalizeUserCode(userCode)
	if len(code) != userCodeLen {
		return "", noPendingEnrollment(userCode)
	}
	e, err := s.enroll.Get(ctx, userCodeKey(code))
	if isNotFound(err) {
		return "", noPendingEnrollment(userCode)
	}
	if err != nil {
		return "", err
	}
	return string(e.Value()), nil
}

// checkPending returns an error unless e is a pending, unexpired enrollment
// with the user code.
func checkPending(e Enrollment, userCode string, now time.Time) error {
	if e.Status != EnrollPending || !now.Before(e.Expires) || e.UserCode != NormalizeUserCode(userCode) {
		return noPendingEnrollment(userCode)
	}
	return nil
}

// PendingEnrollment returns the pending enrollment with a user code, as
// typed: case, dashes and spaces do not matter.
func (s *Service) PendingEnrollment(ctx context.Context, userCode string) (Enrollment, error) {
	key, err := s.enrollmentKey(ctx, userCode)
	if err != nil {
		return Enrollment{}, err
	}
	var e Enrollment
	if _, err := getJSON(ctx, s.enroll, key, &e); err != nil {
		if isNotFound(err) || errors.Is(err, jetstream.ErrInvalidKey) {
			return Enrollment{}, noPendingEnrollment(userCode)
		}
		return Enrollment{}, err
	}
	if err := checkPending(e, userCode, time.Now()); err != nil {
		return Enrollment{}, err
	}
	e.JWT = ""
	return e, nil
}

// editEnrollment applies edit to an enrollment and writes it back with
// compare-and-set, from a fresh read when another write (a poll, say)
// came in between. An error from edit leaves the enrollment as it is.
func (s *Service) editEnrollment(ctx context.Context, key string, edit func(*Enrollment) error) (Enrollment, error) {
	for {
		var e Enrollment
		rev, err := getJSON(ctx, s.enroll, key, &e)
		if err != nil {
			return Enrollment{}, err
		}
		if err := edit(&e); err != nil {
			return Enrollment{}, err
		}
		b, err := json.Marshal(e)
		if err != nil {
			return Enrollment{}, err
		}
		_, err = s.enroll.Update(ctx, key, b, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		return e, err
	}
}

// decide moves the pending enrollment with a user code to status for a
// person; exactly one decision wins, however many race.
func (s *Service) decide(ctx context.Context, userCode string, p Person, status string) (string, Enrollment, error) {
	key, err := s.enrollmentKey(ctx, userCode)
	if err != nil {
		return "", Enrollment{}, err
	}
	e, err := s.editEnrollment(ctx, key, func(e *Enrollment) error {
		if err := checkPending(*e, userCode, time.Now()); err != nil {
			return err
		}
		e.Status, e.Account, e.AccountName = status, p.Account, p.Name
		return nil
	})
	if isNotFound(err) {
		return "", Enrollment{}, noPendingEnrollment(userCode)
	}
	return key, e, err
}

// ApproveEnrollment approves the pending enrollment with a user code for a
// person: the device's key becomes a device of the person's account
// (Enrolled "enrolled") and its JWT waits for the device's next poll. The
// audit trail gets the device's issue, from AuthorizeDevice, and an
// enroll.approve entry with the user code and the address the enrollment
// came from. When the device cannot be authorized because its name is
// taken or the account disabled, the enrollment stays pending, to be
// approved once that is fixed; when its key was ever a device, the
// enrollment is denied.
func (s *Service) ApproveEnrollment(ctx context.Context, userCode, person string) (Device, error) {
	p, err := s.Person(ctx, person)
	if err != nil {
		return Device{}, err
	}
	key, e, err := s.decide(ctx, userCode, p, enrollApproving)
	if err != nil {
		return Device{}, err
	}
	// From here on the enrollment is this call's: it must end approved or
	// pending again, whatever becomes of ctx.
	done := context.WithoutCancel(ctx)
	// The key was new when the enrollment started, but another enrollment
	// with the same key may have been approved since, in any account.
	err = s.checkNewDeviceKey(ctx, e.PublicKey)
	burnt := errors.Is(err, ErrExists) || errors.Is(err, ErrRevoked)
	var d Device
	var tok string
	if err == nil {
		d, tok, err = s.AuthorizeDevice(ctx, NewDevice{
			Person: p.Name, Name: e.Name, PublicKey: e.PublicKey, Enrolled: EnrolledEnrolled, Platform: e.Platform,
		})
		burnt = errors.Is(err, ErrRevoked)
	}
	if err != nil {
		// A key that was ever a device is never authorized again: the
		// enrollment is over and the device hears access_denied. Anything
		// else (a device name in use, a disabled account) may be fixed,
		// so the enrollment waits again.
		if _, rerr := s.editEnrollment(done, key, func(e *Enrollment) error {
			e.Status, e.Account, e.AccountName = EnrollPending, "", ""
			if burnt {
				e.Status = EnrollDenied
			}
			return nil
		}); rerr != nil {
			s.log.Warn("enrollment left half-approved; it expires by itself", "user_code", e.UserCode, "err", rerr)
		}
		if burnt {
			s.enroll.Delete(done, userCodeKey(e.UserCode))
		}
		return Device{}, err
	}
	if _, err := s.editEnrollment(done, key, func(e *Enrollment) error {
		e.Status, e.JWT, e.DeviceExpires = EnrollApproved, tok, d.Expires
		return nil
	}); err != nil {
		return Device{}, fmt.Errorf("device %s is authorized, but its JWT could not be kept for it: %w; revoke it with `latch device revoke --account %s %s` and enroll again", d.PublicKey, err, p.Name, d.PublicKey)
	}
	if err := s.enroll.Delete(done, userCodeKey(e.UserCode)); err != nil {
		s.log.Warn("approved enrollment keeps its user code", "user_code", e.UserCode, "err", err)
	}
	s.auditAfter(done, AuditEvent{Action: ActionEnrollApprove, Account: p.Account, AccountName: p.Name, Device: d.PublicKey, DeviceName: d.Name,
		Detail: enrollDetail(e)})
	return d, nil
}

func enrollDetail(e Enrollment) string {
	detail := "code " + FormatUserCode(e.UserCode)
	if e.Address != "" {
		detail += ", requested from " + e.Address
	}
	return detail
}

// DenyEnrollment denies the pending enrollment with a user code; the
// device learns it on its next poll.
func (s *Service) DenyEnrollment(ctx context.Context, userCode, person string) error {
	p, err := s.Person(ctx, person)
	if err != nil {
		return err
	}
	_, e, err := s.decide(ctx, userCode, p, EnrollDenied)
	if err != nil {
		return err
	}
	if err := s.enroll.Delete(context.WithoutCancel(ctx), userCodeKey(e.UserCode)); err != nil {
		s.log.Warn("denied enrollment keeps its user code", "user_code", e.UserCode, "err", err)
	}
	s.auditAfter(ctx, AuditEvent{Action: ActionEnrollDeny, Account: p.Account, AccountName: p.Name, Device: e.PublicKey, DeviceName: e.Name,
		Detail: enrollDetail(e)})
	return nil
}

// PollEnrollment is a device asking, with its device code, how its
// enrollment stands. Once approved it returns the enrollment with the JWT
// and forgets it, so the JWT is handed out once; an approved enrollment
// hands out its JWT even after Expires. Otherwise it returns
// ErrAuthorizationPending (with the enrollment), ErrSlowDown when the
// device polls sooner than the interval allows (with the enrollment, whose
// interval has grown by 5s), ErrAccessDenied once, or ErrExpiredToken.
func (s *Service) PollEnrollment(ctx context.Context, deviceCode string) (Enrollment, error) {
	if deviceCode == "" {
		return Enrollment{}, ErrExpiredToken
	}
	key := deviceCodeKey(deviceCode)
	for {
		var e Enrollment
		rev, err := getJSON(ctx, s.enroll, key, &e)
		if isNotFound(err) {
			return Enrollment{}, ErrExpiredToken
		}
		if err != nil {
			return Enrollment{}, err
		}
		now := time.Now().UTC()
		// The delete is conditional on the revision read, so of two polls
		// at once only one gets the outcome.
		take := func() (bool, error) {
			err := s.enroll.Delete(ctx, key, jetstream.LastRevision(rev))
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				return false, nil
			}
			return err == nil, err
		}
		switch {
		case e.Status == EnrollApproved:
			if ok, err := take(); !ok {
				if err != nil {
					return Enrollment{}, err
				}
				continue
			}
			return e, nil
		case e.Status == EnrollDenied:
			if ok, err := take(); !ok {
				if err != nil {
					return Enrollment{}, err
				}
				continue
			}
			return Enrollment{}, ErrAccessDenied
		case e.Status == EnrollPending && !now.Before(e.Expires):
			if ok, err := take(); !ok {
				if err != nil {
					return Enrollment{}, err
				}
				continue
			}
			s.enroll.Delete(ctx, userCodeKey(e.UserCode))
			return Enrollment{}, ErrExpiredToken
		}
		// Pending, or being approved right now.
		outcome := ErrAuthorizationPending
		if !e.LastPoll.IsZero() && now.Sub(e.LastPoll) < e.Interval-pollGrace {
			outcome = ErrSlowDown
			e.Interval += slowDownStep
		}
		e.LastPoll = now
		b, err := json.Marshal(e)
		if err != nil {
			return Enrollment{}, err
		}
		if _, err := s.enroll.Update(ctx, key, b, rev); err != nil {
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				continue
			}
			return Enrollment{}, err
		}
		return e, outcome
	}
}
