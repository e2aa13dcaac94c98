package accounts

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Invites let someone sign up. An invite is a link holding a random token;
// the invites bucket keeps only the token's SHA-256 (hex) as the key, so
// reading the bucket does not let anyone sign up. The bucket's TTL drops
// an invite when it expires.

// InviteTTL is how long an invite link works.
const InviteTTL = 7 * 24 * time.Hour

// Invite is a one-time sign-up link, without its token.
type Invite struct {
	// ID is the first 8 hex digits of the token's hash: enough to tell
	// invites apart in a list and revoke one, useless to sign up with.
	ID    string `json:"id"`
	Admin bool   `json:"admin"` // whoever signs up with it becomes an admin
	// Setup marks the first-run invite that `latch serve` prints; it works
	// only while no admin has a passkey. Node is the node that printed
	// it: each node of a cluster has its own.
	Setup bool   `json:"setup,omitempty"`
	Node  string `json:"node,omitempty"`
	// For names an existing person: whoever opens the link adds a passkey
	// to that person, and signs in as them, instead of signing up.
	// Recover marks such a link made for a person who had a passkey.
	For       string    `json:"for,omitempty"`
	Recover   bool      `json:"recover,omitempty"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	CreatedBy string    `json:"created_by"`
}

func inviteKey(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

func inviteNotFound() error {
	return errorf(ErrNotFound, "this invite link is not valid: it was used, it expired, or it was never made; ask an admin for a new one")
}

// InviteLink is the link of an invite token under Config.PublicURL, or ""
// when the service has no public URL.
func (s *Service) InviteLink(token string) string {
	if s.cfg.PublicURL == "" {
		return ""
	}
	return strings.TrimRight(s.cfg.PublicURL, "/") + "/invite/" + token
}

// CreateInvite makes an invite and returns its token, which is shown
// once: only its hash is kept. The audit trail names the invite by its ID.
func (s *Service) CreateInvite(ctx context.Context, admin bool) (string, Invite, error) {
	return s.newInvite(ctx, Invite{Admin: admin})
}

// newInvite stores inv, its ID and times filled in, under a new token.
func (s *Service) newInvite(ctx context.Context, inv Invite) (string, Invite, error) {
	token := base64.RawURLEncoding.EncodeToString(randomBytes(32))
	key := inviteKey(token)
	now := time.Now().UTC()
	inv.ID, inv.Created, inv.Expires, inv.CreatedBy = key[:8], now, now.Add(InviteTTL), actorOf(ctx).Name
	if err := createJSON(ctx, s.invites, key, inv); err != nil {
		return "", Invite{}, fmt.Errorf("create invite: %w", err)
	}
	// Like a device's JWT, the token is handed out only once the audit
	// trail has the invite.
	if err := s.audit(ctx, AuditEvent{Action: ActionInviteCreate, Detail: inviteDetail(inv)}); err != nil {
		s.invites.Purge(context.WithoutCancel(ctx), key)
		return "", Invite{}, fmt.Errorf("create invite: audit: %w", err)
	}
	return token, inv, nil
}

func inviteDetail(inv Invite) string {
	kind := "member"
	switch {
	case inv.Setup:
		kind = "setup"
	case inv.For != "" && inv.Recover:
		kind = "passkey for " + inv.For + ", who had one"
	case inv.For != "":
		kind = "passkey for " + inv.For
	case inv.Admin:
		kind = "admin"
	}
	return "invite " + inv.ID + " (" + kind + ")"
}

func (s *Service) inviteByToken(ctx context.Context, token string) (Invite, uint64, error) {
	if token == "" {
		return Invite{}, 0, inviteNotFound()
	}
	var inv Invite
	rev, err := getJSON(ctx, s.invites, inviteKey(token), &inv)
	if isNotFound(err) {
		return Invite{}, 0, inviteNotFound()
	}
	if err != nil {
		return Invite{}, 0, err
	}
	if !time.Now().Before(inv.Expires) {
		return Invite{}, 0, inviteNotFound()
	}
	return inv, rev, nil
}

// Invite returns the invite of a token, without using it up. A setup
// invite is refused once an admin has a passkey, so a first-run link left
// in a log stops working when it is no longer needed; an invite for a
// person, once that person is gone or disabled.
func (s *Service) Invite(ctx context.Context, token string) (Invite, error) {
	inv, _, err := s.inviteByToken(ctx, token)
	if err != nil {
		return Invite{}, err
	}
	if inv.Setup {
		need, err := s.NeedsSetup(ctx)
		if err != nil {
			return Invite{}, err
		}
		if !need {
			return Invite{}, inviteNotFound()
		}
	}
	if inv.For != "" {
		p, err := s.Person(ctx, inv.For)
		if errors.Is(err, ErrNotFound) || err == nil && p.Status != StatusActive {
			return Invite{}, inviteNotFound()
		}
		if err != nil {
			return Invite{}, err
		}
	}
	return inv, nil
}

// NeedsSetup reports whether no admin can log in to the web GUI: no
// person with the admin role has a passkey. While so, `latch serve`
// prints a setup link at every start.
func (s *Service) NeedsSetup(ctx context.Context) (bool, error) {
	ps, err := s.Persons(ctx)
	if err != nil {
		return false, err
	}
	for _, p := range ps {
		if p.Role != RoleAdmin || p.Status != StatusActive {
			continue
		}
		pks, err := s.passkeysOf(ctx, p.Name)
		if err != nil {
			return false, err
		}
		if len(pks) > 0 {
			return false, nil
		}
	}
	return true, nil
}

// CreateInviteFor makes an invite that adds a passkey to an existing
// person, such as one made with `latch account add`, who then signs in as
// themselves. For a person who has a passkey already it is refused unless
// recover is set: whoever opens such a link can sign in as that person.
// The token is shown once; the audit trail names the invite and the
// person.
func (s *Service) CreateInviteFor(ctx context.Context, person string, recover bool) (string, Invite, error) {
	p, err := s.Person(ctx, person)
	if err != nil {
		return "", Invite{}, err
	}
	if p.Status != StatusActive {
		return "", Invite{}, errorf(ErrDisabled, "account %q is %s; enable it first", p.Name, p.Status)
	}
	pks, err := s.passkeysOf(ctx, p.Name)
	if err != nil {
		return "", Invite{}, err
	}
	if len(pks) > 0 && !recover {
		return "", Invite{}, errorf(ErrExists, "%s has %d passkey(s) already and can sign in; to let them add one after losing theirs, make a recovery link (--recover): whoever opens it can sign in as %s", p.Name, len(pks), p.Name)
	}
	return s.newInvite(ctx, Invite{For: p.Name, Recover: len(pks) > 0})
}

// ConsumeInvite uses up an invite: of any number of calls with one token,
// one at most succeeds. It does not check a setup invite against the
// persons, so the caller may create the person before or after.
func (s *Service) ConsumeInvite(ctx context.Context, token string) (Invite, error) {
	inv, rev, err := s.inviteByToken(ctx, token)
	if err != nil {
		return Invite{}, err
	}
	// The delete holds only if nobody deleted the invite since it was read.
	err = s.invites.Delete(ctx, inviteKey(token), jetstream.LastRevision(rev))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return Invite{}, inviteNotFound()
	}
	if err != nil {
		return Invite{}, err
	}
	s.auditAfter(ctx, AuditEvent{Action: ActionInviteConsume, Detail: inviteDetail(inv)})
	return inv, nil
}

// Invites returns the invites that still work, oldest first.
func (s *Service) Invites(ctx context.Context) ([]Invite, error) {
	invs, _, err := s.allInvites(ctx)
	return invs, err
}

// allInvites returns the unexpired invites and their keys.
func (s *Service) allInvites(ctx context.Context) ([]Invite, []string, error) {
	all, allKeys, err := listJSON[Invite](ctx, s.invites, ">")
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	var invs []Invite
	var keys []string
	for i, inv := range all {
		if allKeys[i] != setupPointer && now.Before(inv.Expires) {
			invs = append(invs, inv)
			keys = append(keys, allKeys[i])
		}
	}
	sort.Sort(byCreated{invs, keys})
	return invs, keys, nil
}

type byCreated struct {
	invs []Invite
	keys []string
}

func (b byCreated) Len() int           { return len(b.invs) }
func (b byCreated) Less(i, j int) bool { return b.invs[i].Created.Before(b.invs[j].Created) }
func (b byCreated) Swap(i, j int) {
	b.invs[i], b.invs[j] = b.invs[j], b.invs[i]
	b.keys[i], b.keys[j] = b.keys[j], b.keys[i]
}

// RevokeInvite makes the invite with an ID stop working.
func (s *Service) RevokeInvite(ctx context.Context, id string) error {
	invs, keys, err := s.allInvites(ctx)
	if err != nil {
		return err
	}
	found := false
	for i, inv := range invs {
		if inv.ID != strings.ToLower(id) {
			continue
		}
		if err := s.invites.Delete(ctx, keys[i]); err != nil {
			return err
		}
		found = true
		s.auditAfter(ctx, AuditEvent{Action: ActionInviteRevoke, Detail: inviteDetail(inv)})
	}
	if !found {
		return errorf(ErrNotFound, "no invite %q; it may have been used or have expired", id)
	}
	return nil
}

// SetupInvite makes the first-run invite while no admin has a passkey
// (NeedsSetup): an admin invite whose link `latch serve` prints. The
// setup invites this node made before stop working, so only the link it
// printed last does; in a cluster each node's last link works, whichever
// node printed its own last. When an admin can log in it makes nothing
// and ok is false.
func (s *Service) SetupInvite(ctx context.Context) (token string, ok bool, err error) {
	need, err := s.NeedsSetup(ctx)
	if err != nil || !need {
		return "", false, err
	}
	invs, keys, err := s.allInvites(ctx)
	if err != nil {
		return "", false, err
	}
	for i, inv := range invs {
		if inv.Setup && (inv.Node == s.cfg.Node || inv.Node == "") {
			if err := s.invites.Delete(ctx, keys[i]); err != nil {
				return "", false, err
			}
		}
	}
	token, _, err = s.newInvite(ctx, Invite{Admin: true, Setup: true, Node: s.cfg.Node})
	if err != nil {
		return "", false, err
	}
	return token, true, nil
}

// setupPointer is a key of the invites bucket in which earlier versions
// kept the key of the one setup invite; it is no invite.
const setupPointer = "setup"

// consumeSetupInvite removes every node's setup invites.
func (s *Service) consumeSetupInvite(ctx context.Context) error {
	invs, keys, err := s.allInvites(ctx)
	if err != nil {
		return err
	}
	for i, inv := range invs {
		if inv.Setup {
			if err := s.invites.Purge(ctx, keys[i]); err != nil && !isNotFound(err) {
				return err
			}
		}
	}
	if _, err := s.invites.Get(ctx, setupPointer); err == nil {
		return s.invites.Purge(ctx, setupPointer)
	}
	return nil
}
