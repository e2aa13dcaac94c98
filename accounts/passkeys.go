package accounts

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
)

// Passkeys live in the passkeys bucket under three kinds of key:
//
//	p.<person>.<credential id>  the Passkey
//	c.<credential id>           the person's name, to find a passkey by id
//	h.<handle>                  the person's name, to find a person by the
//	                            user handle an authenticator returns
//
// Credential ids and handles are base64url without padding, whose
// alphabet is valid in a key.
func passkeyKey(person, id string) string { return "p." + person + "." + id }
func credentialKey(id string) string      { return "c." + id }
func handleKey(handle string) string      { return "h." + handle }

const (
	// maxCredentialID is the longest credential id WebAuthn allows, in bytes.
	maxCredentialID = 1023
	maxPasskeyName  = 64
	// DefaultPasskeyName names a passkey added without a name.
	DefaultPasskeyName = "Passkey"
)

// Passkey is a WebAuthn credential of a person. The credential record is
// the web layer's, kept here as it is; the fields beside it are what the
// GUI shows and what a login updates.
type Passkey struct {
	ID             string          `json:"id"`     // credential id, base64url without padding
	Person         string          `json:"person"` // the person's name
	Name           string          `json:"name"`
	Credential     json.RawMessage `json:"credential"` // the web layer's credential record, opaque here
	SignCount      uint32          `json:"sign_count"`
	CloneWarning   bool            `json:"clone_warning,omitempty"`
	BackupEligible bool            `json:"backup_eligible"`
	BackupState    bool            `json:"backup_state"`
	Created        time.Time       `json:"created"`
	LastUsed       *time.Time      `json:"last_used,omitempty"`
}

// NewHandle makes a WebAuthn user handle: base64url, without padding, of
// 32 random bytes.
func NewHandle() string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(32))
}

func validateHandle(h string) error {
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil || len(b) < 16 || len(b) > 64 {
		return invalid("handle", "a user handle is base64url, without padding, of 16 to 64 bytes")
	}
	return nil
}

func validateCredentialID(id string) error {
	b, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil || len(b) == 0 || len(b) > maxCredentialID {
		return invalid("id", "a credential id is base64url, without padding, of 1 to %d bytes", maxCredentialID)
	}
	return nil
}

// ValidatePasskeyName checks a passkey's name: 1 to 64 printable
// characters, no leading or trailing space.
func ValidatePasskeyName(name string) error {
	switch {
	case name == "":
		return invalid("name", "a passkey name is required")
	case !utf8.ValidString(name):
		return invalid("name", "the passkey name is not valid UTF-8")
	case utf8.RuneCountInString(name) > maxPasskeyName:
		return invalid("name", "the passkey name is longer than %d characters", maxPasskeyName)
	case strings.TrimSpace(name) != name:
		return invalid("name", "the passkey name %q starts or ends with a space", name)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return invalid("name", "the passkey name %q holds a control or non-printing character", name)
		}
	}
	return nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand)
	return b
}

func passkeyNotFound() error {
	return errorf(ErrNotFound, "no such passkey; see the passkeys page")
}

// AddPasskey registers a passkey of an existing person. A credential id
// registered before, by anyone, is refused.
func (s *Service) AddPasskey(ctx context.Context, pk Passkey) (Passkey, error) {
	if err := validateCredentialID(pk.ID); err != nil {
		return Passkey{}, err
	}
	if pk.Name == "" {
		pk.Name = DefaultPasskeyName
	}
	if err := ValidatePasskeyName(pk.Name); err != nil {
		return Passkey{}, err
	}
	if len(pk.Credential) == 0 || !json.Valid(pk.Credential) {
		return Passkey{}, invalid("credential", "the credential record must be JSON")
	}
	p, err := s.Person(ctx, pk.Person)
	if err != nil {
		return Passkey{}, err
	}
	if p.Status == StatusDeleting {
		return Passkey{}, errorf(ErrInvalid, "account %q is being deleted", p.Name)
	}
	pk.Person = p.Name
	pk.Created = time.Now().UTC()
	pk.LastUsed = nil
	// Claiming the id first makes a credential belong to one person only,
	// however many requests race.
	if _, err := s.passkeys.Create(ctx, credentialKey(pk.ID), []byte(p.Name)); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return Passkey{}, errorf(ErrExists, "this passkey is registered already")
		}
		return Passkey{}, err
	}
	err = createJSON(ctx, s.passkeys, passkeyKey(p.Name, pk.ID), pk)
	if err == nil && p.Handle != "" {
		err = s.claimHandle(ctx, p)
	}
	if err != nil {
		undo := context.WithoutCancel(ctx)
		s.passkeys.Purge(undo, passkeyKey(p.Name, pk.ID))
		s.passkeys.Delete(undo, credentialKey(pk.ID))
		return Passkey{}, fmt.Errorf("add passkey: %w", err)
	}
	s.auditAfter(ctx, AuditEvent{Action: ActionPasskeyAdd, Account: p.Account, AccountName: p.Name, Detail: pk.Name})
	// Once an admin can log in, the last setup link printed is used up,
	// however the admin came to; a start finding no admin able to log in
	// again prints a new one.
	if p.Role == RoleAdmin {
		if err := s.consumeSetupInvite(ctx); err != nil {
			s.log.Warn("use up the setup link", "err", err)
		}
	}
	return pk, nil
}

// claimHandle indexes a person's user handle, once.
func (s *Service) claimHandle(ctx context.Context, p Person) error {
	_, err := s.passkeys.Create(ctx, handleKey(p.Handle), []byte(p.Name))
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return err
	}
	e, err := s.passkeys.Get(ctx, handleKey(p.Handle))
	if err != nil {
		return err
	}
	if owner := string(e.Value()); owner != p.Name {
		return fmt.Errorf("the user handle of %q is indexed for %q; the passkeys bucket is inconsistent", p.Name, owner)
	}
	return nil
}

// PersonByHandle returns the person whose WebAuthn user handle this is,
// as a discoverable login needs. Only persons with a passkey are found.
func (s *Service) PersonByHandle(ctx context.Context, handle string) (Person, error) {
	notFound := errorf(ErrNotFound, "no person has this passkey; it may have been removed")
	if validateHandle(handle) != nil {
		return Person{}, notFound
	}
	e, err := s.passkeys.Get(ctx, handleKey(handle))
	if isNotFound(err) {
		return Person{}, notFound
	}
	if err != nil {
		return Person{}, err
	}
	p, err := s.Person(ctx, string(e.Value()))
	if errors.Is(err, ErrNotFound) || (err == nil && p.Handle != handle) {
		return Person{}, notFound
	}
	return p, err
}

// Passkeys returns a person's passkeys, oldest first.
func (s *Service) Passkeys(ctx context.Context, person string) ([]Passkey, error) {
	p, err := s.Person(ctx, person)
	if err != nil {
		return nil, err
	}
	return s.passkeysOf(ctx, p.Name)
}

func (s *Service) passkeysOf(ctx context.Context, person string) ([]Passkey, error) {
	out, _, err := listJSON[Passkey](ctx, s.passkeys, passkeyKey(person, "*"))
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// Passkey finds a passkey by its credential id.
func (s *Service) Passkey(ctx context.Context, id string) (Passkey, error) {
	pk, _, err := s.passkeyByID(ctx, id)
	return pk, err
}

func (s *Service) passkeyByID(ctx context.Context, id string) (Passkey, uint64, error) {
	if validateCredentialID(id) != nil {
		return Passkey{}, 0, passkeyNotFound()
	}
	e, err := s.passkeys.Get(ctx, credentialKey(id))
	if isNotFound(err) {
		return Passkey{}, 0, passkeyNotFound()
	}
	if err != nil {
		return Passkey{}, 0, err
	}
	return s.passkeyOf(ctx, string(e.Value()), id)
}

// passkeyOf reads a passkey of a person, with its revision.
func (s *Service) passkeyOf(ctx context.Context, person, id string) (Passkey, uint64, error) {
	if validateCredentialID(id) != nil || ValidatePersonName(person) != nil {
		return Passkey{}, 0, passkeyNotFound()
	}
	var pk Passkey
	rev, err := getJSON(ctx, s.passkeys, passkeyKey(person, id), &pk)
	if isNotFound(err) {
		return Passkey{}, 0, passkeyNotFound()
	}
	return pk, rev, err
}

// updatePasskey applies edit to a person's passkey and writes it back,
// again from a fresh read when another write came in between.
func (s *Service) updatePasskey(ctx context.Context, person, id string, edit func(*Passkey) error) (before, after Passkey, err error) {
	for {
		pk, rev, err := s.passkeyOf(ctx, person, id)
		if err != nil {
			return Passkey{}, Passkey{}, err
		}
		next := pk
		if err := edit(&next); err != nil {
			return Passkey{}, Passkey{}, err
		}
		b, err := json.Marshal(next)
		if err != nil {
			return Passkey{}, Passkey{}, err
		}
		_, err = s.passkeys.Update(ctx, passkeyKey(person, id), b, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return Passkey{}, Passkey{}, err
		}
		return pk, next, nil
	}
}

// UsePasskey records a successful login with a passkey: the credential
// record as the login left it, the authenticator's sign count and backup
// state, and the time. A clone warning sticks once raised: only removing
// the passkey clears it. The login goes on the audit trail, and so does a
// new clone warning.
func (s *Service) UsePasskey(ctx context.Context, id string, cred json.RawMessage, signCount uint32, cloneWarning, backupState bool) (Passkey, error) {
	if len(cred) == 0 || !json.Valid(cred) {
		return Passkey{}, invalid("credential", "the credential record must be JSON")
	}
	found, _, err := s.passkeyByID(ctx, id)
	if err != nil {
		return Passkey{}, err
	}
	// An authenticator that counts its signatures counts up; a count that
	// did not grow means another copy of the key signed meanwhile, or this
	// assertion is a replay. The use is refused, and the passkey marked.
	if (signCount > 0 || found.SignCount > 0) && signCount <= found.SignCount {
		return Passkey{}, s.refuseStaleCount(ctx, found, signCount)
	}
	now := time.Now().UTC()
	before, pk, err := s.updatePasskey(ctx, found.Person, id, func(pk *Passkey) error {
		pk.Credential = cred
		pk.SignCount = signCount
		pk.CloneWarning = pk.CloneWarning || cloneWarning
		pk.BackupState = backupState
		pk.LastUsed = &now
		return nil
	})
	if err != nil {
		return Passkey{}, err
	}
	p, err := s.Person(ctx, pk.Person)
	if err != nil {
		return Passkey{}, err
	}
	s.auditAfter(ctx, AuditEvent{Action: ActionPersonLogin, Account: p.Account, AccountName: p.Name, Detail: "passkey " + pk.Name})
	if pk.CloneWarning && !before.CloneWarning {
		s.log.Warn("passkey sign count went back: it may have been cloned", "person", p.Name, "passkey", pk.Name)
		s.auditAfter(ctx, AuditEvent{Action: ActionPasskeyCloneWarning, Account: p.Account, AccountName: p.Name,
			Detail: fmt.Sprintf("passkey %s: sign count %d after %d", pk.Name, signCount, before.SignCount)})
	}
	return pk, nil
}

// refuseStaleCount marks a passkey whose sign count did not grow as
// possibly cloned and says why its use is refused.
func (s *Service) refuseStaleCount(ctx context.Context, found Passkey, signCount uint32) error {
	_, pk, err := s.updatePasskey(ctx, found.Person, found.ID, func(pk *Passkey) error {
		pk.CloneWarning = true
		return nil
	})
	if err != nil {
		return err
	}
	if p, err := s.Person(ctx, pk.Person); err == nil {
		s.log.Warn("passkey sign count did not grow: refused; it may have been cloned", "person", p.Name, "passkey", pk.Name)
		s.auditAfter(ctx, AuditEvent{Action: ActionPasskeyCloneWarning, Account: p.Account, AccountName: p.Name,
			Detail: fmt.Sprintf("passkey %s: sign count %d after %d; refused", pk.Name, signCount, found.SignCount)})
	}
	return errorf(ErrForbidden, "the passkey %q signed with a count that did not go up, so it may have been copied; it was not accepted. Log in with another passkey and remove this one", pk.Name)
}

// RenamePasskey renames a person's passkey.
func (s *Service) RenamePasskey(ctx context.Context, person, id, name string) (Passkey, error) {
	if err := ValidatePasskeyName(name); err != nil {
		return Passkey{}, err
	}
	p, err := s.Person(ctx, person)
	if err != nil {
		return Passkey{}, err
	}
	before, pk, err := s.updatePasskey(ctx, p.Name, id, func(pk *Passkey) error {
		pk.Name = name
		return nil
	})
	if err != nil {
		return Passkey{}, err
	}
	if before.Name != name {
		s.auditAfter(ctx, AuditEvent{Action: ActionPasskeyRename, Account: p.Account, AccountName: p.Name, Detail: before.Name + " → " + name})
	}
	return pk, nil
}

// RemovePasskey removes a person's passkey. A person keeps at least one:
// the last is refused, even when two removals race.
func (s *Service) RemovePasskey(ctx context.Context, person, id string) error {
	p, err := s.Person(ctx, person)
	if err != nil {
		return err
	}
	for {
		pks, err := s.passkeysOf(ctx, p.Name)
		if err != nil {
			return err
		}
		i := passkeyIndex(pks, id)
		if i < 0 {
			return passkeyNotFound()
		}
		pk := pks[i]
		lastOne := errorf(ErrInvalid, "%q is the only passkey of %s: the last passkey cannot be removed; add another first", pk.Name, p.Name)
		if len(pks) == 1 {
			return lastOne
		}
		cur, rev, err := s.passkeyOf(ctx, p.Name, id)
		if err != nil {
			return err
		}
		err = s.passkeys.Delete(ctx, passkeyKey(p.Name, id), jetstream.LastRevision(rev))
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // a login updated it meanwhile
		}
		if err != nil {
			return err
		}
		// Two removals can each see another passkey left and both go
		// ahead. So count again after the delete: if none is left, this
		// removal puts its passkey back and gives way.
		left, err := s.passkeysOf(ctx, p.Name)
		if err == nil && len(left) == 0 {
			err = putJSON(context.WithoutCancel(ctx), s.passkeys, passkeyKey(p.Name, id), cur)
			if err == nil {
				return lastOne
			}
		}
		if err != nil {
			return fmt.Errorf("remove passkey %q: %w", pk.Name, err)
		}
		if err := s.passkeys.Delete(ctx, credentialKey(id)); err != nil {
			s.log.Warn("removed passkey keeps its id index", "person", p.Name, "err", err)
		}
		s.auditAfter(ctx, AuditEvent{Action: ActionPasskeyRemove, Account: p.Account, AccountName: p.Name, Detail: pk.Name})
		return nil
	}
}

func passkeyIndex(pks []Passkey, id string) int {
	for i, pk := range pks {
		if pk.ID == id {
			return i
		}
	}
	return -1
}

// purgePasskeys removes every passkey of a person and the indexes to them,
// as when the person is deleted.
func (s *Service) purgePasskeys(ctx context.Context, p Person) error {
	pks, err := s.passkeysOf(ctx, p.Name)
	if err != nil {
		return err
	}
	for _, pk := range pks {
		for _, k := range []string{credentialKey(pk.ID), passkeyKey(p.Name, pk.ID)} {
			if err := s.passkeys.Purge(ctx, k); err != nil && !isNotFound(err) {
				return err
			}
		}
	}
	if p.Handle != "" {
		if err := s.passkeys.Purge(ctx, handleKey(p.Handle)); err != nil && !isNotFound(err) {
			return err
		}
	}
	return nil
}
