package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/latch-dev/latch/resolver"
)

// recoveryGate is a log handler that slows or holds nats-server's stream
// recovery: the server logs "Starting restore for stream" from the
// goroutine that recovers that stream, so a handler that takes its time
// over the line makes the recovery take as long as one of thousands of
// persons would, with a handful.
type recoveryGate struct {
	delay  time.Duration // each stream's recovery takes this much longer
	shut   chan struct{} // while not nil and open, recovery waits here
	held   atomic.Int64  // streams that reached the gate
	mu     sync.Mutex
	lines  []string
	closed sync.Once
}

func (g *recoveryGate) Enabled(context.Context, slog.Level) bool { return true }
func (g *recoveryGate) WithAttrs([]slog.Attr) slog.Handler       { return g }
func (g *recoveryGate) WithGroup(string) slog.Handler            { return g }

func (g *recoveryGate) Handle(_ context.Context, r slog.Record) error {
	g.mu.Lock()
	g.lines = append(g.lines, r.Level.String()+" "+r.Message)
	g.mu.Unlock()
	if strings.Contains(r.Message, "Starting restore for stream") {
		g.held.Add(1)
		time.Sleep(g.delay)
		if g.shut != nil {
			<-g.shut
		}
	}
	return nil
}

// open lets the held recovery go on.
func (g *recoveryGate) open() { g.closed.Do(func() { close(g.shut) }) }

func (g *recoveryGate) log() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return strings.Join(g.lines, "\n")
}

// mustDataWithStreams makes a data folder of persons persons, each with a
// records stream besides LATCH's own, and returns the server's config for
// it.
func mustDataWithStreams(t *testing.T, persons int) resolver.Config {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	s, err := latchtest.Start(latchtest.Options{Dir: dir})
	if err != nil {
		t.Fatalf("start latch: %v", err)
	}
	for i := range persons {
		if _, err := s.Service.CreatePerson(context.Background(), accounts.NewPerson{Name: fmt.Sprintf("p%d", i)}); err != nil {
			s.Stop()
			t.Fatalf("create person: %v", err)
		}
	}
	s.Stop()
	cfg, err := latchtest.ServerConfig(s.Operator, latchtest.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// streamsOnDisk counts the streams JetStream keeps under data: a folder
// each under jetstream/<account>/streams.
func streamsOnDisk(t testing.TB, data string) int {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(data, "jetstream", "*", "streams", "*"))
	if err != nil {
		t.Fatal(err)
	}
	return len(dirs)
}

func mustLaunch(t *testing.T, cfg resolver.Config) *resolver.Server {
	t.Helper()
	s, err := resolver.Launch(cfg)
	if err != nil {
		t.Fatalf("launch: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s
}

// A start that takes longer than the stall timeout is waited for as long
// as streams keep being recovered, and says how far it is meanwhile.
func TestStartWaitsWhileRecoveryProgresses(t *testing.T) {
	cfg := mustDataWithStreams(t, 3)
	g := &recoveryGate{delay: 300 * time.Millisecond}
	cfg.Log = slog.New(g)
	cfg.StallTimeout = time.Second
	s := mustLaunch(t, cfg)

	ready := make(chan error, 1)
	go func() { ready <- s.WaitReady(context.Background()) }()
	var starting []string
	for done := false; !done; {
		select {
		case err := <-ready:
			if err != nil {
				t.Fatalf("wait ready: %v\n%s", err, g.log())
			}
			done = true
		case <-time.After(100 * time.Millisecond):
			if err := s.Healthy(); err != nil {
				starting = append(starting, err.Error())
			}
		}
	}
	streams := streamsOnDisk(t, cfg.DataDir)
	if n := g.held.Load(); n != int64(streams) || streams < 4 {
		t.Fatalf("recovered %d streams, want the %d on disk: LATCH's and 3 persons' records", n, streams)
	}
	if err := s.Healthy(); err != nil {
		t.Errorf("healthy after ready: %v", err)
	}
	// Each stream took 300 ms, so the start took over 3 s: three times the
	// stall timeout, which it never hit because it progressed.
	found := false
	for _, h := range starting {
		if strings.HasPrefix(h, "nats is starting: JetStream is recovering: restored ") && strings.Contains(h, fmt.Sprintf(" of %d streams", streams)) {
			found = true
		}
	}
	if !found {
		t.Errorf("Healthy while starting said %q, want \"nats is starting: JetStream is recovering: restored N of %d streams …\"", starting, streams)
	}
	if log := g.log(); !strings.Contains(log, "DEBUG   Starting restore for stream") || strings.Contains(log, "INFO   Restored ") {
		t.Errorf("per-stream recovery lines are not at debug level:\n%s", log)
	}
}

// A start whose recovery makes no progress for the stall timeout is given
// up with an error that says so.
func TestStartGivesUpWhenRecoveryStalls(t *testing.T) {
	cfg := mustDataWithStreams(t, 1)
	g := &recoveryGate{shut: make(chan struct{})}
	defer g.open()
	cfg.Log = slog.New(g)
	cfg.StallTimeout = time.Second
	s := mustLaunch(t, cfg)

	err := s.WaitReady(context.Background())
	var stall *resolver.StallError
	if !errors.As(err, &stall) {
		t.Fatalf("wait ready: got %v, want a *resolver.StallError", err)
	}
	if !strings.Contains(err.Error(), "made no progress for") ||
		!strings.Contains(err.Error(), fmt.Sprintf("of %d streams", streamsOnDisk(t, cfg.DataDir))) {
		t.Errorf("got %q, want it to say the server made no progress and how far it got", err)
	}
	// The held recovery goes on once let go, writing into the data folder;
	// it ends before the server is shut down and the folder removed.
	g.open()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(g.log(), "Restored"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the recovery did not finish once let go:\n%s", g.log())
		}
	}
}

// A port another process holds is reported at once, naming the listener
// and its address; and when the port is taken while the server recovers,
// so that nats-server itself fails to listen, the start fails with the
// same error instead of the process exiting.
func TestStartPortInUse(t *testing.T) {
	cfg := mustDataWithStreams(t, 1)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	for _, which := range []string{"client", "monitor"} {
		c := cfg
		c.Monitor = "127.0.0.1:0"
		if which == "client" {
			c.Listen = taken.Addr().String()
		} else {
			c.Monitor = taken.Addr().String()
		}
		_, err := resolver.Launch(c)
		var le *resolver.ListenError
		if !errors.As(err, &le) || le.Listener != which || le.Addr != taken.Addr().String() {
			t.Fatalf("launch with the %s port taken: got %v, want a *resolver.ListenError for %s on %s", which, err, which, taken.Addr())
		}
		if !strings.Contains(err.Error(), "address already in use") {
			t.Errorf("got %q, want the cause", err)
		}
	}

	// Taken while JetStream recovers, before nats-server opens it.
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()
	g := &recoveryGate{shut: make(chan struct{})}
	defer g.open()
	c := cfg
	c.Listen, c.Log = addr, slog.New(g)
	s := mustLaunch(t, c)
	for g.held.Load() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	late, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("take %s: %v", addr, err)
	}
	defer late.Close()
	g.open()
	err = s.WaitReady(context.Background())
	var le *resolver.ListenError
	if !errors.As(err, &le) || le.Listener != "client" || le.Addr != addr {
		t.Fatalf("wait ready with the port taken during recovery: got %v, want a *resolver.ListenError for client on %s", err, addr)
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("got %q, want the cause", err)
	}
	if h := s.Healthy(); h == nil || h.Error() != err.Error() {
		t.Errorf("Healthy after the failure: got %v, want %v", h, err)
	}
}
