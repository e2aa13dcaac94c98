package operator

import (
	"time"

	"github.com/latch-dev/latch/keys"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// The claims of latch's own accounts (SYS, LATCH, LATCH_ADMIN) and their
// users. A person account's claims are the domain's (package accounts).

// FirstAdminName is the name of the admin creds that `latch init` makes.
const FirstAdminName = "admin"

// srvSubjects are micro's discovery subjects ($SRV.PING, $SRV.INFO,
// $SRV.STATS and their per-service forms), so `nats micro ls` finds the
// admin service with admin creds.
const srvSubjects = "$SRV.>"

// AdminInboxPrefix is the inbox prefix of an admin user: each admin may
// receive replies only under _INBOX.<their user key>, so that one admin
// cannot read the replies another admin is sent (device creds among
// them). Clients set it with nats.CustomInboxPrefix, or natscli's
// --inbox-prefix.
func AdminInboxPrefix(userPub string) string { return "_INBOX." + userPub }

// AdminUserJWT signs the user JWT of an admin: call the admin service (and
// let `nats micro` discover it), receive replies on its own inbox, nothing
// else.
func AdminUserJWT(signer nkeys.KeyPair, account, userPub, name string) (string, error) {
	uc := jwt.NewUserClaims(userPub)
	uc.Name = name
	uc.IssuerAccount = account
	uc.Pub.Allow.Add(AdminSubjectPrefix+".>", srvSubjects)
	uc.Sub.Allow.Add(AdminInboxPrefix(userPub) + ".>")
	return uc.Encode(signer)
}

func systemAccountClaims(pub, signingKey string) *jwt.AccountClaims {
	ac := jwt.NewAccountClaims(pub)
	ac.Name = "SYS"
	ac.SigningKeys.Add(signingKey)
	return ac
}

// appAccountClaims are LATCH's: latch's state buckets, audit stream and
// admin service live there, with JetStream limited only by the server.
func appAccountClaims(pub, signingKey string) *jwt.AccountClaims {
	ac := jwt.NewAccountClaims(pub)
	ac.Name = "LATCH"
	ac.SigningKeys.Add(signingKey)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{
		MemoryStorage: jwt.NoLimit, DiskStorage: jwt.NoLimit,
		Streams: jwt.NoLimit, Consumer: jwt.NoLimit, MaxAckPending: jwt.NoLimit,
	}
	// The admin service and its discovery, for LATCH_ADMIN alone: a
	// private export, imported with an activation token.
	ac.Exports.Add(
		&jwt.Export{Name: "latch admin service", Subject: AdminSubjectPrefix + ".>", Type: jwt.Service, TokenReq: true},
		// Every instance answers discovery, so more than one reply.
		&jwt.Export{Name: "latch admin discovery", Subject: srvSubjects, Type: jwt.Service, TokenReq: true, ResponseType: jwt.ResponseTypeStream},
		// The device API, for every person account. Public: only latch
		// signs account JWTs, so only its persons import it, and the
		// service learns each caller from the server.
		&jwt.Export{Name: "latch device api", Subject: DeviceAPISubject, Type: jwt.Service},
		// Release announcements, for every person account: a public
		// stream that only latch publishes to.
		&jwt.Export{Name: "latch releases", Subject: ReleaseSubjectPrefix + ".>", Type: jwt.Stream},
	)
	return ac
}

// DeviceAPISubject is the device API: a device asks latch for what it
// cannot do itself on subjects under its own channel,
// latch.device.<its user key>.api.<endpoint>, which the device template
// lets it publish to. Person accounts import it from LATCH with share on,
// so each request carries the caller as the server saw it.
const DeviceAPISubject = "latch.device.*.api.>"

// adminAccountClaims are LATCH_ADMIN's: the account of the admins' creds.
// It imports the admin service from LATCH with share on, so the service
// learns each caller's user key from the server (Nats-Request-Info), and
// sees nothing else of LATCH: latch's buckets, secrets and the replies to
// its own requests stay in an account no credential outside the server
// belongs to. appSigner, a signing key of LATCH, signs the activations.
func adminAccountClaims(pub, signingKey, appPub string, appSigner nkeys.KeyPair) (*jwt.AccountClaims, error) {
	ac := jwt.NewAccountClaims(pub)
	ac.Name = "LATCH_ADMIN"
	ac.SigningKeys.Add(signingKey)
	ac.Limits.Conn = 64
	ac.Limits.LeafNodeConn = 0
	for _, subj := range []string{AdminSubjectPrefix + ".>", srvSubjects} {
		act := jwt.NewActivationClaims(pub)
		act.ImportSubject = jwt.Subject(subj)
		act.ImportType = jwt.Service
		act.IssuerAccount = appPub
		tok, err := act.Encode(appSigner)
		if err != nil {
			return nil, err
		}
		ac.Imports.Add(&jwt.Import{
			Name: "latch " + subj, Subject: jwt.Subject(subj), Account: appPub,
			Type: jwt.Service, Token: tok, Share: true,
		})
	}
	return ac, nil
}

// NewUser makes a user nkey and a JWT for it, signed by signer, a signing
// key of the account; a zero expires never expires.
func NewUser(signer nkeys.KeyPair, account, name string, perms *jwt.Permissions, expires time.Time) (userJWT string, seed []byte, err error) {
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.Name = name
	uc.IssuerAccount = account
	if !expires.IsZero() {
		uc.Expires = expires.Unix()
	}
	if perms != nil {
		uc.Permissions = *perms
	}
	if userJWT, err = uc.Encode(signer); err != nil {
		return "", nil, err
	}
	seed, _ = ukp.Seed()
	return userJWT, seed, nil
}

func mintUserCreds(signer nkeys.KeyPair, account, name string, perms *jwt.Permissions) ([]byte, error) {
	tok, seed, err := NewUser(signer, account, name, perms, time.Time{})
	if err != nil {
		return nil, err
	}
	return keys.FormatCreds(tok, seed)
}
