package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/qr"
	"github.com/latch-dev/latch/views"
	"github.com/nats-io/nkeys"
)

// Device enrollment is RFC 8628's device authorization grant with a key the
// device made itself. The API half (/api/enroll/*) is a public protocol,
// JSON both ways, spoken by `latch client enroll` and any other client;
// the GUI half is where a logged-in person types the code, checks the
// device and approves it with a fresh passkey check.

// Enrollment API limits.
const (
	// maxEnrollBody is the largest body the enrollment API reads: a public
	// key, a name, a platform, a nonce and a signature fit in far less.
	maxEnrollBody = 4 << 10
	// Nonces are chosen by the device; 16 characters at least, so a
	// careless client does not sign something short and guessable.
	minNonce, maxNonce = 16, 256
	// enrollSigPrefix is what a device signs before its nonce, so the
	// signature cannot be taken for one over anything else.
	enrollSigPrefix = "latch-enroll:"
)

// enrollStartRequest is the body of POST /api/enroll/start.
type enrollStartRequest struct {
	PublicKey string `json:"public_key"`
	Name      string `json:"name"`
	Platform  string `json:"platform"`
	Nonce     string `json:"nonce"`
	Signature string `json:"signature"`
}

// enrollStartResponse is RFC 8628 §3.2's device authorization response.
type enrollStartResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

// enrollPollRequest is the body of POST /api/enroll/poll.
type enrollPollRequest struct {
	DeviceCode string `json:"device_code"`
}

// enrollPollResponse is what a device gets once approved, and again on
// each renewal (see deviceJWT). The account is the person account's
// public key (A…); ExpiresAt is RFC 3339 or null when the JWT never
// expires.
type enrollPollResponse struct {
	JWT     string `json:"jwt"`
	Account string `json:"account"`
	// AccountName is the person's name, the account's name.
	AccountName string   `json:"account_name"`
	Servers     []string `json:"servers"`
	// TLSFirst says to connect to Servers with the TLS handshake first.
	TLSFirst bool `json:"tls_first,omitempty"`
	// ReleaseKey is the key that signs releases: the only one a device
	// trusts for an update.
	ReleaseKey string  `json:"release_key,omitempty"`
	ExpiresAt  *string `json:"expires_at"`
}

// readJSONBody decodes a JSON object of at most limit bytes into v.
// Fields it does not know are ignored, as OAuth servers ignore unknown
// parameters (RFC 6749 §3.1), so clients can send more in later versions;
// what is there must have the right type, and nothing may follow the
// object.
func readJSONBody(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	err := dec.Decode(v)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("more than one JSON value")
	}
	var tooBig *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	var netErr net.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &netErr) && netErr.Timeout():
		return errBodyTimeout
	case errors.As(err, &tooBig):
		return &httpError{status: http.StatusRequestEntityTooLarge, code: "invalid_request",
			msg: fmt.Sprintf("the request body is larger than %d bytes", limit)}
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return &httpError{status: http.StatusBadRequest, code: "invalid_request",
			msg: fmt.Sprintf("%q must be a JSON %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()))}
	case errors.Is(err, io.EOF):
		return &httpError{status: http.StatusBadRequest, code: "invalid_request", msg: "the request body is empty; send a JSON object"}
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return &httpError{status: http.StatusBadRequest, code: "invalid_request", msg: fmt.Sprintf("the request body is not JSON (at byte %d)", syntaxErr.Offset)}
	}
	return &httpError{status: http.StatusBadRequest, code: "invalid_request", msg: "the request body must be one JSON object"}
}

func jsonKind(goKind string) string {
	if goKind == "string" {
		return "string"
	}
	return "value of another type"
}

// errBodyTimeout answers a request whose body did not arrive in time.
var errBodyTimeout = &httpError{status: http.StatusRequestTimeout, code: "invalid_request",
	msg: "the request body did not arrive in time; send it whole"}

// badEnroll is an invalid_request answer of the enrollment API.
func badEnroll(format string, args ...any) error {
	return &httpError{status: http.StatusBadRequest, code: "invalid_request", msg: fmt.Sprintf(format, args...)}
}

// checkEnrollProof checks that the device holds the seed of the key it
// sends: the signature is base64url (RFC 4648 §5, without padding) of the
// ed25519 signature by that key over "latch-enroll:"+nonce. The nonce is
// the device's, so this proves possession, not freshness; a replayed
// proof only starts an enrollment whose JWT is useless without the seed.
func checkEnrollProof(req enrollStartRequest) error {
	if !accounts.IsUserKey(req.PublicKey) {
		if strings.HasPrefix(req.PublicKey, "S") {
			// Not echoed back: it may be a secret.
			return badEnroll("public_key looks like a seed; never send the seed, send the public key (U…) of a user nkey")
		}
		return badEnroll("public_key %q is not a user public key; make a user nkey (U…) on the device and send its public key", clipForMessage(req.PublicKey))
	}
	if n := len([]rune(req.Nonce)); n < minNonce || n > maxNonce {
		return badEnroll("nonce must be %d to %d characters, got %d", minNonce, maxNonce, n)
	}
	if req.Signature == "" {
		return badEnroll("signature is missing: sign \"latch-enroll:\"+nonce with the device key and send it base64url-encoded")
	}
	// Padding is tolerated: it carries no information.
	sig, err := b64.DecodeString(strings.TrimRight(req.Signature, "="))
	if err != nil {
		return badEnroll("signature is not base64url (RFC 4648 §5, no padding)")
	}
	kp, err := nkeys.FromPublicKey(req.PublicKey)
	if err != nil {
		return badEnroll("public_key: %v", err)
	}
	if err := kp.Verify([]byte(enrollSigPrefix+req.Nonce), sig); err != nil {
		return badEnroll("signature does not verify: it must be the device key's signature over the bytes of \"latch-enroll:\"+nonce")
	}
	return nil
}

// clipForMessage shortens input quoted back in an error message.
func clipForMessage(s string) string {
	if r := []rune(s); len(r) > 60 {
		return string(r[:60]) + "…"
	}
	return s
}

// handleEnrollStart is POST /api/enroll/start: a device asks to join the
// account of whoever approves its user code.
func (s *Server) handleEnrollStart(w http.ResponseWriter, r *http.Request) {
	if !s.limit(w, r, limitEnrollStart, clientAddr(r)) {
		return
	}
	var req enrollStartRequest
	if err := readJSONBody(w, r, maxEnrollBody, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := checkEnrollProof(req); err != nil {
		s.fail(w, r, err)
		return
	}
	deviceCode, e, err := s.cfg.Accounts.StartEnrollment(r.Context(), accounts.EnrollRequest{
		PublicKey: req.PublicKey, Name: req.Name, Platform: req.Platform,
		Address: clientAddr(r), UserAgent: r.UserAgent(),
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	code := accounts.FormatUserCode(e.UserCode)
	interval := e.Interval
	if interval <= 0 {
		interval = accounts.EnrollInterval
	}
	writeJSON(w, http.StatusOK, enrollStartResponse{
		DeviceCode:              deviceCode,
		UserCode:                code,
		VerificationURI:         s.url("/enroll"),
		VerificationURIComplete: s.url("/enroll?code=" + code),
		ExpiresIn:               int(time.Until(e.Expires).Round(time.Second) / time.Second),
		Interval:                int((interval + time.Second - 1) / time.Second),
	})
}

// handleEnrollPoll is POST /api/enroll/poll: a device asks, with its device
// code, whether it was approved. RFC 8628 §3.5: 400 with
// authorization_pending, slow_down, access_denied or expired_token, or 200
// with its JWT, once.
func (s *Server) handleEnrollPoll(w http.ResponseWriter, r *http.Request) {
	var req enrollPollRequest
	if err := readJSONBody(w, r, maxEnrollBody, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.DeviceCode == "" {
		s.fail(w, r, badEnroll("device_code is missing; send the one /api/enroll/start returned"))
		return
	}
	e, err := s.cfg.Accounts.PollEnrollment(r.Context(), req.DeviceCode)
	if code := accounts.PollErrorCode(err); code != "" {
		writeJSON(w, http.StatusBadRequest, apiError{Error: code, Description: err.Error()})
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.deviceJWT(e.JWT, e.Account, e.AccountName, e.DeviceExpires))
}

// deviceJWT is the answer that gives a device its JWT, to an approved
// enrollment and to a renewal alike: the servers a list even when there
// are none, the expiry RFC 3339 or null.
func (s *Server) deviceJWT(token, account, accountName string, expires *time.Time) enrollPollResponse {
	resp := enrollPollResponse{JWT: token, Account: account, AccountName: accountName, TLSFirst: s.cfg.TLSFirst, ReleaseKey: s.cfg.ReleaseKey}
	if s.cfg.Servers != nil {
		resp.Servers = s.cfg.Servers()
	}
	if resp.Servers == nil {
		resp.Servers = []string{}
	}
	if expires != nil {
		at := expires.UTC().Format(time.RFC3339)
		resp.ExpiresAt = &at
	}
	return resp
}

// lookupCode takes one code attempt from the person's and the address's
// allowance (RFC 8628 §5.1: user codes are short, so guessing must be
// slow) and reports whether the request may go on. Every request that
// names a code counts, whether it finds one or not: counting misses alone
// would still tell a guesser over the limit which codes exist.
func (s *Server) lookupCode(w http.ResponseWriter, r *http.Request, p accounts.Person) bool {
	return s.limit(w, r, limitCode, "addr:"+clientAddr(r)) && s.limit(w, r, limitCode, "person:"+p.Name)
}

// handleEnroll is GET /enroll: the form to type a device's code. With
// ?code= (the link a device prints) it goes straight to the review; when
// nobody is logged in, the login page says what the link was for and
// comes back here once the person has logged in.
func (s *Server) handleEnroll(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	code := r.URL.Query().Get("code")
	p, err := s.loggedIn(r)
	if errors.Is(err, errLoginNeeded) && code != "" && !isHTMX(r) {
		s.render(w, r, http.StatusUnauthorized, views.LoginPage{SignupOpen: s.cfg.Signup == SignupOpen,
			Notice: "A device asks to be enrolled with code " + clipForMessage(code) + ". Log in to review it.",
			Next:   "/enroll?code=" + url.QueryEscape(accounts.FormatUserCode(accounts.NormalizeUserCode(code)))})
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if code != "" {
		s.enrollReview(w, r, p, code)
		return
	}
	s.render(w, r, http.StatusOK, views.EnrollPage{Viewer: viewerOf(p)})
}

// handleEnrollCode is POST /enroll: a person typed a code.
func (s *Server) handleEnrollCode(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	w.Header().Set("Cache-Control", "no-store")
	if err := r.ParseForm(); err != nil {
		s.fail(w, r, errStatus(http.StatusBadRequest, "the form could not be read"))
		return
	}
	s.enrollReview(w, r, p, r.PostForm.Get("code"))
}

// handleEnrollReview is GET /enroll/{code}: the review page of one
// pending enrollment.
func (s *Server) handleEnrollReview(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	w.Header().Set("Cache-Control", "no-store")
	s.enrollReview(w, r, p, r.PathValue("code"))
}

// enrollReview shows the pending enrollment with a code, or the form again
// saying what is wrong with the code.
func (s *Server) enrollReview(w http.ResponseWriter, r *http.Request, p accounts.Person, typed string) {
	typed = strings.TrimSpace(typed)
	if typed == "" {
		s.render(w, r, http.StatusBadRequest, views.EnrollPage{Viewer: viewerOf(p),
			Error: "type the code your device shows, like WDJB-MJHT"})
		return
	}
	if !s.lookupCode(w, r, p) {
		return
	}
	code := accounts.NormalizeUserCode(typed)
	if len(code) != 8 {
		s.render(w, r, http.StatusBadRequest, views.EnrollPage{Viewer: viewerOf(p), Code: typed,
			Error: fmt.Sprintf("%q is not a device code: a code is 8 letters like WDJB-MJHT (no vowels, no digits)", clipForMessage(typed))})
		return
	}
	e, err := s.cfg.Accounts.PendingEnrollment(r.Context(), code)
	if errors.Is(err, accounts.ErrNotFound) {
		s.render(w, r, http.StatusNotFound, views.EnrollPage{Viewer: viewerOf(p), Code: accounts.FormatUserCode(code),
			Error: "wrong code: no device is waiting with code " + accounts.FormatUserCode(code) +
				". Check the code the device shows; codes expire after 10 minutes, so you may have to start again on the device."})
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	link := s.url("/enroll?code=" + accounts.FormatUserCode(e.UserCode))
	phone := views.QRCode{Link: link}
	if phone.Size, phone.Path, err = qr.Path(link); err != nil {
		s.log.Warn("draw the review page's QR code", "err", err)
	}
	s.render(w, r, http.StatusOK, views.EnrollReviewPage{
		Phone:       phone,
		Viewer:      viewerOf(p),
		UserCode:    accounts.FormatUserCode(e.UserCode),
		Name:        e.Name,
		Platform:    e.Platform,
		Address:     e.Address,
		UserAgent:   e.UserAgent,
		PublicKey:   e.PublicKey,
		Fingerprint: views.Fingerprint(e.PublicKey),
		Requested:   e.Requested,
		Expires:     e.Expires,
		Now:         s.cfg.Now(),
	})
}

// errReauthNeeded answers an action that needs a recent passkey check
// without one; what names the action and how to do it again.
func errReauthNeeded(what string) error {
	return &httpError{status: http.StatusForbidden, code: "reauth_required",
		msg: "confirm with your passkey again: " + what}
}

// freshPasskeyCheck reports whether the session's last passkey check is at
// most reauthMaxAge old.
func (s *Server) freshPasskeyCheck(r *http.Request) bool {
	_, ws, _, err := s.session(r)
	age := s.cfg.Now().Sub(ws.Reauth)
	return err == nil && !ws.Reauth.IsZero() && age <= reauthMaxAge && age > -time.Minute
}

// freshForm reads the form of an action that needs a passkey check at
// most reauthMaxAge old, and refuses the action unread without one; what
// names the action and how to do it again.
func (s *Server) freshForm(r *http.Request, what string) (map[string]string, error) {
	if !s.freshPasskeyCheck(r) {
		return nil, errReauthNeeded(what)
	}
	return readForm(r)
}

// handleEnrollApprove is POST /enroll/{code}/approve: the device becomes
// one of the person's, after a passkey check at most reauthMaxAge old.
func (s *Server) handleEnrollApprove(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	if !s.freshPasskeyCheck(r) {
		s.fail(w, r, errReauthNeeded("approving a device needs a passkey check from the last minute. Go back, press Approve and use your passkey."))
		return
	}
	if !s.lookupCode(w, r, p) {
		return
	}
	code := r.PathValue("code")
	d, err := s.cfg.Accounts.ApproveEnrollment(accounts.WithActor(r.Context(), actor(r, p)), code, p.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, views.EnrollDonePage{
		Viewer: viewerOf(p), Approved: true, Name: d.Name,
		PublicKey: d.PublicKey, Fingerprint: views.Fingerprint(d.PublicKey), Expires: d.Expires,
	})
}

// handleEnrollDeny is POST /enroll/{code}/deny: the device is told no on
// its next poll.
func (s *Server) handleEnrollDeny(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	if !s.lookupCode(w, r, p) {
		return
	}
	ctx := r.Context()
	code := r.PathValue("code")
	// The name is read first only to say which device was turned away.
	e, err := s.cfg.Accounts.PendingEnrollment(ctx, code)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.cfg.Accounts.DenyEnrollment(accounts.WithActor(ctx, actor(r, p)), code, p.Name); err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, views.EnrollDonePage{
		Viewer: viewerOf(p), Name: e.Name, PublicKey: e.PublicKey, Fingerprint: views.Fingerprint(e.PublicKey),
	})
}

// enrollService is what the account service does for device enrollment.
type enrollService interface {
	StartEnrollment(ctx context.Context, r accounts.EnrollRequest) (string, accounts.Enrollment, error)
	PendingEnrollment(ctx context.Context, userCode string) (accounts.Enrollment, error)
	ApproveEnrollment(ctx context.Context, userCode, person string) (accounts.Device, error)
	DenyEnrollment(ctx context.Context, userCode, person string) error
	PollEnrollment(ctx context.Context, deviceCode string) (accounts.Enrollment, error)
}
