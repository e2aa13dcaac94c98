package accounts_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// fillRecords writes small keys until the bucket refuses one, then empty
// ones until not even those fit, and returns the first key written.
func fillRecords(t *testing.T, kv jetstream.KeyValue) {
	t.Helper()
	ctx := testCtx(t)
	for _, size := range []int{1024, 0} {
		for i := 0; ; i++ {
			if _, err := kv.Put(ctx, fmt.Sprintf("s%d.%d", size, i), make([]byte, size)); err != nil {
				if !strings.Contains(err.Error(), "maximum bytes") {
					t.Fatalf("fill: %v", err)
				}
				break
			}
		}
	}
}

// deviceAPI sends a device API request and returns the reply, or the
// error the service answered with.
func deviceAPI(t *testing.T, nc *nats.Conn, device, endpoint string, body any) (*nats.Msg, error) {
	t.Helper()
	b, _ := json.Marshal(body)
	m, err := nc.Request(accounts.DeviceAPIRequestSubject(device, endpoint), b, 5*time.Second)
	if err != nil {
		return nil, err
	}
	if e := m.Header.Get("Nats-Service-Error"); e != "" {
		return m, fmt.Errorf("%s %s", m.Header.Get("Nats-Service-Error-Code"), e)
	}
	return m, nil
}

// TestDeleteOnFullRecords is issue 15's "a full person can still delete":
// with the bucket filled until not even a delete fits, a device's plain
// KV delete is refused, and the device API's delete goes through, gives
// the room back and leaves the bucket's limit at the quota.
func TestDeleteOnFullRecords(t *testing.T) {
	t.Parallel()
	s := latchtest.MustStart(t, latchtest.Options{Dir: t.TempDir()})
	ctx := testCtx(t)
	small := accounts.DefaultLimits()
	small.Disk = 64 << 10
	if _, err := s.Service.CreatePerson(ctx, accounts.NewPerson{Name: "tight", Limits: small}); err != nil {
		t.Fatal(err)
	}
	s.MustCreatePerson(t, "other")
	d := s.MustIssueDevice(t, "tight", "laptop")
	c := s.MustConnect(t, d.CredsFile)
	kv := mustRecords(t, c.Conn)
	other := mustRecords(t, s.MustConnect(t, s.MustIssueDevice(t, "other", "laptop").CredsFile).Conn)
	mustPut(t, other, "s1024.0", "the other person's")

	fillRecords(t, kv)
	if err := kv.Delete(ctx, "s1024.0"); err == nil || !strings.Contains(err.Error(), "maximum bytes") {
		t.Fatalf("a KV delete on full records: %v, want a refusal for room", err)
	}
	if err := kv.Purge(ctx, "s1024.0"); err == nil {
		t.Fatal("a KV purge on full records went through; the test did not fill them")
	}
	before := usage(t, s, "tight")

	m, err := deviceAPI(t, c.Conn, d.PublicKey, accounts.DeviceEndpointRecordsDelete, accounts.RecordsDeleteRequest{Key: "s1024.0"})
	if err != nil {
		t.Fatalf("delete through the device API: %v", err)
	}
	var reply accounts.RecordsDeleteReply
	if err := json.Unmarshal(m.Data, &reply); err != nil || reply.Key != "s1024.0" || reply.Revision == 0 {
		t.Errorf("reply %s (%v), want the key and the delete's revision", m.Data, err)
	}
	if _, err := kv.Get(ctx, "s1024.0"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("get after the delete: %v, want not found", err)
	}
	after := usage(t, s, "tight")
	if after.Records >= before.Records {
		t.Errorf("records held %d bytes before the delete and %d after; want less", before.Records, after.Records)
	}
	if max := streamMaxBytes(t, kv); max != small.Disk {
		t.Errorf("the bucket's limit after the delete is %d, want the quota %d", max, small.Disk)
	}
	// The room came back: a put fits again.
	mustPut(t, kv, "again", strings.Repeat("x", 512))
	wantValue(t, other, "s1024.0", "the other person's")

	// Errors in the API's words; none touches the records.
	for _, tc := range []struct {
		body any
		want string
	}{
		{accounts.RecordsDeleteRequest{Key: "no such key"}, "400"},
		{accounts.RecordsDeleteRequest{Key: "missing"}, "404"},
		{[]int{1}, "the request must be a JSON object"},
	} {
		if _, err := deviceAPI(t, c.Conn, d.PublicKey, accounts.DeviceEndpointRecordsDelete, tc.body); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("delete %v: got %v, want %q", tc.body, err, tc.want)
		}
	}
}

// TestDeviceAPICaller: a device asks under its own key only, and what it
// asks touches its own person's records only.
func TestDeviceAPICaller(t *testing.T) {
	t.Parallel()
	s := latchtest.MustStart(t, latchtest.Options{Dir: t.TempDir()})
	ctx := testCtx(t)
	s.MustCreatePerson(t, "alice")
	s.MustCreatePerson(t, "bob")
	a1 := s.MustIssueDevice(t, "alice", "laptop")
	a2 := s.MustIssueDevice(t, "alice", "phone")
	b1 := s.MustIssueDevice(t, "bob", "laptop")
	ca := s.MustConnect(t, a1.CredsFile)
	cb := s.MustConnect(t, b1.CredsFile)
	alice, bob := mustRecords(t, ca.Conn), mustRecords(t, cb.Conn)
	mustPut(t, alice, "k", "alice's")
	mustPut(t, bob, "k", "bob's")

	// Under another device's key, the server refuses the publish.
	for _, other := range []string{a2.PublicKey, b1.PublicKey} {
		subject := accounts.DeviceAPIRequestSubject(other, accounts.DeviceEndpointRecordsDelete)
		if m, err := ca.Request(subject, []byte(`{"key":"k"}`), time.Second); err == nil {
			t.Errorf("alice's laptop asked under %s's key and was answered: %s", other, m.Data)
		}
	}
	violation := false
	for _, err := range ca.Errors() {
		violation = violation || strings.Contains(err.Error(), "Permissions Violation for Publish to \"latch.device.")
	}
	if !violation {
		t.Errorf("no permissions violation for publishing under another device's key; errors seen: %v", ca.Errors())
	}
	wantValue(t, alice, "k", "alice's")
	wantValue(t, bob, "k", "bob's")

	// Under its own key, a device deletes its own person's key only.
	if _, err := deviceAPI(t, cb.Conn, b1.PublicKey, accounts.DeviceEndpointRecordsDelete, accounts.RecordsDeleteRequest{Key: "k"}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Get(ctx, "k"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("bob's key after bob's delete: %v, want not found", err)
	}
	wantValue(t, alice, "k", "alice's")

	// LATCH's own users are no device.
	if _, err := deviceAPI(t, s.App, a1.PublicKey, accounts.DeviceEndpointRecordsDelete, accounts.RecordsDeleteRequest{Key: "k"}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("a request from inside LATCH: %v, want 403", err)
	}
	wantValue(t, alice, "k", "alice's")
}

func usage(t *testing.T, s *latchtest.Stack, person string) accounts.Usage {
	t.Helper()
	d, err := s.Service.Account(testCtx(t), person)
	if err != nil {
		t.Fatal(err)
	}
	if d.Usage == nil {
		t.Fatalf("account %s shows no usage", person)
	}
	return *d.Usage
}

func streamMaxBytes(t *testing.T, kv jetstream.KeyValue) int64 {
	t.Helper()
	st, err := kv.Status(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.MaxBytes
}
