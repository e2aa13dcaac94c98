package resolver_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/latch-dev/latch/keys"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The data path: what a device's KV operations cost through latch. The
// figures are in docs/benchmarks.md.

// recordsKV opens a device's records bucket over TCP with its creds.
func recordsKV(b *testing.B, s *latchtest.Stack, credsFile string) (*nats.Conn, jetstream.KeyValue) {
	b.Helper()
	c := s.MustConnect(b, credsFile)
	js, err := jetstream.New(c.Conn)
	if err != nil {
		b.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), accounts.RecordsBucket)
	if err != nil {
		b.Fatal(err)
	}
	return c.Conn, kv
}

// plainKV starts a stock nats-server with no auth at all, JetStream
// encrypted with the same cipher as latch's, and a records bucket made
// as latch makes one.
func plainKV(b *testing.B) jetstream.KeyValue {
	b.Helper()
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: b.TempDir(),
		JetStreamCipher: server.ChaCha, JetStreamKey: string(keys.RandomSecret(32)),
		JetStreamMaxStore: 1 << 40, JetStreamMaxMemory: 1 << 30,
	})
	if err != nil {
		b.Fatal(err)
	}
	ns.Start()
	b.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		b.Fatal("plain nats-server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{
		Bucket: accounts.RecordsBucket, History: 10, Storage: jetstream.FileStorage, Replicas: 1,
		MaxBytes: accounts.DefaultLimits().Disk,
	})
	if err != nil {
		b.Fatal(err)
	}
	return kv
}

// BenchmarkRecordsPut puts records one after another, each waiting for
// JetStream's acknowledgement, alternately through latch with a device's
// creds and on a plain nats-server without auth, so that both see the
// same machine at the same moments. It reports both rates and their ratio.
func BenchmarkRecordsPut(b *testing.B) {
	s := latchtest.MustStart(b, latchtest.Options{Dir: b.TempDir()})
	s.MustCreatePerson(b, "bench")
	dev := s.MustIssueDevice(b, "bench", "laptop")
	_, latchKV := recordsKV(b, s, dev.CredsFile)
	plain := plainKV(b)
	ctx := context.Background()
	value := make([]byte, 256)
	var latchTime, plainTime time.Duration
	for i := 0; b.Loop(); i++ {
		// A bounded key space keeps the bucket's size steady.
		key := fmt.Sprintf("note.%d", i%1000)
		// Which goes first alternates, so neither gains from the other's
		// warm caches.
		if i%2 == 0 {
			latchTime += timedPut(b, ctx, latchKV, key, value)
			plainTime += timedPut(b, ctx, plain, key, value)
		} else {
			plainTime += timedPut(b, ctx, plain, key, value)
			latchTime += timedPut(b, ctx, latchKV, key, value)
		}
	}
	n := float64(b.N)
	b.ReportMetric(n/latchTime.Seconds(), "latch-puts/s")
	b.ReportMetric(n/plainTime.Seconds(), "plain-puts/s")
	b.ReportMetric(plainTime.Seconds()/latchTime.Seconds(), "latch/plain")
	b.ReportMetric(0, "ns/op") // an op is two puts; the rates above are what counts
}

func timedPut(b *testing.B, ctx context.Context, kv jetstream.KeyValue, key string, value []byte) time.Duration {
	t0 := time.Now()
	if _, err := kv.Put(ctx, key, value); err != nil {
		b.Fatalf("put %s: %v", key, err)
	}
	return time.Since(t0)
}

// BenchmarkPutToWatch measures how long a record put by one device takes
// to reach another device's KV watcher: the put is timed from before the
// call to the moment the watcher delivers that revision.
func BenchmarkPutToWatch(b *testing.B) {
	s := latchtest.MustStart(b, latchtest.Options{Dir: b.TempDir()})
	s.MustCreatePerson(b, "bench")
	devA := s.MustIssueDevice(b, "bench", "laptop")
	devB := s.MustIssueDevice(b, "bench", "phone")
	_, kvA := recordsKV(b, s, devA.CredsFile)
	_, kvB := recordsKV(b, s, devB.CredsFile)
	ctx := context.Background()
	w, err := kvB.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	value := make([]byte, 256)
	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		rev, err := kvA.Put(ctx, fmt.Sprintf("note.%d", i%1000), value)
		if err != nil {
			b.Fatal(err)
		}
		for {
			select {
			case e := <-w.Updates():
				if e == nil || e.Revision() < rev {
					continue
				}
			case <-time.After(10 * time.Second):
				b.Fatalf("revision %d never reached the other device's watcher", rev)
			}
			break
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
