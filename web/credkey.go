package web

import (
	"crypto/ecdh"
	"fmt"
	"math/big"

	"github.com/go-webauthn/webauthn/protocol/webauthncose"
)

// usableKey checks a new passkey's public key (COSE) before latch keeps
// it: a key nobody could ever sign for (an Ed25519 key not 32 bytes long,
// an EC point off its curve, a small RSA modulus) would make a person who
// can never log in, and use up their invite. The WebAuthn library checks a
// key only when it verifies a signature with it.
func usableKey(cose []byte) error {
	k, err := webauthncose.ParsePublicKey(cose)
	if err != nil {
		return fmt.Errorf("the passkey's public key could not be read")
	}
	switch k := k.(type) {
	case webauthncose.OKPPublicKeyData:
		if k.Curve != int64(webauthncose.Ed25519) || len(k.XCoord) != 32 {
			return fmt.Errorf("the passkey's Ed25519 key is not 32 bytes on curve Ed25519")
		}
	case webauthncose.EC2PublicKeyData:
		curve, size := map[int64]ecdh.Curve{1: ecdh.P256(), 2: ecdh.P384(), 3: ecdh.P521()}[k.Curve], map[int64]int{1: 32, 2: 48, 3: 66}[k.Curve]
		if curve == nil || len(k.XCoord) != size || len(k.YCoord) != size {
			return fmt.Errorf("the passkey's EC key is not on a curve latch accepts (P-256, P-384, P-521)")
		}
		point := append(append([]byte{4}, k.XCoord...), k.YCoord...)
		if _, err := curve.NewPublicKey(point); err != nil {
			return fmt.Errorf("the passkey's EC key is not a point on its curve")
		}
	case webauthncose.RSAPublicKeyData:
		n := new(big.Int).SetBytes(k.Modulus)
		e := new(big.Int).SetBytes(k.Exponent)
		if n.BitLen() < 2048 || e.Cmp(big.NewInt(3)) < 0 || e.Bit(0) == 0 {
			return fmt.Errorf("the passkey's RSA key is smaller than 2048 bits or has an unusable exponent")
		}
	default:
		return fmt.Errorf("the passkey's key type is not one latch accepts")
	}
	return nil
}
