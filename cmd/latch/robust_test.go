package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// One admin request with a 5,000-character name does not take latch
// down: the name is refused before it becomes part of a subject (which
// would overflow nats-server's control line and cost latch its own
// connection), and the admin service and /healthz go on.
func TestLongNameDoesNotTakeLatchDown(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "")
	s.mustAdmin(t, "account", "add", "alice")
	long := strings.Repeat("x", 5000)
	for _, args := range [][]string{
		{"account", "show", long},
		{"account", "disable", long},
		{"device", "ls", "--account", long},
	} {
		r := s.admin(t, args...)
		if r.err == nil || !strings.Contains(r.err.Error(), "no account named") || len(r.err.Error()) > 300 {
			t.Errorf("latch %s %s…: got %v, want a short not-found error", args[0], args[1], r.err)
		}
	}
	// The raw request too, as `nats req` would send it.
	nc, err := nats.Connect(s.nats, nats.UserCredentials(filepath.Join(s.data, "admin.creds")),
		nats.CustomInboxPrefix("_INBOX."+credsUser(t, filepath.Join(s.data, "admin.creds"))))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	body, _ := json.Marshal(map[string]string{"name": long})
	if m, err := nc.Request("latch.admin.v1.account.show", body, 10*time.Second); err != nil || m.Header.Get("Nats-Service-Error-Code") != "404" {
		t.Errorf("a raw account.show with a long name: got %v, %v", m, err)
	}
	if out := s.mustAdmin(t, "account", "ls").stdout; !strings.Contains(out, "alice") {
		t.Errorf("account ls after the long names: %q", out)
	}
	if code, body := s.healthz(); code != http.StatusOK {
		t.Errorf("/healthz after the long names: %d %s", code, body)
	}
}

// latch's own connection, closed from the server's side, comes back, and
// the admin service with it.
func TestOwnConnectionComesBack(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "")
	sys, err := nats.Connect(s.nats, nats.UserCredentials(filepath.Join(s.data, "sys.creds")))
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	op := mustOperatorInfo(t, s.data)
	// latch's own connection to LATCH, from the server's connection list.
	var connz struct {
		Server string `json:"server_id"`
		Conns  []struct {
			Cid     uint64 `json:"cid"`
			Name    string `json:"name"`
			Account string `json:"account"`
		} `json:"connections"`
	}
	req, _ := json.Marshal(map[string]any{"acc": op.AppAccount, "auth": true})
	m, err := sys.Request("$SYS.REQ.SERVER.PING.CONNZ", req, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var reply struct {
		Server struct {
			ID string `json:"id"`
		} `json:"server"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(reply.Data, &connz); err != nil {
		t.Fatal(err)
	}
	var cid uint64
	for _, c := range connz.Conns {
		if c.Name == "latch" {
			cid = c.Cid
		}
	}
	if cid == 0 {
		t.Fatalf("no connection named latch in LATCH: %s", reply.Data)
	}
	kick, _ := json.Marshal(map[string]uint64{"cid": cid})
	if _, err := sys.Request(fmt.Sprintf("$SYS.REQ.SERVER.%s.KICK", reply.Server.ID), kick, 5*time.Second); err != nil {
		t.Fatalf("kick latch's connection: %v", err)
	}
	// It comes back by itself.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r := s.admin(t, "account", "ls")
		code, _ := s.healthz()
		if r.err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("20s after the kick: account ls %v, /healthz %d\n%s", r.err, code, s.logs)
		}
	}
	if !strings.Contains(s.logs.String(), "latch's own NATS connection is back") {
		t.Errorf("the log does not say the connection came back:\n%s", s.logs)
	}
}
