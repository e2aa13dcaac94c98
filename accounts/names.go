package accounts

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nkeys"
)

// Person (account) names: 1 to 32 characters of lower-case letters, digits,
// '-' and '_', starting with a letter or digit. They become the account
// JWT's name and a key in the persons bucket, so they stay plain.
const (
	maxPersonName = 32
	maxDeviceName = 64
)

// reservedNames are the names of latch's own accounts.
var reservedNames = map[string]bool{"sys": true, "latch": true}

// ValidatePersonName checks a person's account name.
func ValidatePersonName(name string) error {
	if name == "" {
		return invalid("name", "a name is required")
	}
	if len(name) > maxPersonName {
		return invalid("name", "%q is longer than %d characters", clip(name, 40)+"…", maxPersonName)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || (i > 0 && (r == '-' || r == '_'))
		if !ok {
			return invalid("name", "%q may hold only a-z, 0-9, '-' and '_', and must start with a letter or digit", clip(name, 40))
		}
	}
	if reservedNames[name] {
		return invalid("name", "%q is the name of one of latch's own accounts; choose another", name)
	}
	return nil
}

// ValidateDeviceName checks a device's name: 1 to 64 printable characters,
// no leading or trailing space, and not a public key (devices are named by
// either, so a name must not look like a key).
func ValidateDeviceName(name string) error {
	switch {
	case name == "":
		return invalid("name", "a device name is required")
	case !utf8.ValidString(name):
		return invalid("name", "the device name is not valid UTF-8")
	case utf8.RuneCountInString(name) > maxDeviceName:
		return invalid("name", "the device name is longer than %d characters", maxDeviceName)
	case strings.TrimSpace(name) != name:
		return invalid("name", "the device name %q starts or ends with a space", name)
	case nkeys.IsValidPublicUserKey(name):
		return invalid("name", "a device name may not be a user public key")
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return invalid("name", "the device name %q holds a control or non-printing character", name)
		}
	}
	return nil
}
