package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
)

func TestServeSmoke(t *testing.T) {
	s := mustServe(t, "")
	r := s.mustAdmin(t, "account", "add", "alice")
	pub := strings.TrimSpace(r.stdout)
	if !nkeys.IsValidPublicAccountKey(pub) {
		t.Fatalf("account add printed %q, want an account public key", r.stdout)
	}
	out := filepath.Join(t.TempDir(), "laptop.creds")
	r = s.mustAdmin(t, "device", "issue", "--account", "alice", "--name", "laptop", "--out", out)
	if !nkeys.IsValidPublicUserKey(strings.TrimSpace(r.stdout)) {
		t.Fatalf("device issue printed %q, want a user public key", r.stdout)
	}
}
