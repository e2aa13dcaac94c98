package web

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"testing"

	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
)

func coseOf(t *testing.T, v any) []byte {
	t.Helper()
	b, err := webauthncbor.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A passkey whose public key nobody could sign for is refused at
// registration, before it makes a person who can never log in.
func TestUsableKey(t *testing.T) {
	t.Parallel()
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecX, ecY := ec.PublicKey.X.FillBytes(make([]byte, 32)), ec.PublicKey.Y.FillBytes(make([]byte, 32))
	offCurveY := new(big.Int).Add(ec.PublicKey.Y, big.NewInt(1)).FillBytes(make([]byte, 32))
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	big2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	okp := func(x []byte) webauthncose.OKPPublicKeyData {
		return webauthncose.OKPPublicKeyData{PublicKeyData: webauthncose.PublicKeyData{KeyType: int64(webauthncose.OctetKey), Algorithm: int64(webauthncose.AlgEdDSA)}, Curve: int64(webauthncose.Ed25519), XCoord: x}
	}
	ec2 := func(x, y []byte, crv int64) webauthncose.EC2PublicKeyData {
		return webauthncose.EC2PublicKeyData{PublicKeyData: webauthncose.PublicKeyData{KeyType: int64(webauthncose.EllipticKey), Algorithm: int64(webauthncose.AlgES256)}, Curve: crv, XCoord: x, YCoord: y}
	}
	rsaKey := func(k *rsa.PrivateKey) webauthncose.RSAPublicKeyData {
		return webauthncose.RSAPublicKeyData{PublicKeyData: webauthncose.PublicKeyData{KeyType: int64(webauthncose.RSAKey), Algorithm: int64(webauthncose.AlgRS256)},
			Modulus: k.N.Bytes(), Exponent: big.NewInt(int64(k.E)).Bytes()}
	}
	for _, tc := range []struct {
		name string
		key  any
		ok   bool
	}{
		{"Ed25519", okp(edPub), true},
		{"Ed25519 of 31 bytes", okp(edPub[:31]), false},
		{"Ed25519 of 0 bytes", okp(nil), false},
		{"P-256", ec2(ecX, ecY, 1), true},
		{"P-256 point off the curve", ec2(ecX, offCurveY, 1), false},
		{"P-256 coordinates on the wrong curve", ec2(ecX, ecY, 2), false},
		{"RSA 2048", rsaKey(big2048), true},
		{"RSA 1024", rsaKey(small), false},
	} {
		err := usableKey(coseOf(t, tc.key))
		if (err == nil) != tc.ok {
			t.Errorf("%s: got %v, want ok %v", tc.name, err, tc.ok)
		}
	}
	if usableKey([]byte("not cbor")) == nil {
		t.Error("a key that is not COSE passed")
	}
}
