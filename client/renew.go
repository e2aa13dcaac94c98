package client

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/latch-dev/latch/keys"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// Errors of Renew.
var (
	// ErrRevoked: the device's key was revoked, for good.
	ErrRevoked = errors.New("this device was revoked; enroll it again with `latch client enroll`")
	// ErrRenewRefused: the server will not renew the JWT for another
	// reason it gives (the device is unknown to it, its JWT expired too
	// long ago, its person's account is disabled).
	ErrRenewRefused = errors.New("the server refused to renew this device's JWT")
	// ErrDisabled: the person's account is disabled; an admin enables it.
	// It comes with ErrRenewRefused from a renewal.
	ErrDisabled = errors.New("this device's account is disabled; ask an admin to enable it")
)

// Renew asks the latch server for a fresh JWT for the device's key, before
// the one it has expires, and writes it into the creds file (and into
// client.json, when that describes this device). The request carries the
// current JWT and a signature by the device's key over "latch-renew:" and
// a fresh nonce, as enrollment does; a revoked key gets ErrRevoked.
func (d *Device) Renew(ctx context.Context) error {
	s, err := loadSession(d.CredsPath, d.PublicKey)
	if err != nil {
		return err
	}
	res, err := d.renewSession(ctx, s)
	if err != nil {
		return err
	}
	d.renewed(res, s.expires())
	return nil
}

// renewResult is the answer to a renewal: the same as an approved
// enrollment poll's.
type renewResult = pollResult

// renewSession renews s's JWT, writes it, and puts it in s. It leaves d
// as it is, since a connection may be reading it.
func (d *Device) renewSession(ctx context.Context, s *session) (renewResult, error) {
	if d.URL == "" {
		return renewResult{}, fmt.Errorf("the latch server's web address is unknown, so the JWT cannot be renewed; %s has no url", filepath.Join(d.Home, ConfigFile))
	}
	base, err := baseURL(d.URL)
	if err != nil {
		return renewResult{}, err
	}
	tok, _ := s.current()
	nonce := make([]byte, 24)
	rand.Read(nonce)
	n := base64.RawURLEncoding.EncodeToString(nonce)
	sig, err := s.kp.Sign([]byte("latch-renew:" + n))
	if err != nil {
		return renewResult{}, err
	}
	hc, err := httpClientFor(d.HTTPClient, d.CAFile)
	if err != nil {
		return renewResult{}, err
	}
	var res renewResult
	status, err := post(ctx, hc, base+"/api/devices/renew", map[string]string{
		"jwt": tok, "nonce": n, "signature": base64.RawURLEncoding.EncodeToString(sig),
	}, &res)
	var ae *apiError
	switch {
	case err == nil:
	case status == http.StatusForbidden && errors.As(err, &ae) && ae.Code == "disabled":
		return renewResult{}, fmt.Errorf("%w (%w: %v)", ErrDisabled, ErrRenewRefused, ae)
	case status == http.StatusForbidden && errors.As(err, &ae) && ae.Code != "revoked":
		// unknown_device, expired_token, disabled: the server says what to do.
		return renewResult{}, fmt.Errorf("%w: %v", ErrRenewRefused, ae)
	case status == http.StatusForbidden:
		return renewResult{}, ErrRevoked
	case status == http.StatusNotFound || status == http.StatusMethodNotAllowed:
		return renewResult{}, fmt.Errorf("renew at %s: the server does not renew devices (it answered %d); it may be older than this client", base, status)
	default:
		return renewResult{}, fmt.Errorf("renew at %s: %w", base, err)
	}
	uc, err := jwt.DecodeUserClaims(res.JWT)
	if err != nil {
		return renewResult{}, fmt.Errorf("the server sent a JWT that is not a user JWT: %v", err)
	}
	if uc.Subject != s.pub {
		return renewResult{}, fmt.Errorf("the server sent a JWT for key %s, not for this device's %s", uc.Subject, s.pub)
	}
	seed, err := s.kp.Seed() // the key pair's own bytes: not to be wiped
	if err != nil {
		return renewResult{}, err
	}
	creds, err := keys.FormatCreds(res.JWT, seed)
	if err != nil {
		return renewResult{}, err
	}
	err = keys.WriteFileReplace(d.CredsPath, creds)
	wipe(creds)
	if err != nil {
		return renewResult{}, fmt.Errorf("the JWT was renewed but could not be written: %v", err)
	}
	s.set(res.JWT, uc)
	return res, d.saveConfig(res, s.expires())
}

// renewed takes what a renewal answered: the JWT's expiry, and the
// account, person and servers where the server named them.
func (d *Device) renewed(res renewResult, expires *time.Time) {
	d.Expires = expires
	if res.Account != "" {
		d.Account = res.Account
	}
	if res.AccountName != "" {
		d.Person = res.AccountName
	}
	if len(res.Servers) > 0 {
		d.Servers, d.TLSFirst = res.Servers, res.TLSFirst
	}
	// A device enrolled before releases learns the key once; a key it
	// holds is never replaced by a renewal.
	if d.ReleaseKey == "" {
		d.ReleaseKey = res.ReleaseKey
	}
}

// saveConfig brings client.json up to date after a renewal, when it
// describes this device. It starts from the file rather than from d, so
// overrides such as --server are never written.
func (d *Device) saveConfig(res renewResult, expires *time.Time) error {
	path := filepath.Join(d.Home, ConfigFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil // a device from a creds file alone has no client.json
	}
	var cfg Device
	if json.Unmarshal(b, &cfg) != nil || cfg.PublicKey != d.PublicKey {
		return nil
	}
	cfg.renewed(res, expires)
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return keys.WriteFileReplace(path, append(out, '\n'))
}

// session is the device's key and its current JWT, which renewals
// replace while a connection uses them.
type session struct {
	path string // the creds file
	pub  string
	kp   nkeys.KeyPair

	mu  sync.Mutex
	jwt string
	uc  *jwt.UserClaims
}

func loadSession(credsPath, wantPub string) (*session, error) {
	c, err := keys.ReadCreds(credsPath)
	if err != nil {
		return nil, err
	}
	uc, err := jwt.DecodeUserClaims(c.JWT)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", credsPath, err)
	}
	if wantPub != "" && uc.Subject != wantPub {
		return nil, fmt.Errorf("%s is for key %s, not for this device's %s", credsPath, uc.Subject, wantPub)
	}
	kp, err := nkeys.FromSeed(c.Seed)
	wipe(c.Seed)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", credsPath, err)
	}
	return &session{path: credsPath, pub: uc.Subject, kp: kp, jwt: c.JWT, uc: uc}, nil
}

func (s *session) current() (string, *jwt.UserClaims) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jwt, s.uc
}

func (s *session) set(tok string, uc *jwt.UserClaims) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jwt, s.uc = tok, uc
}

// jwtCB and signCB are the connection's credentials, read at every
// (re)connect, so a renewed JWT is used from the next one on.
func (s *session) jwtCB() (string, error) {
	tok, _ := s.current()
	return tok, nil
}

func (s *session) signCB(nonce []byte) ([]byte, error) { return s.kp.Sign(nonce) }

// expires is the JWT's expiry; nil is never.
func (s *session) expires() *time.Time {
	_, uc := s.current()
	if uc.Expires == 0 {
		return nil
	}
	t := time.Unix(uc.Expires, 0).UTC()
	return &t
}

// renewAt is when the JWT is due for renewal: when a third of its
// lifetime is left. The zero time means never.
func (s *session) renewAt() time.Time {
	_, uc := s.current()
	return renewAt(uc)
}

func renewAt(uc *jwt.UserClaims) time.Time {
	if uc.Expires == 0 {
		return time.Time{}
	}
	life := uc.Expires - uc.IssuedAt
	return time.Unix(uc.Expires-life/3, 0)
}

func (s *session) due(now time.Time) bool {
	at := s.renewAt()
	return !at.IsZero() && !now.Before(at)
}

func (s *session) expired(now time.Time) bool {
	exp := s.expires()
	return exp != nil && !now.Before(*exp)
}

// adoptFile takes the creds file's JWT when another process (a second
// `latch client` command, say) has renewed it meanwhile. It reports
// whether it did.
func (s *session) adoptFile() bool {
	c, err := keys.ReadCreds(s.path)
	if err != nil {
		return false
	}
	uc, err := jwt.DecodeUserClaims(c.JWT)
	wipe(c.Seed)
	if err != nil || uc.Subject != s.pub {
		return false
	}
	_, cur := s.current()
	if uc.Expires == 0 && cur.Expires != 0 || uc.Expires > cur.Expires {
		s.set(c.JWT, uc)
		return true
	}
	return false
}

// renewLoop renews the JWT when it is due, for as long as the Records
// live, and has the connection take the new one at once: the server
// closes a connection when the JWT it connected with expires.
func (r *Records) renewLoop(ctx context.Context) {
	defer close(r.done)
	retry := time.Duration(0)
	for {
		at := r.sess.renewAt()
		if at.IsZero() {
			return // the JWT never expires
		}
		wait := time.Until(at)
		if retry > 0 {
			wait = retry
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		var err error
		if !r.sess.adoptFile() {
			_, err = r.dev.renewSession(ctx, r.sess)
		}
		switch {
		case err == nil:
			retry = 0
			r.log.Info("renewed the device's JWT", "expires", r.sess.expires())
			// The connection still runs on the old JWT; reconnect now
			// with the new one rather than be cut off when the old expires.
			if err := r.nc.ForceReconnect(); err != nil {
				r.log.Warn("could not reconnect with the renewed JWT", "err", err)
			}
		case ctx.Err() != nil:
			return
		case errors.Is(err, ErrRevoked) || errors.Is(err, ErrRenewRefused):
			r.log.Error("the device's JWT was not renewed", "err", err)
			r.fail(err)
			return
		default:
			// The server may be away for a while: try again, more often
			// as the expiry nears.
			retry = time.Until(*r.sess.expires()) / 10
			retry = min(max(retry, 5*time.Second), 5*time.Minute)
			r.log.Warn("could not renew the device's JWT; trying again", "err", err, "in", retry)
		}
	}
}
