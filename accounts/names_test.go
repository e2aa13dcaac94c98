package accounts_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/latch-dev/latch/accounts"
	"github.com/nats-io/nkeys"
)

func TestValidatePersonName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{name: "alice", ok: true},
		{name: "a", ok: true},
		{name: "0day", ok: true},
		{name: "ann-lee", ok: true},
		{name: "ann_lee_2", ok: true},
		{name: "sysadmin", ok: true},
		{name: "latch2", ok: true},
		{name: strings.Repeat("a", 32), ok: true},
		{name: ""},
		{name: strings.Repeat("a", 33)},
		{name: "Alice"},
		{name: "-alice"},
		{name: "_alice"},
		{name: "ann lee"},
		{name: "ann.lee"}, // a dot would split KV keys and subjects
		{name: "ann*"},
		{name: "ann>"},
		{name: "ann/lee"},
		{name: "émile"},
		{name: "sys"},
		{name: "latch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := accounts.ValidatePersonName(tt.name)
			checkValidation(t, tt.name, err, tt.ok)
		})
	}
}

func TestValidatePersonNameSaysWhy(t *testing.T) {
	tests := []struct{ name, want string }{
		{name: "", want: "required"},
		{name: strings.Repeat("a", 33), want: "longer than 32"},
		{name: "Alice", want: "may hold only a-z, 0-9"},
		{name: "sys", want: "latch's own accounts"},
		{name: "latch", want: "latch's own accounts"},
	}
	for _, tt := range tests {
		err := accounts.ValidatePersonName(tt.name)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ValidatePersonName(%q): got %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestValidateDeviceName(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	userKey, _ := kp.PublicKey()
	akp, _ := nkeys.CreateAccount()
	accountKey, _ := akp.PublicKey()
	tests := []struct {
		label, name string
		ok          bool
	}{
		{label: "plain", name: "laptop", ok: true},
		{label: "spaces and punctuation", name: "Alice's MacBook Pro (2024)", ok: true},
		{label: "dots and wildcards", name: "host.example.com *>", ok: true},
		{label: "accents", name: "téléphone", ok: true},
		{label: "cjk", name: "手机", ok: true},
		{label: "64 multi-byte runes", name: strings.Repeat("é", 64), ok: true},
		{label: "account key", name: accountKey, ok: true}, // only user keys are taken for keys
		{label: "lower-cased user key", name: strings.ToLower(userKey), ok: true},
		{label: "empty", name: ""},
		{label: "65 runes", name: strings.Repeat("a", 65)},
		{label: "leading space", name: " laptop"},
		{label: "trailing space", name: "laptop "},
		{label: "tab", name: "lap\ttop"},
		{label: "newline", name: "lap\ntop"},
		{label: "escape", name: "lap\x1b[2Jtop"},
		{label: "zero-width space", name: "lap\u200btop"},
		{label: "right-to-left override", name: "lap\u202etop"},
		{label: "invalid utf-8", name: "lap\xfftop"},
		{label: "user key", name: userKey},
	}
	for _, tt := range tests {
		t.Run(tt.label, func(t *testing.T) {
			err := accounts.ValidateDeviceName(tt.name)
			checkValidation(t, tt.name, err, tt.ok)
		})
	}
}

// checkValidation checks a validator's answer: nil for a good name, and
// for a bad one a *ValidationError about the name that is of kind invalid.
func checkValidation(t *testing.T, name string, err error, ok bool) {
	t.Helper()
	if ok {
		if err != nil {
			t.Errorf("%q: got %v, want nil", name, err)
		}
		return
	}
	if err == nil {
		t.Fatalf("%q: got nil, want an error", name)
	}
	var ve *accounts.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("%q: got %T, want *accounts.ValidationError", name, err)
	}
	if _, ok := ve.Problems["name"]; !ok {
		t.Errorf("%q: problems %q, want one about %q", name, ve.Problems, "name")
	}
	if !errors.Is(err, accounts.ErrInvalid) {
		t.Errorf("%q: errors.Is(err, ErrInvalid) = false, want true", name)
	}
	if got := accounts.Kind(err); got != "invalid" {
		t.Errorf("%q: Kind = %q, want %q", name, got, "invalid")
	}
}

func TestValidationErrorListsEveryProblem(t *testing.T) {
	err := &accounts.ValidationError{Problems: map[string]string{"role": "bad role", "name": "bad name"}}
	if got, want := err.Error(), "name: bad name; role: bad role"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestErrorKinds checks that every kind survives the trip through the
// admin service: Kind names it, ErrorOfKind rebuilds it.
func TestErrorKinds(t *testing.T) {
	tests := []struct {
		kind error
		name accounts.ErrorKind
	}{
		{accounts.ErrInvalid, accounts.KindInvalid},
		{accounts.ErrNotFound, accounts.KindNotFound},
		{accounts.ErrExists, accounts.KindExists},
		{accounts.ErrRevoked, accounts.KindRevoked},
		{accounts.ErrDisabled, accounts.KindDisabled},
		{accounts.ErrForbidden, accounts.KindForbidden},
		{accounts.ErrConflict, accounts.KindConflict},
		{accounts.ErrQuota, accounts.KindQuota},
	}
	for _, tt := range tests {
		t.Run(string(tt.name), func(t *testing.T) {
			if got := accounts.Kind(tt.kind); got != tt.name {
				t.Errorf("Kind(%v) = %q, want %q", tt.kind, got, tt.name)
			}
			wrapped := errors.Join(errors.New("context"), tt.kind)
			if got := accounts.Kind(wrapped); got != tt.name {
				t.Errorf("Kind of a wrapped %v = %q, want %q", tt.kind, got, tt.name)
			}
			err := accounts.ErrorOfKind(tt.name, "what the server said")
			if !errors.Is(err, tt.kind) {
				t.Errorf("ErrorOfKind(%q): errors.Is(err, %v) = false, want true", tt.name, tt.kind)
			}
			if got := err.Error(); got != "what the server said" {
				t.Errorf("ErrorOfKind(%q) message: got %q, want %q", tt.name, got, "what the server said")
			}
		})
	}
	// The one table: what web answers with, and the admin service's code.
	for kind, want := range map[accounts.ErrorKind]int{
		accounts.KindInvalid: 400, accounts.KindNotFound: 404, accounts.KindExists: 409, accounts.KindRevoked: 410,
		accounts.KindDisabled: 403, accounts.KindForbidden: 403, accounts.KindConflict: 409, accounts.KindQuota: 507,
		accounts.KindInternal: 500,
	} {
		if got, _ := kind.HTTPStatus(); got != want || kind.ServiceCode() != strconv.Itoa(want) {
			t.Errorf("%s: HTTP %d, service code %s; want %d", kind, got, kind.ServiceCode(), want)
		}
	}
	if got := accounts.Kind(errors.New("boom")); got != "internal" {
		t.Errorf("Kind(other) = %q, want %q", got, "internal")
	}
	err := accounts.ErrorOfKind("internal", "boom")
	if got := accounts.Kind(err); got != "internal" || err.Error() != "boom" {
		t.Errorf("ErrorOfKind(internal): got kind %q message %q, want %q and %q", got, err.Error(), "internal", "boom")
	}
}
