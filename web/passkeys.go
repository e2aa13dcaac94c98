package web

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"unicode"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/latch-dev/latch/accounts"
)

// waUser is a person as the passkey library sees them.
type waUser struct {
	handle      []byte
	name, shown string
	credentials []webauthn.Credential
}

func (u *waUser) WebAuthnID() []byte                         { return u.handle }
func (u *waUser) WebAuthnName() string                       { return u.name }
func (u *waUser) WebAuthnDisplayName() string                { return u.shown }
func (u *waUser) WebAuthnCredentials() []webauthn.Credential { return u.credentials }

var b64 = base64.RawURLEncoding

// userOf loads a person's passkeys for the library.
func (s *Server) userOf(ctx context.Context, p accounts.Person) (*waUser, error) {
	handle, err := b64.DecodeString(p.Handle)
	if err != nil || len(handle) == 0 {
		return nil, fmt.Errorf("person %s has no usable passkey handle", p.Name)
	}
	pks, err := s.cfg.Accounts.Passkeys(ctx, p.Name)
	if err != nil {
		return nil, err
	}
	u := &waUser{handle: handle, name: p.Name, shown: p.DisplayName}
	if u.shown == "" {
		u.shown = p.Name
	}
	for _, pk := range pks {
		var c webauthn.Credential
		if err := json.Unmarshal(pk.Credential, &c); err != nil {
			return nil, fmt.Errorf("passkey %s of %s: %w", pk.ID, p.Name, err)
		}
		u.credentials = append(u.credentials, c)
	}
	return u, nil
}

// registrationOptions are the same for a new person and a new passkey:
// a discoverable credential, the user verified, and no second passkey on
// an authenticator that already holds one of theirs.
func registrationOptions(u *waUser) []webauthn.RegistrationOption {
	return []webauthn.RegistrationOption{
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{
			ResidentKey:        protocol.ResidentKeyRequirementRequired,
			RequireResidentKey: protocol.ResidentKeyRequired(),
			UserVerification:   protocol.VerificationRequired,
		}),
		webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired),
		webauthn.WithExclusions(webauthn.Credentials(u.credentials).CredentialDescriptors()),
		webauthn.WithExtensions(webauthn.WithExtensionCredProps()),
	}
}

// ceremonyError turns what the passkey library says into a message a
// person can act on.
func ceremonyError(err error) error {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		msg := pe.Details
		if pe.DevInfo != "" && strings.Contains(pe.DevInfo, "Backup Eligible") {
			msg = "this passkey's backup flag changed since it was registered, which a well-behaved passkey provider never does; use another passkey or update your password manager"
		}
		if msg == "" {
			msg = "the passkey check failed"
		}
		return errStatus(http.StatusBadRequest, msg+"; try again")
	}
	var le lookupError
	if errors.As(err, &le) {
		return le.err // latch's own lookup: its error as it is
	}
	// Anything else the library says is about what the browser sent
	// (clientDataJSON that is not JSON, say): the client's to fix.
	return errStatus(http.StatusBadRequest, "the passkey's answer could not be read; try again")
}

// lookupError carries an error of latch's own lookup of a passkey's user
// through the WebAuthn library, so that ceremonyError keeps it apart from
// the library's complaints about the request.
type lookupError struct{ err error }

func (e lookupError) Error() string { return e.err.Error() }
func (e lookupError) Unwrap() error { return e.err }

// newPasskey checks the answer to a registration ceremony, as the passkey
// library does, and the key it brings, which latch must be able to check
// logins with; it returns the new credential.
func (s *Server) newPasskey(r *http.Request, u *waUser, c ceremony) (*webauthn.Credential, error) {
	cred, err := s.webauthn.FinishRegistration(u, c.Data, r)
	if err != nil {
		return nil, ceremonyError(err)
	}
	if err := usableKey(cred.PublicKey); err != nil {
		return nil, errStatus(http.StatusBadRequest, err.Error()+"; use another passkey")
	}
	return cred, nil
}

// addPasskey keeps a new credential as one of person's passkeys; ctx
// carries who added it, for the audit trail.
func (s *Server) addPasskey(ctx context.Context, person, name string, c *webauthn.Credential) error {
	raw, err := json.Marshal(c)
	if err != nil {
		return err
	}
	_, err = s.cfg.Accounts.AddPasskey(ctx, accounts.Passkey{
		ID: b64.EncodeToString(c.ID), Person: person, Name: name, Credential: raw,
		SignCount: c.Authenticator.SignCount, BackupEligible: c.Flags.BackupEligible, BackupState: c.Flags.BackupState,
	})
	return err
}

// logIn starts p's session and sends the browser to the devices page: the
// end of every ceremony that logs a person in.
func (s *Server) logIn(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	if err := s.startSession(w, r, p); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"redirect": "/devices"})
}

// readForm reads a small JSON object or form of string fields.
func readForm(r *http.Request) (map[string]string, error) {
	out := map[string]string{}
	var netErr net.Error
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		if err := json.NewDecoder(r.Body).Decode(&out); errors.As(err, &netErr) && netErr.Timeout() {
			return nil, errBodyTimeout
		} else if err != nil {
			return nil, errStatus(http.StatusBadRequest, "the request is not a JSON object of strings")
		}
		return out, nil
	}
	if err := r.ParseForm(); errors.As(err, &netErr) && netErr.Timeout() {
		return nil, errBodyTimeout
	} else if err != nil {
		return nil, errStatus(http.StatusBadRequest, "the form could not be read")
	}
	for k := range r.PostForm {
		out[k] = r.PostForm.Get(k)
	}
	return out, nil
}

// cleanName checks a name a person typed: 1 to 64 printable characters.
func cleanName(field, s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errStatus(http.StatusBadRequest, field+" is empty")
	}
	if len([]rune(s)) > 64 {
		return "", errStatus(http.StatusBadRequest, field+" is longer than 64 characters")
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return "", errStatus(http.StatusBadRequest, field+" has a character that cannot be shown")
		}
	}
	return s, nil
}

// handleRegisterBegin is POST /register/begin: a new person's first
// passkey, through the setup link, an invite link or open sign-up.
func (s *Server) handleRegisterBegin(w http.ResponseWriter, r *http.Request) {
	if !s.limit(w, r, limitRegister, clientAddr(r)) {
		return
	}
	f, err := readForm(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	inv, err := s.signupAllowed(r.Context(), f["token"])
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var u *waUser
	if inv.For != "" {
		// A passkey for an existing person, under their own handle.
		p, err := s.cfg.Accounts.Person(r.Context(), inv.For)
		if err == nil {
			u, err = s.userOf(r.Context(), p)
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
	} else {
		shown, err := cleanName("your name", f["display_name"])
		if err != nil {
			s.fail(w, r, err)
			return
		}
		u = &waUser{handle: randomBytes(32), name: shown, shown: shown}
	}
	opts, data, err := s.webauthn.BeginRegistration(u, registrationOptions(u)...)
	s.beginCeremony(w, r, opts, data, err, ceremony{Kind: ceremonyRegister, Handle: u.handle, DisplayName: u.shown, Token: f["token"]})
}

// handleRegisterFinish is POST /register/finish: checks the new passkey,
// uses up the invite, creates the person and their account, logs them in.
func (s *Server) handleRegisterFinish(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c, ok := s.ceremonyAnswered(w, r, ceremonyRegister)
	if !ok {
		return
	}
	if _, err := s.signupAllowed(ctx, c.Token); err != nil {
		s.fail(w, r, err)
		return
	}
	u := &waUser{handle: c.Handle, name: c.DisplayName, shown: c.DisplayName}
	cred, err := s.newPasskey(r, u, c)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	role := accounts.RoleMember
	if c.Token != "" {
		// One-time: of two sign-ups racing with one invite, one wins.
		inv, err := s.cfg.Accounts.ConsumeInvite(ctx, c.Token)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if inv.For != "" {
			s.finishPasskeyFor(w, r, inv, cred)
			return
		}
		if inv.Admin || inv.Setup {
			role = accounts.RoleAdmin
		}
	}
	actx := accounts.WithActor(ctx, accounts.Actor{Name: "signup", From: clientAddr(r)})
	p, err := s.cfg.Accounts.CreatePerson(actx, accounts.NewPerson{DisplayName: c.DisplayName, Role: role, Handle: b64.EncodeToString(c.Handle)})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.addPasskey(accounts.WithActor(ctx, actor(r, p)), p.Name, passkeyName(cred), cred); err != nil {
		// A person who cannot log in is of no use: take the account back.
		if _, derr := s.cfg.Accounts.DeletePerson(actx, p.Name); derr != nil {
			s.log.Error("undo sign-up", "person", p.Name, "err", derr)
		}
		s.fail(w, r, err)
		return
	}
	s.logIn(w, r, p)
}

// finishPasskeyFor gives an existing person the passkey an invite for
// them was used for, and logs them in.
func (s *Server) finishPasskeyFor(w http.ResponseWriter, r *http.Request, inv accounts.Invite, cred *webauthn.Credential) {
	ctx := r.Context()
	p, err := s.cfg.Accounts.Person(ctx, inv.For)
	if err == nil && p.Status != accounts.StatusActive {
		err = errStatus(http.StatusForbidden, "this account is "+p.Status+"; ask an admin")
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	by := accounts.Actor{Name: p.Name + " (invite " + inv.ID + ")", From: clientAddr(r)}
	if err := s.addPasskey(accounts.WithActor(ctx, by), p.Name, passkeyName(cred), cred); err != nil {
		s.fail(w, r, err)
		return
	}
	s.logIn(w, r, p)
}

// signupAllowed checks a sign-up against the signup mode and its token.
func (s *Server) signupAllowed(ctx context.Context, token string) (accounts.Invite, error) {
	if token != "" {
		inv, err := s.cfg.Accounts.Invite(ctx, token)
		if err != nil {
			return inv, err
		}
		if s.cfg.Signup == SignupClosed && !inv.Setup && inv.For == "" {
			return inv, errStatus(http.StatusForbidden, "sign-up is closed on this server")
		}
		return inv, nil
	}
	if s.cfg.Signup != SignupOpen {
		return accounts.Invite{}, errStatus(http.StatusForbidden, "sign-up needs an invite link; ask an admin for one")
	}
	return accounts.Invite{}, nil
}

// passkeyName names a new passkey after what kind it is.
func passkeyName(c *webauthn.Credential) string {
	if c.Flags.BackupEligible {
		return "Synced passkey"
	}
	return "Passkey on one device"
}

// handleLoginBegin is POST /login/begin: a usernameless passkey login.
func (s *Server) handleLoginBegin(w http.ResponseWriter, r *http.Request) {
	if !s.limit(w, r, limitLogin, clientAddr(r)) {
		return
	}
	opts, data, err := s.webauthn.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	s.beginCeremony(w, r, opts, data, err, ceremony{Kind: ceremonyLogin})
}

// handleLoginFinish is POST /login/finish.
func (s *Server) handleLoginFinish(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c, ok := s.ceremonyAnswered(w, r, ceremonyLogin)
	if !ok {
		return
	}
	var person accounts.Person
	find := func(rawID, userHandle []byte) (webauthn.User, error) {
		pk, err := s.cfg.Accounts.Passkey(ctx, b64.EncodeToString(rawID))
		if err != nil {
			return nil, lookupError{err}
		}
		person, err = s.cfg.Accounts.Person(ctx, pk.Person)
		if err != nil {
			return nil, lookupError{err}
		}
		if person.Handle != b64.EncodeToString(userHandle) {
			return nil, errors.New("the passkey's user handle does not match its person")
		}
		return s.userOf(ctx, person)
	}
	_, cred, err := s.webauthn.FinishPasskeyLogin(find, c.Data, r)
	if err != nil {
		if errors.Is(err, accounts.ErrNotFound) {
			s.fail(w, r, errStatus(http.StatusUnauthorized, "this passkey is not known here (it may have been removed); use another one"))
			return
		}
		s.fail(w, r, ceremonyError(err))
		return
	}
	if person.Status != accounts.StatusActive {
		s.fail(w, r, errStatus(http.StatusForbidden, "your account is "+person.Status+"; ask an admin"))
		return
	}
	if err := s.usePasskey(ctx, person, cred, clientAddr(r)); err != nil {
		s.fail(w, r, err)
		return
	}
	s.logIn(w, r, person)
}

// usePasskey stores the sign count, clone warning and backup state after
// a passkey was used.
func (s *Server) usePasskey(ctx context.Context, p accounts.Person, cred *webauthn.Credential, from string) error {
	raw, err := json.Marshal(cred)
	if err != nil {
		return err
	}
	ctx = accounts.WithActor(ctx, accounts.Actor{Name: p.Name, From: from})
	_, err = s.cfg.Accounts.UsePasskey(ctx, b64.EncodeToString(cred.ID), raw, cred.Authenticator.SignCount,
		cred.Authenticator.CloneWarning, cred.Flags.BackupState)
	return err
}

// handleReauthBegin is POST /reauth/begin: a fresh passkey check of the
// person logged in, before approving an enrollment.
func (s *Server) handleReauthBegin(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	u, err := s.userOf(r.Context(), p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	opts, data, err := s.webauthn.BeginLogin(u, webauthn.WithUserVerification(protocol.VerificationRequired))
	s.beginCeremony(w, r, opts, data, err, ceremony{Kind: ceremonyReauth})
}

// handleReauthFinish is POST /reauth/finish.
func (s *Server) handleReauthFinish(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	c, u, ok := s.personCeremony(w, r, ceremonyReauth, p)
	if !ok {
		return
	}
	cred, err := s.webauthn.FinishLogin(u, c.Data, r)
	if err != nil {
		s.fail(w, r, ceremonyError(err))
		return
	}
	if err := s.usePasskey(r.Context(), p, cred, clientAddr(r)); err != nil {
		s.fail(w, r, err)
		return
	}
	_, ws, _, err := s.session(r)
	if err == nil {
		err = s.cfg.Accounts.TouchSession(r.Context(), ws, s.cfg.Now(), clientAddr(r), true)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// handlePasskeyBegin is POST /passkeys/begin: another passkey for the
// person logged in.
func (s *Server) handlePasskeyBegin(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	// A new passkey is a way in for good: a stolen session must not be
	// enough to add one.
	f, err := s.freshForm(r, "adding a passkey needs a check with one you hold, from the last minute")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	name := strings.TrimSpace(f["name"])
	if name != "" {
		if name, err = cleanName("the passkey's name", name); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	u, err := s.userOf(r.Context(), p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	opts, data, err := s.webauthn.BeginRegistration(u, registrationOptions(u)...)
	s.beginCeremony(w, r, opts, data, err, ceremony{Kind: ceremonyAdd, PasskeyName: name})
}

// handlePasskeyFinish is POST /passkeys/finish.
func (s *Server) handlePasskeyFinish(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	c, u, ok := s.personCeremony(w, r, ceremonyAdd, p)
	if !ok {
		return
	}
	cred, err := s.newPasskey(r, u, c)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	name := c.PasskeyName
	if name == "" {
		name = passkeyName(cred)
	}
	if err := s.addPasskey(accounts.WithActor(r.Context(), actor(r, p)), p.Name, name, cred); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"redirect": "/passkeys"})
}

// passkeyService is what the account service does for passkeys:
// registered, used, renamed, removed.
type passkeyService interface {
	AddPasskey(ctx context.Context, p accounts.Passkey) (accounts.Passkey, error)
	Passkeys(ctx context.Context, person string) ([]accounts.Passkey, error)
	Passkey(ctx context.Context, id string) (accounts.Passkey, error)
	UsePasskey(ctx context.Context, id string, cred json.RawMessage, signCount uint32, cloneWarning, backupState bool) (accounts.Passkey, error)
	RenamePasskey(ctx context.Context, person, id, name string) (accounts.Passkey, error)
	RemovePasskey(ctx context.Context, person, id string) error
}
