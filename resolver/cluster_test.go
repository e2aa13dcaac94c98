package resolver_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/latch-dev/latch/operator"
	"github.com/latch-dev/latch/resolver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Three servers of one deployment, in three regions, form a cluster over
// authenticated routes: an R3 stream gets one replica in each region, and
// a server that does not know the route secret cannot join.
func TestClusterOfThreeRegions(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	getenv := func(string) string { return "" }
	first, err := operator.Init(filepath.Join(t.TempDir(), "n1"), "acme")
	if err != nil {
		t.Fatal(err)
	}
	id, err := first.Identity(getenv)
	if err != nil {
		t.Fatal(err)
	}
	secret := id.Secrets[operator.RouteSecretName]
	routes := latchtest.RouteAddrs(t, 3)
	refused := make(chan string, 16) // n1's log lines about routes it refused
	start := func(t *testing.T, op *operator.Tree, i int) *resolver.Server {
		cfg, err := latchtest.ServerConfig(op, latchtest.Options{Dir: op.Dir})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Name = fmt.Sprintf("n%d", i)
		cfg.Cluster = resolver.Cluster{Listen: routes[i-1], Name: "acme", Routes: routes, Secret: secret, Region: fmt.Sprintf("r%d", i)}
		if i == 1 {
			cfg.Log = slog.New(&lineWatch{match: "authentication error", lines: refused})
		}
		s, err := resolver.Launch(cfg)
		if err != nil {
			t.Fatalf("start %s: %v", cfg.Name, err)
		}
		t.Cleanup(func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s.Shutdown(sctx)
		})
		return s
	}
	// Each node's JetStream waits for the others: they start together.
	nodes := []*resolver.Server{start(t, first, 1)}
	for i := 2; i <= 3; i++ {
		op, err := operator.Join(filepath.Join(t.TempDir(), fmt.Sprintf("n%d", i)), id)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, start(t, op, i))
	}
	for _, n := range nodes {
		if err := n.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	n1 := nodes[0]

	tok, seed, err := first.MintUser(first.AppAccount, "test")
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(nodes[2].ClientURL(), nats.UserJWTAndSeed(tok, string(seed)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var st jetstream.Stream
	for {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		st, err = js.CreateStream(actx, jetstream.StreamConfig{Name: "r3", Subjects: []string{"r3.>"}, Replicas: 3, Storage: jetstream.FileStorage})
		acancel()
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("an R3 stream on three nodes: %v (routes: %v %v %v)", err, nodes[0].Routes(), nodes[1].Routes(), nodes[2].Routes())
		case <-time.After(200 * time.Millisecond):
		}
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	servers := []string{info.Cluster.Leader}
	for _, r := range info.Cluster.Replicas {
		servers = append(servers, r.Name)
	}
	slices.Sort(servers)
	if !slices.Equal(servers, []string{"n1", "n2", "n3"}) {
		t.Errorf("the R3 stream's replicas are on %v, want n1, n2 and n3 (one a region)", servers)
	}

	// A server of the deployment without the route secret is refused.
	outsider, err := operator.Join(filepath.Join(t.TempDir(), "n4"), id)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := latchtest.ServerConfig(outsider, latchtest.Options{Dir: outsider.Dir})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Name = "n4"
	cfg.Cluster = resolver.Cluster{Listen: "127.0.0.1:0", Name: "acme", Routes: []string{n1.RouteAddr()}, Secret: "not the secret"}
	n4, err := resolver.Launch(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n4.Shutdown(sctx)
	}()
	select {
	case <-refused:
	case <-ctx.Done():
		t.Fatal("n1 never refused the outsider's route")
	}
	if got := n1.Routes(); slices.Contains(got, "n4") || len(got) != 2 {
		t.Errorf("n1's routes: %v, want n2 and n3 and not the outsider", got)
	}
	if !strings.Contains(strings.Join(n1.Routes(), ","), "n2") {
		t.Errorf("n1 has no route to n2: %v", n1.Routes())
	}
}

// lineWatch is a log handler that passes on the lines holding match.
type lineWatch struct {
	match string
	lines chan string
}

func (w *lineWatch) Enabled(context.Context, slog.Level) bool { return true }
func (w *lineWatch) WithAttrs([]slog.Attr) slog.Handler       { return w }
func (w *lineWatch) WithGroup(string) slog.Handler            { return w }
func (w *lineWatch) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, w.match) {
		select {
		case w.lines <- r.Message:
		default:
		}
	}
	return nil
}
