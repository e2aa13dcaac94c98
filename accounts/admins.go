package accounts

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/latch-dev/latch/operator"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// AdminCreds is one admin's creds: a user of LATCH_ADMIN. Each human admin
// holds their own, so that each can be revoked alone and the audit trail
// names who did what.
type AdminCreds struct {
	Name      string    `json:"name"`
	PublicKey string    `json:"public_key"`
	Created   time.Time `json:"created"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Revoked reports whether the creds were revoked.
func (a AdminCreds) Revoked() bool { return !a.RevokedAt.IsZero() }

// RegisterFirstAdmin records the admin creds that init made, once.
func (s *Service) RegisterFirstAdmin(ctx context.Context, userPub string) error {
	if userPub == "" {
		return nil
	}
	err := createJSON(ctx, s.admins, userPub, AdminCreds{Name: operator.FirstAdminName, PublicKey: userPub, Created: time.Now().UTC()})
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("register the first admin: %w", err)
	}
	return nil
}

// IssueAdminCreds signs a user JWT of LATCH_ADMIN for userPub, a user
// public key the caller made (its seed never reaches the server), and
// records it under name. It returns the JWT.
func (s *Service) IssueAdminCreds(ctx context.Context, name, userPub string) (string, AdminCreds, error) {
	if err := ValidatePersonName(name); err != nil {
		return "", AdminCreds{}, err
	}
	if !nkeys.IsValidPublicUserKey(userPub) {
		return "", AdminCreds{}, invalid("public_key", "%q is not a user public key (U…)", userPub)
	}
	if s.cfg.AdminSigner == nil {
		return "", AdminCreds{}, errorf(ErrInvalid, "this server has no LATCH_ADMIN signing key")
	}
	all, err := s.AdminCreds(ctx)
	if err != nil {
		return "", AdminCreds{}, err
	}
	for _, a := range all {
		if a.Name == name && !a.Revoked() {
			return "", AdminCreds{}, errorf(ErrExists, "admin creds named %q exist; revoke them first or choose another name", name)
		}
		if a.PublicKey == userPub {
			return "", AdminCreds{}, errorf(ErrExists, "the key %s was issued before; make a new key", userPub)
		}
	}
	tok, err := operator.AdminUserJWT(s.cfg.AdminSigner, s.cfg.AdminAccount, userPub, name)
	if err != nil {
		return "", AdminCreds{}, err
	}
	a := AdminCreds{Name: name, PublicKey: userPub, Created: time.Now().UTC()}
	if err := createJSON(ctx, s.admins, userPub, a); err != nil {
		return "", AdminCreds{}, fmt.Errorf("record admin creds: %w", err)
	}
	s.auditAfter(ctx, AuditEvent{Action: ActionAdminCredsIssue, DeviceName: name, Device: userPub})
	return tok, a, nil
}

// AdminCreds lists every admin creds issued, revoked ones too, oldest
// first.
func (s *Service) AdminCreds(ctx context.Context) ([]AdminCreds, error) {
	all, _, err := listJSON[AdminCreds](ctx, s.admins, ">")
	if err != nil {
		return nil, err
	}
	slices.SortFunc(all, func(a, b AdminCreds) int { return a.Created.Compare(b.Created) })
	return all, nil
}

// adminByKey returns the admin creds of a user key.
func (s *Service) adminByKey(ctx context.Context, userPub string) (AdminCreds, error) {
	var a AdminCreds
	if _, err := getJSON(ctx, s.admins, userPub, &a); err != nil {
		if isNotFound(err) {
			return a, errorf(ErrNotFound, "no admin creds with the key %s", userPub)
		}
		return a, err
	}
	return a, nil
}

// RevokeAdminCreds revokes the live admin creds named name: their key goes
// into LATCH_ADMIN's revocations, which closes their connections at once.
func (s *Service) RevokeAdminCreds(ctx context.Context, name string) (AdminCreds, error) {
	all, err := s.AdminCreds(ctx)
	if err != nil {
		return AdminCreds{}, err
	}
	i := slices.IndexFunc(all, func(a AdminCreds) bool { return a.Name == name && !a.Revoked() })
	if i < 0 {
		return AdminCreds{}, errorf(ErrNotFound, "no live admin creds named %q; see `latch admin creds ls`", name)
	}
	a := all[i]
	now := time.Now().UTC()
	err = s.update(s.cfg.AdminAccount, func(ac *jwt.AccountClaims) error {
		ac.RevokeAt(a.PublicKey, now)
		return nil
	})
	if err != nil {
		return AdminCreds{}, fmt.Errorf("revoke admin creds %s: %w", name, err)
	}
	a.RevokedAt = now
	if err := putJSON(ctx, s.admins, a.PublicKey, a); err != nil {
		return AdminCreds{}, fmt.Errorf("record the revocation of %s (it is in force): %w", name, err)
	}
	s.auditAfter(ctx, AuditEvent{Action: ActionAdminCredsRevoke, DeviceName: name, Device: a.PublicKey})
	return a, nil
}
