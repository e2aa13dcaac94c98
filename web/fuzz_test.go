package web

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The device API's request parsers take anything a client sends: no
// panic, and every refusal is a 4xx httpError (never a 500).
func FuzzEnrollStartRequest(f *testing.F) {
	f.Add([]byte(`{"public_key":"UAAA","name":"laptop","nonce":"0123456789abcdef","signature":"AAAA"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"public_key":"UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4\n"}`))
	f.Add([]byte(`{"name":5}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/api/enroll/start", bytes.NewReader(body))
		var r enrollStartRequest
		err := readJSONBody(rec, req, maxEnrollBody, &r)
		if err == nil {
			err = checkEnrollProof(r)
		}
		wantClientError(t, err)
	})
}

func FuzzRenewRequest(f *testing.F) {
	f.Add([]byte(`{"jwt":"eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.AAAA","nonce":"0123456789abcdef","signature":"AAAA"}`))
	f.Add([]byte(`{"jwt":"x"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/api/devices/renew", bytes.NewReader(body))
		var r renewRequest
		err := readJSONBody(rec, req, maxRenewBody, &r)
		if err == nil {
			_, err = checkRenewProof(r, time.Now())
		}
		wantClientError(t, err)
		if err != nil && (strings.Contains(err.Error(), "Go ") || strings.Contains(err.Error(), "jwt.") || strings.Contains(err.Error(), "struct")) {
			t.Fatalf("the error speaks Go: %v", err)
		}
	})
}

// wantClientError fails unless err is nil or a 4xx httpError.
func wantClientError(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var he *httpError
	if !errors.As(err, &he) || he.status < 400 || he.status >= 500 {
		t.Fatalf("got %v (%T), want a 4xx httpError", err, err)
	}
	if he.status == http.StatusInternalServerError {
		t.Fatalf("a 500 for client input: %v", err)
	}
}
