package accounts

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// Names that pass are short enough and plain enough to be a KV key and
// part of a subject; no input panics the checks.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"alice", "a-b_c", "", "Bob", "x\n", "sys", "ü", string(make([]byte, 5000))} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidatePersonName(s) == nil {
			if len(s) > maxPersonName || len(s) == 0 {
				t.Fatalf("person name %q of %d bytes passed", s, len(s))
			}
			for _, r := range s {
				if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
					t.Fatalf("person name %q holds %q", s, r)
				}
			}
		}
		if ValidateDeviceName(s) == nil && (!utf8.ValidString(s) || utf8.RuneCountInString(s) > maxDeviceName) {
			t.Fatalf("device name %q passed", s)
		}
		if IsUserKey(s) && len(s) != 56 {
			t.Fatalf("user key %q passed", s)
		}
		if err := checkRecordKey(s); err == nil && len(s) > MaxRecordKey {
			t.Fatalf("record key of %d bytes passed", len(s))
		}
	})
}

// The admin service's request decoding takes anything: no panic, and a
// refusal is an invalid-request error that speaks no Go.
func FuzzAdminDecode(f *testing.F) {
	for _, s := range []string{`{"name":"alice"}`, `[]`, `{"ttl_seconds":18446744074}`, `{"at":"yesterday"}`, ``, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, v := range []any{&AccountAddRequest{}, &DeviceIssueRequest{}, &DeviceRequest{}, &RestoreRequest{}, &AdminCredsRequest{}, &ConsumersRequest{}} {
			if err := decode(b, v); err != nil {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("decode %q into %T: %v is not an invalid-request error", b, v, err)
				}
				if msg := err.Error(); len(msg) > 400 || containsGo(msg) {
					t.Fatalf("decode %q into %T: %q", b, v, msg)
				}
			}
		}
	})
}

func containsGo(s string) bool {
	for _, w := range []string{"Go value", "accounts.", "unmarshal"} {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}
