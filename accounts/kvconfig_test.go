package accounts_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/nats-io/nats.go/jetstream"
)

// latch makes its buckets as streams, in their final configuration: such
// a stream is what nats.go's CreateKeyValue makes, but for direct reads
// off with replicas, and binds and works as a bucket.
func TestKVStreamConfigIsCreateKeyValues(t *testing.T) {
	t.Parallel()
	st := startStack(t)
	ctx := t.Context()
	js, err := jetstream.New(st.App)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []jetstream.KeyValueConfig{
		{Bucket: "plain", History: 5, Storage: jetstream.FileStorage},
		{Bucket: "ttl", History: 1, TTL: time.Hour, Storage: jetstream.FileStorage, Description: "an hour"},
		{Bucket: "short", TTL: 30 * time.Second, Storage: jetstream.FileStorage},
	} {
		byKV := want
		byKV.Bucket = want.Bucket + "_kv"
		if _, err := js.CreateKeyValue(ctx, byKV); err != nil {
			t.Fatal(err)
		}
		if _, err := js.CreateStream(ctx, accounts.KVStreamConfig(want)); err != nil {
			t.Fatalf("%s: %v", want.Bucket, err)
		}
		a, err := js.Stream(ctx, "KV_"+byKV.Bucket)
		if err != nil {
			t.Fatal(err)
		}
		b, err := js.Stream(ctx, "KV_"+want.Bucket)
		if err != nil {
			t.Fatal(err)
		}
		got, ref := b.CachedInfo().Config, a.CachedInfo().Config
		ref.Name, ref.Subjects = got.Name, got.Subjects
		if !reflect.DeepEqual(got, ref) {
			t.Errorf("%s: the stream\n%+v\nwant what CreateKeyValue makes\n%+v", want.Bucket, got, ref)
		}
		if got.Subjects[0] != "$KV."+want.Bucket+".>" {
			t.Errorf("%s: subjects %v", want.Bucket, got.Subjects)
		}
		kv, err := js.KeyValue(ctx, want.Bucket)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		if e, err := kv.Get(ctx, "k"); err != nil || string(e.Value()) != "v" {
			t.Errorf("%s: get %v, %v", want.Bucket, e, err)
		}
	}
	// With replicas, direct reads are off; alone they are on, as
	// CreateKeyValue has them.
	if c := accounts.KVStreamConfig(jetstream.KeyValueConfig{Bucket: "r3", Replicas: 3}); c.AllowDirect || c.Replicas != 3 {
		t.Errorf("R3: allow direct %v, replicas %d; want off, 3", c.AllowDirect, c.Replicas)
	}
}
