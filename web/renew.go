package web

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// Renewal is part of the device API (a public protocol, like enrollment):
// a device sends its current JWT and proves it holds the key's seed, and
// gets a fresh JWT for the same key with the same lifetime.
//
//	POST /api/devices/renew
//	{"jwt": "<the device's user JWT>", "nonce": "<16 to 256 characters>",
//	 "signature": "<base64url, no padding, of the device key's ed25519
//	               signature over the bytes of \"latch-renew:\"+nonce>"}
//
//	200 {"jwt", "account", "account_name", "servers": [...], "tls_first": true (or absent), "expires_at": RFC 3339 or null}
//	400 {"error": "invalid_request"}   malformed, not a device's user JWT, bad nonce or signature
//	403 {"error": "revoked"}           the key was revoked: enroll again with a new key
//	403 {"error": "unknown_device"}    latch does not know the key (or its person was deleted)
//	403 {"error": "expired_token"}     the JWT expired more than 24 hours ago
//	403 {"error": "disabled"}          the person's account is disabled
//	403 {"error": "not_renewable"}     downloaded creds: they last as long as they said; download new ones
//	429 {"error": "slow_down"}         too many renewals from this address; see Retry-After
//
// The JWT may have expired up to accounts.RenewGrace (24 hours) ago, so a
// machine that slept through its expiry comes back on its own.

const (
	// renewSigPrefix is what a device signs before its nonce, so that a
	// renewal proof is never taken for an enrollment proof or the reverse.
	renewSigPrefix = "latch-renew:"
	// maxRenewBody is the largest renewal body: a user JWT is under 1 KiB.
	maxRenewBody = 8 << 10
)

// renewRequest is the body of POST /api/devices/renew.
type renewRequest struct {
	JWT       string `json:"jwt"`
	Nonce     string `json:"nonce"`
	Signature string `json:"signature"`
}

// renewRefused is a 403 of the renewal API.
func renewRefused(code, msg string) error {
	return &httpError{status: http.StatusForbidden, code: code, msg: msg}
}

// checkRenewProof reads the device's JWT and checks the signature over
// "latch-renew:"+nonce with the JWT's subject key. It checks the JWT's
// shape, not who signed it: RenewDevice looks the key up in the account,
// and a JWT made up by someone else gets them nothing without the seed.
func checkRenewProof(req renewRequest, now time.Time) (*jwt.UserClaims, error) {
	if req.JWT == "" {
		return nil, badEnroll("jwt is missing: send the device's current user JWT")
	}
	uc, err := jwt.DecodeUserClaims(req.JWT)
	if err != nil {
		// The decoder's own words name Go types; say it plainly.
		return nil, badEnroll("jwt is not a user JWT signed by its issuer: send the JWT from the device's creds, unchanged")
	}
	if !nkeys.IsValidPublicAccountKey(uc.IssuerAccount) || !nkeys.IsValidPublicAccountKey(uc.Issuer) || uc.Issuer == uc.IssuerAccount {
		return nil, badEnroll("jwt was not issued to a device by latch: a device's JWT is signed by its account's device key and names the account")
	}
	if !nkeys.IsValidPublicUserKey(uc.Subject) {
		return nil, badEnroll("jwt's subject is not a user public key")
	}
	if n := len([]rune(req.Nonce)); n < minNonce || n > maxNonce {
		return nil, badEnroll("nonce must be %d to %d characters, got %d", minNonce, maxNonce, n)
	}
	if req.Signature == "" {
		return nil, badEnroll("signature is missing: sign \"latch-renew:\"+nonce with the device key and send it base64url-encoded")
	}
	sig, err := b64.DecodeString(strings.TrimRight(req.Signature, "="))
	if err != nil {
		return nil, badEnroll("signature is not base64url (RFC 4648 §5, no padding)")
	}
	kp, err := nkeys.FromPublicKey(uc.Subject)
	if err != nil {
		return nil, badEnroll("jwt's subject is not a user public key")
	}
	if err := kp.Verify([]byte(renewSigPrefix+req.Nonce), sig); err != nil {
		return nil, badEnroll("signature does not verify: it must be the signature of the key the JWT is for over the bytes of \"latch-renew:\"+nonce")
	}
	if uc.Expires != 0 {
		exp := time.Unix(uc.Expires, 0)
		if now.After(exp.Add(accounts.RenewGrace)) {
			return nil, renewRefused("expired_token", "this device's JWT expired at "+exp.UTC().Format(time.RFC3339)+
				", more than 24 hours ago; enroll it again")
		}
	}
	return uc, nil
}

// handleDeviceRenew is POST /api/devices/renew: a device asks for a fresh
// JWT before (or shortly after) its own expires.
func (s *Server) handleDeviceRenew(w http.ResponseWriter, r *http.Request) {
	if !s.limit(w, r, limitRenew, clientAddr(r)) {
		return
	}
	var req renewRequest
	if err := readJSONBody(w, r, maxRenewBody, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	uc, err := checkRenewProof(req, s.cfg.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx := accounts.WithActor(r.Context(), accounts.Actor{Name: "device", From: clientAddr(r)})
	d, tok, err := s.cfg.Accounts.RenewDevice(ctx, uc.IssuerAccount, uc.Subject)
	switch {
	case err == nil:
	case errors.Is(err, accounts.ErrRevoked):
		err = renewRefused("revoked", "this device was revoked; enroll it again")
	case errors.Is(err, accounts.ErrNotFound):
		err = renewRefused("unknown_device", "this device is not known to latch (it was removed, or its person deleted); enroll it again")
	case errors.Is(err, accounts.ErrExpired):
		err = renewRefused("expired_token", err.Error())
	case errors.Is(err, accounts.ErrDisabled):
		err = renewRefused("disabled", "this device's account is disabled; ask an admin")
	case errors.Is(err, accounts.ErrForbidden):
		err = renewRefused("not_renewable", err.Error())
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.deviceJWT(tok, d.Account, d.AccountName, d.Expires))
}
