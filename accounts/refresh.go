package accounts

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/jwt/v2"
)

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
		if p.Status == StatusActive && p.BucketVersion < s.wantBucket() {
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
		// Accounts made before the records history get room for it, and
		// on more nodes the tier of the records' replicas.
		short := t.name != "" && tiersShort(ac, t.disk, s.cfg.Replicas)
		// Accounts made before the device API or the release
		// announcements get their imports.
		noAPI := t.name != "" && s.cfg.AppAccount != "" && !hasLatchImports(ac, s.cfg.AppAccount)
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
				if tiersShort(ac, t.disk, s.cfg.Replicas) {
					r1 := ac.Limits.JetStreamTieredLimits["R1"]
					setTiers(ac, t.disk, r1.MemoryStorage, r1.Consumer, s.cfg.Replicas)
				}
				if s.cfg.AppAccount != "" && !hasLatchImports(ac, s.cfg.AppAccount) {
					setLatchImports(ac, s.cfg.AppAccount)
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
