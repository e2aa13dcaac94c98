package accounts_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The device template: DESIGN.md's ("What a device may do"), with what
// the official clients' KV APIs also need (the hardening issue): the
// stream API's get (nats.js v3's default), the consumer create without a
// filter (nats.js v2, nats.py, async-nats) and consumer info (nats.js v3,
// nats.py, nats.java); consumer deletes of one consumer at a time.
var (
	designPub = []string{
		"$KV.records.>",
		"$JS.API.STREAM.INFO.KV_records",
		"$JS.API.DIRECT.GET.KV_records",
		"$JS.API.DIRECT.GET.KV_records.>",
		"$JS.API.STREAM.MSG.GET.KV_records",
		"$JS.API.CONSUMER.CREATE.KV_records",
		"$JS.API.CONSUMER.CREATE.KV_records.>",
		"$JS.API.CONSUMER.INFO.KV_records.*",
		"$JS.API.CONSUMER.DELETE.KV_records.*",
		"$JS.FC.KV_records.>",
		"$JS.API.INFO",
		"$JS.API.STREAM.NAMES",
		"$JS.API.STREAM.LIST",
		"$SYS.REQ.USER.INFO",
		"latch.device.{{subject()}}.>",
	}
	designSub = []string{
		"_INBOX.>",
		"latch.releases.>",
		"latch.device.{{subject()}}.>",
	}
)

func TestDeviceTemplateMatchesDesign(t *testing.T) {
	tmpl := accounts.DeviceTemplate(0)
	if got, want := sorted(tmpl.Pub.Allow), sorted(designPub); !slices.Equal(got, want) {
		t.Errorf("publish allow: got %q, want %q", got, want)
	}
	if got, want := sorted(tmpl.Sub.Allow), sorted(designSub); !slices.Equal(got, want) {
		t.Errorf("subscribe allow: got %q, want %q", got, want)
	}
	if len(tmpl.Pub.Deny) != 0 || len(tmpl.Sub.Deny) != 0 {
		t.Errorf("deny lists: got pub %q sub %q, want none (allow lists alone)", tmpl.Pub.Deny, tmpl.Sub.Deny)
	}
	if tmpl.Resp != nil {
		t.Errorf("response permission: got %+v, want none", tmpl.Resp)
	}
}

func sorted(s []string) []string {
	return slices.Sorted(slices.Values(s))
}

// scopeFixture is one person with two devices, shared by the scope tests.
type scopeFixture struct {
	s             *latchtest.Stack
	person        accounts.Person
	laptop, phone latchtest.Device
}

func newScopeFixture(t *testing.T) *scopeFixture {
	s := startStack(t)
	f := &scopeFixture{s: s, person: s.MustCreatePerson(t, "alice")}
	f.laptop = s.MustIssueDevice(t, "alice", "laptop")
	f.phone = s.MustIssueDevice(t, "alice", "phone")
	mustPut(t, mustRecords(t, s.MustConnect(t, f.laptop.CredsFile).Conn), "keep", "me")
	return f
}

// wantPublishRefused runs call, which must publish on subject, on a
// connection of its own; it waits for the server to refuse the publish,
// then stops the call and checks that it failed. A refused request gets
// no answer at all, so without the cancel it would wait for its timeout.
func wantPublishRefused(t *testing.T, c *latchtest.Conn, subject string, call func(context.Context, *nats.Conn) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- call(ctx, c.Conn) }()
	deadline := time.Now().Add(waitFor)
	for countViolations(c, "Publish", subject) == 0 {
		select {
		case err := <-errc:
			if err == nil {
				t.Fatalf("the call succeeded; want %q", violation("Publish", subject))
			}
			// Failed on its own; the violation must still come.
			waitViolation(t, c, "Publish", subject)
			return
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %v; errors so far: %q", violation("Publish", subject), waitFor, c.Errors())
		}
	}
	cancel()
	select {
	case err := <-errc:
		if err == nil {
			t.Errorf("the call succeeded despite %q; want it to fail", violation("Publish", subject))
		}
	case <-time.After(waitFor):
		t.Fatalf("the call did not return %v after it was cancelled", waitFor)
	}
}

func request(subject string) func(context.Context, *nats.Conn) error {
	return func(ctx context.Context, nc *nats.Conn) error {
		_, err := nc.RequestWithContext(ctx, subject, []byte("{}"))
		return err
	}
}

func jsCall(f func(context.Context, jetstream.JetStream) error) func(context.Context, *nats.Conn) error {
	return func(ctx context.Context, nc *nats.Conn) error {
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		return f(ctx, js)
	}
}

func TestDeviceCannotPublishOutsideItsTemplate(t *testing.T) {
	t.Parallel()
	f := newScopeFixture(t)
	acct := f.person.Account
	tests := []struct {
		name    string
		subject string
		call    func(context.Context, *nats.Conn) error
	}{
		{"create a bucket", "$JS.API.STREAM.CREATE.KV_other", jsCall(func(ctx context.Context, js jetstream.JetStream) error {
			_, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "other"})
			return err
		})},
		{"create a stream", "$JS.API.STREAM.CREATE.S", jsCall(func(ctx context.Context, js jetstream.JetStream) error {
			_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}})
			return err
		})},
		{"delete the bucket", "$JS.API.STREAM.DELETE.KV_records", jsCall(func(ctx context.Context, js jetstream.JetStream) error {
			return js.DeleteKeyValue(ctx, accounts.RecordsBucket)
		})},
		{"delete the stream", "$JS.API.STREAM.DELETE.KV_records", jsCall(func(ctx context.Context, js jetstream.JetStream) error {
			return js.DeleteStream(ctx, "KV_records")
		})},
		{"raise the bucket's quota", "$JS.API.STREAM.UPDATE.KV_records", jsCall(func(ctx context.Context, js jetstream.JetStream) error {
			_, err := js.UpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: accounts.RecordsBucket, MaxBytes: 1 << 40})
			return err
		})},
		{"purge the stream", "$JS.API.STREAM.PURGE.KV_records", jsCall(func(ctx context.Context, js jetstream.JetStream) error {
			st, err := js.Stream(ctx, "KV_records")
			if err != nil {
				return errors.New("stream info refused: " + err.Error())
			}
			return st.Purge(ctx)
		})},
		{"delete a message", "$JS.API.STREAM.MSG.DELETE.KV_records", jsCall(func(ctx context.Context, js jetstream.JetStream) error {
			st, err := js.Stream(ctx, "KV_records")
			if err != nil {
				return errors.New("stream info refused: " + err.Error())
			}
			return st.DeleteMsg(ctx, 1)
		})},
		{"create a durable consumer on another stream", "$JS.API.CONSUMER.CREATE.OTHER.c.x", request("$JS.API.CONSUMER.CREATE.OTHER.c.x")},
		{"create a durable consumer the old way", "$JS.API.CONSUMER.DURABLE.CREATE.KV_records.d", request("$JS.API.CONSUMER.DURABLE.CREATE.KV_records.d")},
		{"delete every consumer at once", "$JS.API.CONSUMER.DELETE.KV_records.a.b", request("$JS.API.CONSUMER.DELETE.KV_records.a.b")},
		{"list the consumers", "$JS.API.CONSUMER.LIST.KV_records", request("$JS.API.CONSUMER.LIST.KV_records")},
		{"pause a consumer", "$JS.API.CONSUMER.PAUSE.KV_records.c", request("$JS.API.CONSUMER.PAUSE.KV_records.c")},
		{"purge the account's JetStream", "$JS.API.ACCOUNT.PURGE." + acct, request("$JS.API.ACCOUNT.PURGE." + acct)},
		{"ping the servers", "$SYS.REQ.SERVER.PING", request("$SYS.REQ.SERVER.PING")},
		{"push an account JWT", "$SYS.REQ.CLAIMS.UPDATE", request("$SYS.REQ.CLAIMS.UPDATE")},
		{"look up its account JWT", "$SYS.REQ.ACCOUNT." + acct + ".CLAIMS.LOOKUP", request("$SYS.REQ.ACCOUNT." + acct + ".CLAIMS.LOOKUP")},
		{"ask for account info", "$SYS.REQ.ACCOUNT." + acct + ".INFO", request("$SYS.REQ.ACCOUNT." + acct + ".INFO")},
		{"any subject", "foo.bar", request("foo.bar")},
		{"another device's channel", "latch.device." + f.phone.PublicKey + ".x", request("latch.device." + f.phone.PublicKey + ".x")},
		{"the releases", "latch.releases.v1", request("latch.releases.v1")},
		{"the admin service", "latch.admin.v1.account.ls", request("latch.admin.v1.account.ls")},
		{"an inbox", "_INBOX.x", request("_INBOX.x")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := f.s.MustConnect(t, f.laptop.CredsFile)
			wantPublishRefused(t, c, tt.subject, tt.call)
		})
	}

	// Nothing the refused calls asked for happened.
	c := f.s.MustConnect(t, f.laptop.CredsFile)
	js, err := jetstream.New(c.Conn)
	if err != nil {
		t.Fatal(err)
	}
	names := js.StreamNames(testCtx(t))
	var streams []string
	for n := range names.Name() {
		streams = append(streams, n)
	}
	if err := names.Err(); err != nil {
		t.Fatalf("stream names: %v", err)
	}
	// The bucket and its history, which the device may name but not
	// reach: no stream made, none deleted.
	slices.Sort(streams)
	if want := []string{"KV_records", accounts.HistoryStream}; !slices.Equal(streams, want) {
		t.Errorf("streams: got %q, want %q", streams, want)
	}
	kv := mustRecords(t, c.Conn)
	wantValue(t, kv, "keep", "me")
	st, err := kv.Status(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.MaxBytes; got != accounts.DefaultLimits().Disk {
		t.Errorf("bucket max bytes: got %d, want %d", got, accounts.DefaultLimits().Disk)
	}
}

func TestDeviceCannotSubscribeOutsideItsTemplate(t *testing.T) {
	t.Parallel()
	f := newScopeFixture(t)
	other := "latch.device." + f.phone.PublicKey + ".>"
	tests := []struct{ name, subject string }{
		{"all of $SYS", "$SYS.>"},
		{"connect events", "$SYS.ACCOUNT.*.CONNECT"},
		{"everything", ">"},
		{"another device's channel", other},
		{"every device's channel", "latch.device.*.>"},
		{"the bucket's subjects", "$KV.records.>"},
		{"the admin service", "latch.admin.v1.>"},
		{"the audit trail", "latch.audit.>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := f.s.MustConnect(t, f.laptop.CredsFile)
			if _, err := c.SubscribeSync(tt.subject); err != nil {
				t.Fatalf("subscribe: %v", err)
			}
			waitViolation(t, c, "Subscription", tt.subject)
		})
	}

	// The phone's own messages do not reach a laptop that tried to listen.
	c := f.s.MustConnect(t, f.laptop.CredsFile)
	spy, err := c.SubscribeSync(other)
	if err != nil {
		t.Fatal(err)
	}
	waitViolation(t, c, "Subscription", other)
	phone := f.s.MustConnect(t, f.phone.CredsFile)
	own, err := phone.SubscribeSync(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := phone.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := phone.Publish("latch.device."+f.phone.PublicKey+".hello", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, err := own.NextMsg(waitFor); err != nil {
		t.Fatalf("the phone on its own channel: %v", err)
	}
	// The server delivered the message before it answers this ping, so a
	// message for the spy would be queued by now.
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := spy.Pending(); n != 0 {
		t.Errorf("messages the laptop got on the phone's channel: got %d, want 0", n)
	}
	wantNoViolations(t, phone)
}

// TestDeviceMayUseItsTemplate checks the other side: everything the
// template allows works, with no violation reported.
func TestDeviceMayUseItsTemplate(t *testing.T) {
	t.Parallel()
	f := newScopeFixture(t)
	ctx := testCtx(t)
	c := f.s.MustConnect(t, f.laptop.CredsFile)
	own := "latch.device." + f.laptop.PublicKey

	// Its own channel, both ways.
	sub, err := c.SubscribeSync(own + ".>")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(own+".ping", []byte("pong")); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(waitFor)
	if err != nil {
		t.Fatalf("own channel: %v", err)
	}
	if m.Subject != own+".ping" || string(m.Data) != "pong" {
		t.Errorf("own channel: got %q %q, want %q %q", m.Subject, m.Data, own+".ping", "pong")
	}
	if _, err := c.SubscribeSync("latch.releases.>"); err != nil {
		t.Fatal(err)
	}

	// $SYS.REQ.USER.INFO answers with who the device is and what it may do.
	m, err = c.Request("$SYS.REQ.USER.INFO", nil, waitFor)
	if err != nil {
		t.Fatalf("user info: %v", err)
	}
	var info struct {
		Data struct {
			User        string `json:"user"`
			Account     string `json:"account"`
			AccountName string `json:"account_name"`
			UserName    string `json:"user_name"`
			Permissions struct {
				Publish   struct{ Allow []string } `json:"publish"`
				Subscribe struct{ Allow []string } `json:"subscribe"`
			} `json:"permissions"`
		} `json:"data"`
	}
	if err := json.Unmarshal(m.Data, &info); err != nil {
		t.Fatalf("user info %s: %v", m.Data, err)
	}
	for _, c := range []struct{ field, got, want string }{
		{"user", info.Data.User, f.laptop.PublicKey},
		{"account", info.Data.Account, f.person.Account},
		{"account name", info.Data.AccountName, "alice"},
		{"user name", info.Data.UserName, "laptop"},
	} {
		if c.got != c.want {
			t.Errorf("user info %s: got %q, want %q", c.field, c.got, c.want)
		}
	}
	expand := func(s []string) []string {
		out := make([]string, len(s))
		for i, x := range s {
			out[i] = strings.ReplaceAll(x, "{{subject()}}", f.laptop.PublicKey)
		}
		return sorted(out)
	}
	if got, want := sorted(info.Data.Permissions.Publish.Allow), expand(designPub); !slices.Equal(got, want) {
		t.Errorf("publish permissions the server applies: got %q, want %q", got, want)
	}
	if got, want := sorted(info.Data.Permissions.Subscribe.Allow), expand(designSub); !slices.Equal(got, want) {
		t.Errorf("subscribe permissions the server applies: got %q, want %q", got, want)
	}

	// The read-only JetStream API that `nats kv ls` and `nats account info` use.
	js, err := jetstream.New(c.Conn)
	if err != nil {
		t.Fatal(err)
	}
	ai, err := js.AccountInfo(ctx)
	if err != nil {
		t.Fatalf("account info: %v", err)
	}
	if ai.Streams != 2 {
		t.Errorf("account info streams: got %d, want 2 (the bucket and its history)", ai.Streams)
	}
	lister := js.ListStreams(ctx)
	var streams []string
	for si := range lister.Info() {
		streams = append(streams, si.Config.Name)
	}
	if err := lister.Err(); err != nil {
		t.Fatalf("list streams: %v", err)
	}
	// The bucket and its history, which the device may name but not
	// reach: no stream made, none deleted.
	slices.Sort(streams)
	if want := []string{"KV_records", accounts.HistoryStream}; !slices.Equal(streams, want) {
		t.Errorf("streams: got %q, want %q", streams, want)
	}
	var buckets []string
	for b := range js.KeyValueStoreNames(ctx).Name() {
		buckets = append(buckets, b)
	}
	if want := []string{accounts.RecordsBucket}; !slices.Equal(buckets, want) {
		t.Errorf("buckets: got %q, want %q", buckets, want)
	}

	// Everything a KV client does.
	kv := mustRecords(t, c.Conn)
	rev, err := kv.Create(ctx, "k", []byte("1"))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := kv.Update(ctx, "k", []byte("2"), rev); err != nil {
		t.Fatalf("update: %v", err)
	}
	wantValue(t, kv, "k", "2")
	w, err := kv.Watch(ctx, "k")
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	if e := nextUpdate(t, w); e == nil || string(e.Value()) != "2" {
		t.Errorf("watch: got %v, want k=2", describe(e))
	}
	w.Stop()
	if err := kv.Purge(ctx, "k"); err != nil {
		t.Fatalf("purge a key: %v", err)
	}
	wantNoKey(t, kv, "k")
	wantValue(t, kv, "keep", "me")

	wantNoViolations(t, c)
}
