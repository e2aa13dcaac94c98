package accounts_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/nats-io/nats.go/jetstream"
)

// A device connection holds at most DeviceSubs subscriptions, and any
// connection of the person's account at most Subs (nats-server applies an
// account's subscription limit to each of its connections): one device
// cannot take the server's memory with subscriptions.
func TestSubscriptionLimits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name             string
		subs, deviceSubs int64
		want             int // the most a device may hold
	}{
		{"device limit", 1000, 10, 10},
		{"account limit below the device's", 6, 10, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := accounts.DefaultLimits()
			l.Subs, l.DeviceSubs = tc.subs, tc.deviceSubs
			s := latchtest.MustStart(t, latchtest.Options{Dir: t.TempDir(), Limits: l})
			s.MustCreatePerson(t, "alice")
			c := s.MustConnect(t, s.MustIssueDevice(t, "alice", "laptop").CredsFile)
			for i := range tc.want + 1 {
				if _, err := c.SubscribeSync(fmt.Sprintf("_INBOX.s%d", i)); err != nil {
					t.Fatal(err)
				}
				if err := c.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(200 * time.Millisecond) // the -ERR arrives asynchronously
			errs := c.Errors()
			if len(errs) != 1 || !strings.Contains(strings.ToLower(errs[0].Error()), "maximum subscriptions") {
				t.Errorf("%d subscriptions with a limit of %d: got errors %v, want one: maximum subscriptions exceeded", tc.want+1, tc.want, errs)
			}
		})
	}
}

// Every consumer of a records bucket goes once idle, durable ones too: a
// device cannot leave consumers behind. An admin lists and clears them.
func TestRecordsConsumersGoWhenIdle(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	s.MustCreatePerson(t, "alice")
	dev := s.MustConnect(t, s.MustIssueDevice(t, "alice", "laptop").CredsFile)
	js, err := jetstream.New(dev.Conn)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "KV_records")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.ConsumerLimits.InactiveThreshold; got != accounts.ConsumerIdle {
		t.Fatalf("records stream consumer limit: got %s, want %s", got, accounts.ConsumerIdle)
	}
	// A durable consumer, as a device may make one, gets the limit.
	req, _ := json.Marshal(map[string]any{"stream_name": "KV_records", "config": map[string]any{
		"durable_name": "hog", "ack_policy": "none", "filter_subject": "$KV.records.>",
	}})
	msg, err := dev.Request("$JS.API.CONSUMER.CREATE.KV_records.hog.$KV.records.>", req, 5*time.Second)
	if err != nil || strings.Contains(string(msg.Data), `"error"`) {
		t.Fatalf("create a durable consumer: %v %s", err, msg.Data)
	}
	// One that asks to stay idle longer is refused.
	req, _ = json.Marshal(map[string]any{"stream_name": "KV_records", "config": map[string]any{
		"durable_name": "stayer", "ack_policy": "none", "inactive_threshold": int64(time.Hour),
	}})
	if msg, err := dev.Request("$JS.API.CONSUMER.CREATE.KV_records.stayer", req, 5*time.Second); err != nil || !strings.Contains(string(msg.Data), "inactive_threshold") && !strings.Contains(string(msg.Data), "inactive threshold") {
		t.Errorf("a consumer idle for an hour: got %v %s, want it refused", err, msg.Data)
	}

	cs, err := s.Service.RecordsConsumers(ctx, "alice")
	if err != nil || len(cs) != 1 || cs[0].Name != "hog" || !cs[0].Durable || cs[0].Idle != accounts.ConsumerIdle {
		t.Fatalf("consumers: got %+v, %v; want hog, durable, removed after %s idle", cs, err, accounts.ConsumerIdle)
	}
	n, err := s.Service.ClearRecordsConsumers(ctx, "alice")
	if err != nil || n != 1 {
		t.Fatalf("clear: got %d, %v", n, err)
	}
	if cs, err := s.Service.RecordsConsumers(ctx, "alice"); err != nil || len(cs) != 0 {
		t.Errorf("consumers after clear: got %+v, %v", cs, err)
	}
}

// A bucket made before the consumer limit gets it from Refresh.
func TestRefreshLimitsAnOldBucket(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	p := s.MustCreatePerson(t, "alice")
	dev := s.MustConnect(t, s.MustIssueDevice(t, "alice", "laptop").CredsFile)
	js, _ := jetstream.New(dev.Conn)

	// As an older latch left it: no consumer limit, no bucket version.
	if err := s.Service.UnlimitRecordsConsumers(ctx, p.Name); err != nil {
		t.Fatal(err)
	}
	kv := mustKV(t, s, accounts.PersonsBucket)
	e, _ := kv.Get(ctx, "alice")
	var raw map[string]any
	json.Unmarshal(e.Value(), &raw)
	delete(raw, "bucket_version")
	b, _ := json.Marshal(raw)
	if _, err := kv.Put(ctx, "alice", b); err != nil {
		t.Fatal(err)
	}
	if st, err := js.Stream(ctx, "KV_records"); err != nil || st.CachedInfo().Config.ConsumerLimits.InactiveThreshold != 0 {
		t.Fatalf("the bucket before refresh: %v, want no consumer limit", err)
	}
	if _, _, err := s.Service.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "KV_records")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.ConsumerLimits.InactiveThreshold; got != accounts.ConsumerIdle {
		t.Errorf("after refresh: consumer limit %s, want %s", got, accounts.ConsumerIdle)
	}
	if got, _ := s.Service.Person(ctx, "alice"); got.BucketVersion == 0 {
		t.Error("the person's bucket version was not recorded")
	}
}
