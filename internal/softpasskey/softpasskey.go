// Package softpasskey is a passkey held in memory: it answers the WebAuthn
// options that latch's pages hand to navigator.credentials with what a
// platform authenticator would send back (ES256, user verified, "none"
// attestation), so that latch bench can sign people up and log them in
// over HTTP without a browser. It is for measuring a server of one's own,
// not for holding anybody's keys.
package softpasskey

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

var b64 = base64.RawURLEncoding

// Passkey is one credential: its key, its user handle and its count.
type Passkey struct {
	id     []byte
	key    *ecdsa.PrivateKey
	handle []byte
	rpID   string
	origin string
	count  uint32
}

// Flags of the authenticator data (WebAuthn §6.1).
const (
	flagUserPresent  = 0x01
	flagUserVerified = 0x04
	flagAttested     = 0x40
)

// creationOptions is what a page's /…/begin sends for a new passkey.
type creationOptions struct {
	PublicKey struct {
		Challenge string `json:"challenge"`
		RP        struct {
			ID string `json:"id"`
		} `json:"rp"`
		User struct {
			ID string `json:"id"`
		} `json:"user"`
	} `json:"publicKey"`
}

// requestOptions is what /login/begin and /reauth/begin send.
type requestOptions struct {
	PublicKey struct {
		Challenge string `json:"challenge"`
		RPID      string `json:"rpId"`
	} `json:"publicKey"`
}

// Create makes a passkey for the creation options (JSON, as the server
// sent them) at origin, such as http://localhost:8080, and returns it
// with the registration response to post to the finish step.
func Create(origin string, options []byte) (*Passkey, []byte, error) {
	var o creationOptions
	if err := json.Unmarshal(options, &o); err != nil {
		return nil, nil, fmt.Errorf("read the creation options: %w", err)
	}
	handle, err := b64.DecodeString(o.PublicKey.User.ID)
	if err != nil || o.PublicKey.Challenge == "" || o.PublicKey.RP.ID == "" {
		return nil, nil, errors.New("the creation options lack a challenge, a relying party or a user handle")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	p := &Passkey{id: make([]byte, 32), key: key, handle: handle, rpID: o.PublicKey.RP.ID, origin: origin}
	rand.Read(p.id)

	ecdh, err := key.PublicKey.ECDH()
	if err != nil {
		return nil, nil, err
	}
	raw := ecdh.Bytes() // 0x04 || x || y
	coseKey, err := cbor.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: raw[1:33], -3: raw[33:65]})
	if err != nil {
		return nil, nil, err
	}
	auth := p.authData(flagUserPresent | flagUserVerified | flagAttested)
	auth = append(auth, make([]byte, 16)...) // AAGUID: none
	auth = binary.BigEndian.AppendUint16(auth, uint16(len(p.id)))
	auth = append(auth, p.id...)
	auth = append(auth, coseKey...)
	attestation, err := cbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": auth})
	if err != nil {
		return nil, nil, err
	}
	clientData := p.clientData("webauthn.create", o.PublicKey.Challenge)
	out, err := json.Marshal(map[string]any{
		"id": b64.EncodeToString(p.id), "rawId": b64.EncodeToString(p.id), "type": "public-key",
		"authenticatorAttachment": "platform", "clientExtensionResults": map[string]any{},
		"response": map[string]any{
			"clientDataJSON": b64.EncodeToString(clientData), "attestationObject": b64.EncodeToString(attestation),
			"transports": []string{"internal"},
		},
	})
	return p, out, err
}

// Get answers request options (JSON, as the server sent them) with an
// assertion to post to the finish step. Each use counts up.
func (p *Passkey) Get(options []byte) ([]byte, error) {
	var o requestOptions
	if err := json.Unmarshal(options, &o); err != nil {
		return nil, fmt.Errorf("read the request options: %w", err)
	}
	if o.PublicKey.Challenge == "" {
		return nil, errors.New("the request options lack a challenge")
	}
	if o.PublicKey.RPID != "" && o.PublicKey.RPID != p.rpID {
		return nil, fmt.Errorf("the server asks for a passkey of %s; this one is of %s", o.PublicKey.RPID, p.rpID)
	}
	p.count++
	auth := p.authData(flagUserPresent | flagUserVerified)
	clientData := p.clientData("webauthn.get", o.PublicKey.Challenge)
	h := sha256.Sum256(clientData)
	digest := sha256.Sum256(append(append([]byte{}, auth...), h[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, p.key, digest[:])
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"id": b64.EncodeToString(p.id), "rawId": b64.EncodeToString(p.id), "type": "public-key",
		"authenticatorAttachment": "platform", "clientExtensionResults": map[string]any{},
		"response": map[string]any{
			"clientDataJSON": b64.EncodeToString(clientData), "authenticatorData": b64.EncodeToString(auth),
			"signature": b64.EncodeToString(sig), "userHandle": b64.EncodeToString(p.handle),
		},
	})
}

// authData is the relying party's hash, the flags and the count.
func (p *Passkey) authData(flags byte) []byte {
	rp := sha256.Sum256([]byte(p.rpID))
	out := append(rp[:], flags)
	return binary.BigEndian.AppendUint32(out, p.count)
}

func (p *Passkey) clientData(kind, challenge string) []byte {
	b, _ := json.Marshal(map[string]any{"type": kind, "challenge": challenge, "origin": p.origin, "crossOrigin": false})
	return b
}
