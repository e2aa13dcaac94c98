package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/latch-dev/latch/keys"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// EnrollOptions say where and as what a device enrolls.
type EnrollOptions struct {
	// URL is the latch server's web address, such as https://latch.example.com.
	URL string
	// Name is the device's name; default the host name.
	Name string
	// Platform is shown to the person approving; default GOOS/GOARCH.
	Platform string
	// Home is the folder the enrollment is written to; default DefaultHome.
	Home string
	// Force replaces an enrollment already in Home.
	Force bool
	// HTTPClient makes the requests; default one with a 30s timeout.
	HTTPClient *http.Client
	// CAFile is the CA that signed the server's certificate, when the
	// system does not trust it. The device keeps trusting it.
	CAFile string
	// CertFile and KeyFile are the device's client certificate, for a
	// server that asks NATS clients for one; the device keeps showing it.
	CertFile, KeyFile string
}

// Pending is an enrollment waiting for a person to approve it. Show
// UserCode or VerificationURIComplete to the person, and Fingerprint to
// compare with what the web page shows, then call Wait.
//
// The device's seed lives in memory only until Wait writes the creds: a
// seed without a JWT is of no use, the device code that could fetch the
// JWT dies with the process anyway, and so nothing is left on disk by an
// enrollment that is interrupted, denied or expires. Home is checked to be
// writable before the server is asked, because the server hands the JWT
// out once.
type Pending struct {
	UserCode                string // XXXX-XXXX
	VerificationURI         string // where to type the code
	VerificationURIComplete string // the same with the code filled in
	PublicKey               string // the device's new user key (U…)
	Fingerprint             string // the short form of PublicKey the web page shows
	Name                    string
	Expires                 time.Time     // when the code stops working
	Interval                time.Duration // how long Wait waits between polls

	opts       EnrollOptions
	kp         nkeys.KeyPair
	deviceCode string
}

// Errors of Wait for the ways an enrollment ends without a JWT.
var (
	ErrDenied  = errors.New("the enrollment was denied in the web GUI")
	ErrExpired = errors.New("the code expired before anyone approved it; start the enrollment again")
)

// slowDownStep is what a slow_down adds to the interval (RFC 8628 §3.5).
const slowDownStep = 5 * time.Second

// Enroll enrolls this device with the latch server at url under name, in
// the default home folder, and returns once a person has approved it.
// show is called first with the pending enrollment, to tell the person
// the code, the link and the key's fingerprint; nil shows nothing.
// StartEnroll and Pending.Wait do the same in two steps, with options.
func Enroll(ctx context.Context, url, name string, show func(*Pending)) (*Device, error) {
	p, err := StartEnroll(ctx, EnrollOptions{URL: url, Name: name})
	if err != nil {
		return nil, err
	}
	if show != nil {
		show(p)
	}
	return p.Wait(ctx)
}

// StartEnroll makes the device's nkey and asks the server to enroll it.
func StartEnroll(ctx context.Context, o EnrollOptions) (*Pending, error) {
	base, err := baseURL(o.URL)
	if err != nil {
		return nil, err
	}
	o.URL = base
	if o.Name == "" {
		if o.Name, err = os.Hostname(); err != nil || o.Name == "" {
			return nil, errors.New("no device name: the host name is unknown; give one with --name")
		}
	}
	if o.Platform == "" {
		o.Platform = runtime.GOOS + "/" + runtime.GOARCH
	}
	if o.Home == "" {
		if o.Home, err = DefaultHome(os.Getenv); err != nil {
			return nil, err
		}
	}
	if o.CAFile, err = absCA(o.CAFile); err != nil {
		return nil, err
	}
	if o.CertFile, o.KeyFile, err = absPair(o.CertFile, o.KeyFile); err != nil {
		return nil, err
	}
	if o.HTTPClient, err = httpClientFor(o.HTTPClient, o.CAFile); err != nil {
		return nil, err
	}
	if err := prepareHome(o.Home, o.Force); err != nil {
		return nil, err
	}

	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	pub, _ := kp.PublicKey()
	nonce := make([]byte, 24)
	rand.Read(nonce)
	n := base64.RawURLEncoding.EncodeToString(nonce)
	sig, err := kp.Sign([]byte("latch-enroll:" + n))
	if err != nil {
		kp.Wipe()
		return nil, err
	}
	var resp struct {
		DeviceCode              string `json:"device_code"`
		UserCode                string `json:"user_code"`
		VerificationURI         string `json:"verification_uri"`
		VerificationURIComplete string `json:"verification_uri_complete"`
		ExpiresIn               int    `json:"expires_in"`
		Interval                int    `json:"interval"`
	}
	_, err = post(ctx, o.HTTPClient, base+"/api/enroll/start", map[string]string{
		"public_key": pub, "name": o.Name, "platform": o.Platform,
		"nonce": n, "signature": base64.RawURLEncoding.EncodeToString(sig),
	}, &resp)
	if err != nil {
		kp.Wipe()
		return nil, fmt.Errorf("start enrollment at %s: %w", base, err)
	}
	if resp.DeviceCode == "" || resp.UserCode == "" {
		kp.Wipe()
		return nil, fmt.Errorf("start enrollment at %s: the answer has no device code or user code; is this a latch server?", base)
	}
	p := &Pending{
		UserCode: resp.UserCode, VerificationURI: resp.VerificationURI, VerificationURIComplete: resp.VerificationURIComplete,
		PublicKey: pub, Fingerprint: Fingerprint(pub), Name: o.Name,
		Expires:  time.Now().Add(time.Duration(resp.ExpiresIn) * time.Second),
		Interval: time.Duration(resp.Interval) * time.Second,
		opts:     o, kp: kp, deviceCode: resp.DeviceCode,
	}
	if p.Interval <= 0 {
		p.Interval = 5 * time.Second // RFC 8628 §3.2's default
	}
	if p.VerificationURIComplete == "" {
		p.VerificationURIComplete = p.VerificationURI
	}
	return p, nil
}

// Wait polls until the enrollment is approved, then writes the creds and
// client.json into the home folder and returns the device. It returns
// ErrDenied, ErrExpired, or ctx's error when ctx ends first; after any of
// them, and after success, the seed is wiped from memory.
func (p *Pending) Wait(ctx context.Context) (*Device, error) {
	if p.kp == nil {
		return nil, errors.New("this enrollment is over; start another")
	}
	defer func() { p.kp.Wipe(); p.kp = nil }()
	interval := p.Interval
	// The server says expired_token once the code expires; the local
	// deadline only stops a device whose server has gone away for good.
	deadline := p.Expires.Add(time.Minute)
	var lastErr error
	for {
		if time.Now().After(deadline) {
			if lastErr != nil {
				return nil, fmt.Errorf("%w (the server could not be asked: %v)", ErrExpired, lastErr)
			}
			return nil, ErrExpired
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		var ok pollResult
		status, err := post(ctx, p.opts.HTTPClient, p.opts.URL+"/api/enroll/poll", map[string]string{"device_code": p.deviceCode}, &ok)
		var ae *apiError
		switch {
		case err == nil:
			return p.finish(ok)
		case errors.As(err, &ae) && status == http.StatusBadRequest:
			switch ae.Code {
			case "authorization_pending":
				continue
			case "slow_down":
				interval += slowDownStep
				continue
			case "access_denied":
				return nil, ErrDenied
			case "expired_token":
				return nil, ErrExpired
			}
			return nil, fmt.Errorf("poll enrollment: %w", err)
		case errors.As(err, &ae) && status == http.StatusTooManyRequests:
			if ae.retryAfter > interval {
				interval = ae.retryAfter
			}
			continue
		case errors.As(err, &ae) && status < 500:
			return nil, fmt.Errorf("poll enrollment: %w", err)
		case ctx.Err() != nil:
			return nil, ctx.Err()
		}
		// A network error or a 5xx: the server may be restarting; keep
		// asking until the code would have expired.
		lastErr = err
	}
}

// pollResult is the answer of an approved poll.
type pollResult struct {
	JWT         string   `json:"jwt"`
	Account     string   `json:"account"`
	AccountName string   `json:"account_name"`
	Servers     []string `json:"servers"`
	TLSFirst    bool     `json:"tls_first"`
	ReleaseKey  string   `json:"release_key"`
	ExpiresAt   *string  `json:"expires_at"`
}

// finish checks the JWT is for this device's key and writes the enrollment.
func (p *Pending) finish(r pollResult) (*Device, error) {
	uc, err := jwt.DecodeUserClaims(r.JWT)
	if err != nil {
		return nil, fmt.Errorf("the server sent a JWT that is not a user JWT: %v", err)
	}
	if uc.Subject != p.PublicKey {
		return nil, fmt.Errorf("the server sent a JWT for key %s, not for this device's %s", uc.Subject, p.PublicKey)
	}
	if r.Account == "" {
		r.Account = uc.IssuerAccount
	}
	d := &Device{
		Home: p.opts.Home, CredsPath: filepath.Join(p.opts.Home, CredsFile),
		URL: p.opts.URL, Servers: r.Servers, TLSFirst: r.TLSFirst, ReleaseKey: r.ReleaseKey, Account: r.Account, Person: r.AccountName, Name: p.Name, PublicKey: p.PublicKey,
		CAFile: p.opts.CAFile, CertFile: p.opts.CertFile, KeyFile: p.opts.KeyFile,
	}
	if r.ExpiresAt != nil {
		at, err := time.Parse(time.RFC3339, *r.ExpiresAt)
		if err != nil {
			return nil, fmt.Errorf("the server sent an expiry that is not RFC 3339: %q", *r.ExpiresAt)
		}
		d.Expires = &at
	}
	seed, err := p.kp.Seed()
	if err != nil {
		return nil, err
	}
	creds, err := keys.FormatCreds(r.JWT, seed)
	wipe(seed)
	if err != nil {
		return nil, err
	}
	err = d.save(creds, p.opts.Force)
	wipe(creds)
	if err != nil {
		return nil, fmt.Errorf("device %s was enrolled but its creds could not be written: %v; ask to have it revoked and enroll again", p.PublicKey, err)
	}
	return d, nil
}

func wipe(b []byte) {
	for i := range b {
		b[i] = 'x'
	}
}

// apiError is an error answer of the enrollment API.
type apiError struct {
	Code        string `json:"error"`
	Description string `json:"error_description"`
	status      int
	retryAfter  time.Duration
}

func (e *apiError) Error() string {
	switch {
	case e.Description != "" && e.Code != "":
		return e.Description + " (" + e.Code + ")"
	case e.Description != "":
		return e.Description
	case e.Code != "":
		return e.Code
	}
	return "the server answered " + strconv.Itoa(e.status)
}

// post sends body as JSON and decodes a 200 answer into out. Any other
// answer is an *apiError, or a plain error when it is not the API's JSON.
func post(ctx context.Context, hc *http.Client, u string, body, out any) (int, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "latch-client ("+runtime.GOOS+"/"+runtime.GOARCH+")")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("the answer from %s is not the JSON expected: %v", u, err)
		}
		return resp.StatusCode, nil
	}
	ae := &apiError{status: resp.StatusCode}
	if json.Unmarshal(raw, ae) != nil || ae.Code == "" {
		return resp.StatusCode, fmt.Errorf("%s answered %s; is this a latch server?", u, resp.Status)
	}
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		ae.retryAfter = time.Duration(secs) * time.Second
	}
	return resp.StatusCode, ae
}

// baseURL checks the server's URL and drops a trailing slash.
func baseURL(s string) (string, error) {
	if s == "" {
		return "", errors.New("the server's URL is missing; give it with --url, such as --url https://latch.example.com")
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not a web address; give it as http(s)://host[:port]", s)
	}
	return strings.TrimSuffix(u.Scheme+"://"+u.Host+u.Path, "/"), nil
}
