package accounts_test

import (
	"context"
	"testing"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/nats-io/nats.go/jetstream"
)

// A stream moved whole is left alone when a move-in cut short is taken up
// again; one that has changed since (moved in part) is moved again.
func TestMoveStreamResumes(t *testing.T) {
	ctx := context.Background()
	from := latchtest.MustStart(t, latchtest.Options{Dir: t.TempDir()})
	to := latchtest.MustStart(t, latchtest.Options{Dir: t.TempDir()})
	js, err := jetstream.New(from.App)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "moving", Subjects: []string{"moving.>"}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := js.Publish(ctx, "moving.x", []byte("m")); err != nil {
			t.Fatal(err)
		}
	}
	msgs, whole, err := accounts.MoveStream(ctx, from.App, to.App, "moving", 1)
	if err != nil || whole || msgs != 3 {
		t.Fatalf("first move: %d messages, whole %v, %v; want 3 moved", msgs, whole, err)
	}
	msgs, whole, err = accounts.MoveStream(ctx, from.App, to.App, "moving", 1)
	if err != nil || !whole || msgs != 0 {
		t.Fatalf("the same move again: %d messages, whole %v, %v; want it found whole", msgs, whole, err)
	}
	if _, err := js.Publish(ctx, "moving.x", []byte("m")); err != nil {
		t.Fatal(err)
	}
	msgs, whole, err = accounts.MoveStream(ctx, from.App, to.App, "moving", 1)
	if err != nil || whole || msgs != 4 {
		t.Fatalf("a move of a stream that changed: %d messages, whole %v, %v; want 4 moved again", msgs, whole, err)
	}
	djs, _ := jetstream.New(to.App)
	st, err := djs.Stream(ctx, "moving")
	if err != nil || st.CachedInfo().State.Msgs != 4 {
		t.Fatalf("the stream moved: %v", err)
	}
}
