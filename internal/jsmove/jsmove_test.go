package jsmove_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/internal/jsmove"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Both ends keep JetStream encrypted at rest, each with a key of its own:
// a snapshot carries plaintext, and the destination encrypts anew.
const accountsConf = `accounts { APP { jetstream: enabled, users: [{user: app, password: s3cret}] } }`

func TestMove(t *testing.T) {
	src := mustConnect(t, mustStartServer(t, "src", "src-key", ""))
	want := mustSeed(t, src)
	nodes := mustStartCluster(t, "dst-key")
	dst := mustConnect(t, nodes[0])

	for _, tc := range []struct {
		name     string
		replicas int
	}{
		{name: "into a cluster at R1", replicas: 1},
		{name: "into a cluster at R3", replicas: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, stream := range []string{"KV_CFG", "ORDERS"} {
				moved, err := jsmove.Move(mustContext(t), src, dst, stream, func(c *jetstream.StreamConfig) {
					c.Replicas = tc.replicas
				})
				if err != nil {
					t.Fatalf("move %s: %v", stream, err)
				}
				t.Cleanup(func() { mustDeleteStream(t, dst, stream) })
				si := waitCurrent(t, dst, stream)
				if si.Config.Replicas != tc.replicas || si.Cluster == nil || len(si.Cluster.Replicas) != tc.replicas-1 {
					t.Errorf("%s: got %d replicas configured, cluster %+v; want %d", stream, si.Config.Replicas, si.Cluster, tc.replicas)
				}
				if moved.Msgs != si.State.Msgs || moved.Bytes != si.State.Bytes || moved.Consumers != si.State.Consumers {
					t.Errorf("%s: moved %+v; the destination has %d msgs, %d bytes, %d consumers",
						stream, moved, si.State.Msgs, si.State.Bytes, si.State.Consumers)
				}
				assertSameMessages(t, src, dst, stream)
			}
			assertSameKV(t, src, dst, want.keys)
			assertConsumer(t, dst, want.consumer)
		})
	}

	t.Run("destination has the stream", func(t *testing.T) {
		js := mustJetStream(t, dst)
		ctx := mustContext(t)
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"theirs.>"}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { mustDeleteStream(t, dst, "ORDERS") })
		if _, err := js.Publish(ctx, "theirs.1", []byte("keep me")); err != nil {
			t.Fatal(err)
		}
		before := mustStreamInfo(t, dst, "ORDERS")

		_, err := jsmove.Move(ctx, src, dst, "ORDERS", nil)
		if !errors.Is(err, jsmove.ErrStreamExists) {
			t.Fatalf("got %v, want ErrStreamExists", err)
		}
		if !strings.Contains(err.Error(), `"ORDERS"`) {
			t.Errorf("error %q does not name the stream", err)
		}
		after := mustStreamInfo(t, dst, "ORDERS")
		if after.State.Msgs != 1 || after.State.LastSeq != 1 || !after.Created.Equal(before.Created) ||
			!reflect.DeepEqual(after.Config.Subjects, []string{"theirs.>"}) {
			t.Errorf("destination's stream changed: got %+v, %+v; want %+v, %+v", after.Config, after.State, before.Config, before.State)
		}
	})

	t.Run("unknown stream", func(t *testing.T) {
		_, err := jsmove.Move(mustContext(t), src, dst, "NOPE", nil)
		if !errors.Is(err, jsmove.ErrStreamNotFound) {
			t.Fatalf("got %v, want ErrStreamNotFound", err)
		}
		if !strings.Contains(err.Error(), `"NOPE"`) {
			t.Errorf("error %q does not name the stream", err)
		}
		assertNoStream(t, dst, "NOPE")
	})

	t.Run("failed restore leaves nothing", func(t *testing.T) {
		// The destination accepts the configuration, then refuses the
		// first message that is too big for it, half way into the restore.
		_, err := jsmove.Move(mustContext(t), src, dst, "ORDERS", func(c *jetstream.StreamConfig) {
			c.MaxMsgSize = 8
		})
		if err == nil || !strings.Contains(err.Error(), "exceeds maximum message size") {
			t.Fatalf("got %v, want the destination's error about the message size", err)
		}
		assertNoStream(t, dst, "ORDERS")
	})

	t.Run("restore into a standalone server", func(t *testing.T) {
		s := mustStartServer(t, "other", "other-key", "")
		other := mustConnect(t, s)
		if _, err := jsmove.Move(mustContext(t), src, other, "ORDERS", nil); err != nil {
			t.Fatal(err)
		}
		assertSameMessages(t, src, other, "ORDERS")
		assertConsumer(t, other, want.consumer)
		assertEncrypted(t, s, "Order-Id")
	})

	t.Run("stream bigger than the snapshot window", func(t *testing.T) {
		// 12MiB that S2 cannot shrink: more than the source's 8MiB window
		// of unacked chunks, so the move goes on only if the acks work.
		mustPublishRandom(t, src, "BIG", 96, 128*1024)
		moved, err := jsmove.Move(mustContext(t), src, dst, "BIG", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { mustDeleteStream(t, dst, "BIG") })
		if moved.Msgs != 96 || moved.Bytes < 96*128*1024 {
			t.Errorf("moved %d msgs, %d bytes; want 96 msgs, at least %d bytes", moved.Msgs, moved.Bytes, 96*128*1024)
		}
		assertSameMessages(t, src, dst, "BIG")
	})

	t.Run("cancelled move leaves nothing", func(t *testing.T) {
		// Cancelled at whatever step it has reached; none may leave a
		// stream behind.
		for _, after := range []time.Duration{time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond} {
			ctx, cancel := context.WithTimeout(context.Background(), after)
			_, err := jsmove.Move(ctx, src, dst, "BIG", nil)
			cancel()
			if err == nil {
				mustDeleteStream(t, dst, "BIG")
				continue
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("cancelled after %v: got %v, want context.DeadlineExceeded", after, err)
			}
			assertNoStream(t, dst, "BIG")
		}
	})
	assertEncrypted(t, nodes[0], "Order-Id")
}

func TestMoveEdit(t *testing.T) {
	src := mustConnect(t, mustStartServer(t, "src", "", ""))
	dst := mustConnect(t, mustStartServer(t, "dst", "", ""))
	ctx := mustContext(t)
	cfg := jetstream.StreamConfig{Name: "META", Subjects: []string{"meta.>"}, Metadata: map[string]string{"owner": "ops"}}
	if _, err := mustJetStream(t, src).CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}

	_, err := jsmove.Move(ctx, src, dst, "META", func(c *jetstream.StreamConfig) { c.Name = "OTHER" })
	if err == nil || !strings.Contains(err.Error(), "renamed") {
		t.Errorf("rename: got %v, want an error about the rename", err)
	}
	assertNoStream(t, dst, "OTHER")

	if _, err := jsmove.Move(ctx, src, dst, "META", func(c *jetstream.StreamConfig) { c.Description = "moved" }); err != nil {
		t.Fatal(err)
	}
	si := mustStreamInfo(t, dst, "META")
	if si.Config.Description != "moved" || si.Config.Metadata["owner"] != "ops" ||
		!reflect.DeepEqual(si.Config.Subjects, cfg.Subjects) {
		t.Errorf("got description %q, metadata %v, subjects %v; want %q, owner=ops, %v",
			si.Config.Description, si.Config.Metadata, si.Config.Subjects, "moved", cfg.Subjects)
	}
}

// seeded is what mustSeed wrote that the destination must show.
type seeded struct {
	keys     []string
	consumer jetstream.ConsumerInfo
}

// mustSeed writes a KV bucket CFG with history, a deleted key and a purged
// one, and a stream ORDERS with headers, a deleted message and a durable
// consumer "proc" that has acked some of what it was given.
func mustSeed(tb testing.TB, nc *nats.Conn) seeded {
	tb.Helper()
	ctx := mustContext(tb)
	js := mustJetStream(tb, nc)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "CFG", History: 5})
	if err != nil {
		tb.Fatal(err)
	}
	for _, op := range []struct{ key, value string }{
		{"a", "1"}, {"a", "2"}, {"b", "x"}, {"c", "gone"}, {"c", ""}, {"d", "1"}, {"d", "2"}, {"d", "-"}, {"a", "3"},
	} {
		switch op.value {
		case "":
			err = kv.Delete(ctx, op.key)
		case "-":
			err = kv.Purge(ctx, op.key)
		default:
			_, err = kv.PutString(ctx, op.key, op.value)
		}
		if err != nil {
			tb.Fatal(err)
		}
		time.Sleep(time.Millisecond) // distinct times, so a time mix-up shows
	}

	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		tb.Fatal(err)
	}
	for i := 1; i <= 20; i++ {
		m := nats.NewMsg(fmt.Sprintf("orders.%d", i%3))
		m.Header.Set("Order-Id", strconv.Itoa(i))
		m.Data = []byte(strings.Repeat("o", i))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			tb.Fatal(err)
		}
	}
	orders, err := js.Stream(ctx, "ORDERS")
	if err != nil {
		tb.Fatal(err)
	}
	if err := orders.DeleteMsg(ctx, 4); err != nil {
		tb.Fatal(err)
	}
	c, err := orders.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "proc", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		tb.Fatal(err)
	}
	batch, err := c.FetchNoWait(10)
	if err != nil {
		tb.Fatal(err)
	}
	// Stream sequences 1-3 and 5-11 arrive; acking 1-7 and 10 leaves the
	// floor at 7 with 8, 9 and 11 pending.
	for m := range batch.Messages() {
		md, err := m.Metadata()
		if err != nil {
			tb.Fatal(err)
		}
		if s := md.Sequence.Stream; s <= 7 || s == 10 {
			if err := m.DoubleAck(ctx); err != nil {
				tb.Fatal(err)
			}
		}
	}
	ci, err := c.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	if ci.AckFloor.Stream != 7 || ci.Delivered.Stream != 11 || ci.NumAckPending != 3 {
		tb.Fatalf("seeded consumer: ack floor %d, delivered %d, %d pending; want 7, 11, 3",
			ci.AckFloor.Stream, ci.Delivered.Stream, ci.NumAckPending)
	}
	return seeded{keys: []string{"a", "b", "c", "d"}, consumer: *ci}
}

// assertSameMessages compares stream name on both sides, sequence by
// sequence: the gaps, and each message's subject, time, headers and data.
func assertSameMessages(tb testing.TB, src, dst *nats.Conn, name string) {
	tb.Helper()
	ctx := mustContext(tb)
	from, to := mustStreamInfo(tb, src, name), mustStreamInfo(tb, dst, name)
	if from.State.Msgs != to.State.Msgs || from.State.FirstSeq != to.State.FirstSeq ||
		from.State.LastSeq != to.State.LastSeq || from.State.NumDeleted != to.State.NumDeleted {
		tb.Errorf("%s: got %d msgs, seq %d-%d, %d deleted; want %d, %d-%d, %d", name,
			to.State.Msgs, to.State.FirstSeq, to.State.LastSeq, to.State.NumDeleted,
			from.State.Msgs, from.State.FirstSeq, from.State.LastSeq, from.State.NumDeleted)
	}
	a, b := mustStream(tb, src, name), mustStream(tb, dst, name)
	for seq := from.State.FirstSeq; seq <= from.State.LastSeq; seq++ {
		want, werr := a.GetMsg(ctx, seq)
		got, gerr := b.GetMsg(ctx, seq)
		switch {
		case errors.Is(werr, jetstream.ErrMsgNotFound):
			if !errors.Is(gerr, jetstream.ErrMsgNotFound) {
				tb.Errorf("%s seq %d: got %v, want no message", name, seq, gerr)
			}
			continue
		case werr != nil:
			tb.Fatal(werr)
		case gerr != nil:
			tb.Errorf("%s seq %d: %v", name, seq, gerr)
			continue
		}
		if got.Subject != want.Subject || !got.Time.Equal(want.Time) || string(got.Data) != string(want.Data) {
			tb.Errorf("%s seq %d: got %s at %v %q; want %s at %v %q", name, seq,
				got.Subject, got.Time, got.Data, want.Subject, want.Time, want.Data)
		}
		if !reflect.DeepEqual(got.Header, want.Header) {
			tb.Errorf("%s seq %d: headers: got %v, want %v", name, seq, got.Header, want.Header)
		}
	}
}

// assertSameKV compares each key's history on both sides, and checks that
// the deleted and the purged key read as gone on the destination.
func assertSameKV(tb testing.TB, src, dst *nats.Conn, keys []string) {
	tb.Helper()
	ctx := mustContext(tb)
	from, to := mustKV(tb, src, "CFG"), mustKV(tb, dst, "CFG")
	for _, key := range keys {
		want, err := from.History(ctx, key)
		if err != nil {
			tb.Fatal(err)
		}
		// Right after a replicated restore, a watcher may be served by a
		// replica still applying the leader's snapshot, and see nothing
		// for a moment; a client asks again.
		got, err := to.History(ctx, key)
		for deadline := time.Now().Add(5 * time.Second); errors.Is(err, jetstream.ErrKeyNotFound) && time.Now().Before(deadline); {
			time.Sleep(100 * time.Millisecond)
			got, err = to.History(ctx, key)
		}
		if err != nil {
			tb.Fatalf("history of %s: %v", key, err)
		}
		if len(got) != len(want) {
			tb.Errorf("history of %s: got %d entries, want %d", key, len(got), len(want))
			continue
		}
		for i := range want {
			g, w := got[i], want[i]
			if g.Revision() != w.Revision() || string(g.Value()) != string(w.Value()) ||
				g.Operation() != w.Operation() || !g.Created().Equal(w.Created()) {
				tb.Errorf("history of %s[%d]: got rev %d %q %v %v; want rev %d %q %v %v", key, i,
					g.Revision(), g.Value(), g.Operation(), g.Created(), w.Revision(), w.Value(), w.Operation(), w.Created())
			}
		}
	}
	e, err := to.Get(ctx, "a")
	if err != nil || string(e.Value()) != "3" {
		tb.Errorf("get a: got %v, %v; want 3", e, err)
	}
	for _, key := range []string{"c", "d"} {
		if _, err := to.Get(ctx, key); !errors.Is(err, jetstream.ErrKeyNotFound) {
			tb.Errorf("get %s: got %v, want ErrKeyNotFound", key, err)
		}
	}
}

// assertConsumer checks that the destination has the consumer, at once,
// with the source's delivered and ack state.
func assertConsumer(tb testing.TB, nc *nats.Conn, want jetstream.ConsumerInfo) {
	tb.Helper()
	// A restored replicated consumer answers once its replicas have
	// elected a leader; until then a request goes unanswered, so each
	// try is short and the test waits for one that is.
	stream := mustStream(tb, nc, want.Stream)
	var got *jetstream.ConsumerInfo
	latchtest.Eventually(tb, "a restored consumer answers", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := stream.Consumer(ctx, want.Name)
		if err != nil {
			return fmt.Errorf("consumer %s: %w", want.Name, err)
		}
		got, err = c.Info(ctx)
		return err
	})
	// The sequences, not the times of last activity: a snapshot carries
	// the consumer's stored state, which has none.
	type seqs struct{ ackConsumer, ackStream, delConsumer, delStream uint64 }
	seqsOf := func(ci *jetstream.ConsumerInfo) seqs {
		return seqs{ci.AckFloor.Consumer, ci.AckFloor.Stream, ci.Delivered.Consumer, ci.Delivered.Stream}
	}
	if seqsOf(got) != seqsOf(&want) || got.NumAckPending != want.NumAckPending || got.Config.AckPolicy != want.Config.AckPolicy {
		tb.Errorf("consumer %s: got %+v, %d pending; want %+v, %d", want.Name,
			seqsOf(got), got.NumAckPending, seqsOf(&want), want.NumAckPending)
	}
}

// assertEncrypted checks that s's store does not hold text in the clear,
// as it would without encryption at rest.
func assertEncrypted(tb testing.TB, s *server.Server, text string) {
	tb.Helper()
	err := filepath.WalkDir(s.JetStreamConfig().StoreDir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // a deleted stream's files, going as we walk
		}
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err == nil && bytes.Contains(b, []byte(text)) {
			return fmt.Errorf("%s holds %q in the clear", path, text)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	})
	if err != nil {
		tb.Error(err)
	}
}

// mustPublishRandom fills a new stream with n messages of size random bytes.
func mustPublishRandom(tb testing.TB, nc *nats.Conn, name string, n, size int) {
	tb.Helper()
	ctx := mustContext(tb)
	js := mustJetStream(tb, nc)
	// Direct gets, so that comparing the streams later does not spend
	// seconds on JSON and base64.
	cfg := jetstream.StreamConfig{Name: name, Subjects: []string{strings.ToLower(name)}, AllowDirect: true}
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		tb.Fatal(err)
	}
	data := make([]byte, size)
	for range n {
		rand.Read(data)
		if _, err := js.Publish(ctx, strings.ToLower(name), data); err != nil {
			tb.Fatal(err)
		}
	}
}

func assertNoStream(tb testing.TB, nc *nats.Conn, name string) {
	tb.Helper()
	if _, err := mustJetStream(tb, nc).Stream(mustContext(tb), name); !errors.Is(err, jetstream.ErrStreamNotFound) {
		tb.Errorf("stream %s on the destination: got %v, want ErrStreamNotFound", name, err)
	}
}

// mustStartServer starts a JetStream server in process; key, when set,
// encrypts its store. cluster, when set, is its cluster block.
func mustStartServer(tb testing.TB, name, key, cluster string) *server.Server {
	tb.Helper()
	dir := tb.TempDir()
	js := fmt.Sprintf("store_dir: %q", filepath.Join(dir, "js"))
	if key != "" {
		js += fmt.Sprintf(", key: %q", key)
	}
	conf := fmt.Sprintf("server_name: %s\nhost: 127.0.0.1\nport: -1\njetstream { %s }\n%s\n%s\n", name, js, accountsConf, cluster)
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	opts.NoSigs, opts.NoLog = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	s.Start()
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatalf("server %s did not start", name)
	}
	return s
}

// mustStartCluster starts three clustered JetStream servers and waits
// until the meta leader counts all three as peers.
func mustStartCluster(tb testing.TB, key string) []*server.Server {
	tb.Helper()
	routes := latchtest.RouteAddrs(tb, 3)
	urls := make([]string, len(routes))
	for i, r := range routes {
		urls[i] = fmt.Sprintf("%q", "nats://"+r)
	}
	var nodes []*server.Server
	for i, r := range routes {
		cluster := fmt.Sprintf("cluster { name: dst, listen: %q, routes: [%s] }", r, strings.Join(urls, ", "))
		nodes = append(nodes, mustStartServer(tb, fmt.Sprintf("n%d", i), key, cluster))
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range nodes {
			if len(s.JetStreamClusterPeers()) == len(nodes) {
				return nodes
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatal("the cluster's meta leader did not see all three nodes")
	return nil
}

func mustConnect(tb testing.TB, s *server.Server) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo("app", "s3cret"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

func mustContext(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

func mustJetStream(tb testing.TB, nc *nats.Conn) jetstream.JetStream {
	tb.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return js
}

func mustStream(tb testing.TB, nc *nats.Conn, name string) jetstream.Stream {
	tb.Helper()
	s, err := mustJetStream(tb, nc).Stream(mustContext(tb), name)
	if err != nil {
		tb.Fatalf("stream %s: %v", name, err)
	}
	return s
}

// waitCurrent waits until every replica of a stream has caught up with
// its leader: a restored replicated stream's followers catch up from the
// leader, and a read meanwhile may be answered by one that has not.
func waitCurrent(tb testing.TB, nc *nats.Conn, name string) *jetstream.StreamInfo {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		si := mustStreamInfo(tb, nc, name)
		behind := si.Cluster != nil && si.Cluster.Leader == ""
		if si.Cluster != nil {
			for _, r := range si.Cluster.Replicas {
				behind = behind || !r.Current || r.Lag > 0
			}
		}
		if !behind {
			return si
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: replicas still behind after 30 s: %+v", name, si.Cluster)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func mustStreamInfo(tb testing.TB, nc *nats.Conn, name string) *jetstream.StreamInfo {
	tb.Helper()
	si, err := mustStream(tb, nc, name).Info(mustContext(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return si
}

func mustKV(tb testing.TB, nc *nats.Conn, bucket string) jetstream.KeyValue {
	tb.Helper()
	kv, err := mustJetStream(tb, nc).KeyValue(mustContext(tb), bucket)
	if err != nil {
		tb.Fatalf("bucket %s: %v", bucket, err)
	}
	return kv
}

func mustDeleteStream(tb testing.TB, nc *nats.Conn, name string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mustJetStream(tb, nc).DeleteStream(ctx, name); err != nil {
		tb.Errorf("delete stream %s: %v", name, err)
	}
}
