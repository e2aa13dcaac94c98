//go:build unix

package accounts_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/latch-dev/latch/keys"
	"github.com/nats-io/nats.go"
)

// The figures these benchmarks give, and the targets they are held to,
// are in docs/benchmarks.md.

// BenchmarkIssueDevice issues devices: a server-made key, the user JWT
// signed by the account's scoped device key, the devices bucket and the
// audit stream. Issuing never changes the account JWT, so it is not held
// to the one-JWT-per-second pace of account updates.
func BenchmarkIssueDevice(b *testing.B) {
	s := benchStack(b)
	persons := benchPersons(b, s, "issue", 4)
	var n atomic.Int64
	issue := func(account string) error {
		name := fmt.Sprintf("dev-%d", n.Add(1))
		_, _, err := s.Service.IssueDevice(context.Background(), accounts.NewDevice{Person: account, Name: name})
		if err != nil {
			return fmt.Errorf("issue device %s/%s: %w", account, name, err)
		}
		return nil
	}
	b.Run("serial", func(b *testing.B) {
		cpu := cpuTime()
		for i := 0; b.Loop(); i++ {
			if err := issue(persons[i%len(persons)].Name); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b, "devices/s", cpu)
	})
	b.Run("parallel", func(b *testing.B) {
		// An issuance waits on seven round trips to the server, so more
		// callers than cores keep both cores busy.
		b.SetParallelism(4)
		var g atomic.Int64
		cpu := cpuTime()
		b.RunParallel(func(pb *testing.PB) {
			account := persons[int(g.Add(1))%len(persons)].Name
			for pb.Next() {
				if err := issue(account); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportRate(b, "devices/s", cpu)
	})
}

// BenchmarkCreatePerson creates person accounts: keys, the account JWT
// pushed to the resolver, the first connection into the account (which
// loads it) and its records bucket. Each run starts on a fresh server,
// which ends up holding every account the run creates: the figures are
// for a server of a few hundred persons, not tens of thousands.
func BenchmarkCreatePerson(b *testing.B) {
	var n atomic.Int64
	create := func(s *latchtest.Stack) error {
		name := fmt.Sprintf("p%d", n.Add(1))
		if _, err := s.Service.CreatePerson(context.Background(), accounts.NewPerson{Name: name}); err != nil {
			return fmt.Errorf("create person %s: %w", name, err)
		}
		return nil
	}
	b.Run("serial", func(b *testing.B) {
		s := benchStack(b)
		cpu := cpuTime()
		for b.Loop() {
			if err := create(s); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b, "persons/s", cpu)
	})
	b.Run("parallel", func(b *testing.B) {
		s := benchStack(b)
		b.SetParallelism(4)
		cpu := cpuTime()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := create(s); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportRate(b, "persons/s", cpu)
	})
}

// BenchmarkRevokeToClose times a revocation from the call to
// RevokeDevice until the device's live connection is closed, as the
// device's NATS client sees it (its ClosedHandler runs).
//
// An account JWT's iat has a resolution of one second and every new JWT
// of an account must have a later one (see writer.go), so a revocation of
// an account whose JWT was signed in the current second waits for the
// next second. That includes an account created in the current second.
// "idle-account" keeps that wait out: it spreads the samples over many
// accounts and, with the timer stopped, lets each account's last JWT age
// into a past second before revoking in it. "busy-account" measures the
// wait: it revokes the devices of one account back to back.
func BenchmarkRevokeToClose(b *testing.B) {
	b.Run("idle-account", func(b *testing.B) {
		s := benchStack(b)
		// More accounts mean fewer waits for an account's second to
		// pass, but a longer setup.
		ps := benchPersons(b, s, "idle", min(b.N, 200))
		last := make([]time.Time, len(ps)) // when each account's JWT last changed
		for i := range last {
			last[i] = time.Now()
		}
		devs := benchProbes(b, s, ps, b.N)
		var call, toClose []time.Duration
		b.ResetTimer()
		for i, d := range devs {
			k := i % len(ps)
			b.StopTimer()
			sleepPastSecond(last[k])
			b.StartTimer()
			c, t := d.revoke(b, s)
			last[k] = time.Now()
			call, toClose = append(call, c), append(toClose, t)
		}
		b.StopTimer()
		reportLatency(b, call, toClose)
	})
	b.Run("busy-account", func(b *testing.B) {
		s := benchStack(b)
		ps := benchPersons(b, s, "busy", 1)
		// The account was created moments ago, so even the first
		// revocation waits for the next second.
		var call, toClose []time.Duration
		b.ResetTimer()
		for i := range b.N {
			// One device at a time: an account allows only so many
			// connections.
			b.StopTimer()
			d, err := newProbe(b, s, ps[0].Name, fmt.Sprintf("dev-%d", i))
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			c, t := d.revoke(b, s)
			call, toClose = append(call, c), append(toClose, t)
		}
		b.StopTimer()
		reportLatency(b, call, toClose)
	})
}

// benchStack starts a latch stack in a new data folder.
func benchStack(b *testing.B) *latchtest.Stack {
	b.Helper()
	return latchtest.MustStart(b, latchtest.Options{Dir: b.TempDir()})
}

// revokeProbe is a device with a live connection that notes when the
// connection is closed.
type revokeProbe struct {
	account string
	pub     string
	conn    *latchtest.Conn
	closed  chan time.Time
}

// newProbe issues a device and connects it; the connection is closed
// when the benchmark ends.
func newProbe(b *testing.B, s *latchtest.Stack, account, name string) (*revokeProbe, error) {
	d, creds, err := s.Service.IssueDevice(context.Background(), accounts.NewDevice{Person: account, Name: name})
	if err != nil {
		return nil, fmt.Errorf("issue device %s/%s: %w", account, name, err)
	}
	path := filepath.Join(b.TempDir(), "device.creds")
	if err := keys.WriteFileNew(path, creds); err != nil {
		return nil, err
	}
	p := &revokeProbe{account: account, pub: d.PublicKey, closed: make(chan time.Time, 1)}
	p.conn, err = s.Connect(path, nats.ClosedHandler(func(*nats.Conn) { p.closed <- time.Now() }))
	if err != nil {
		return nil, fmt.Errorf("connect device %s/%s: %w", account, name, err)
	}
	b.Cleanup(p.conn.Close)
	return p, nil
}

// revoke revokes the device and returns how long RevokeDevice took and
// how long until the connection was closed, both from the call.
func (p *revokeProbe) revoke(b *testing.B, s *latchtest.Stack) (call, toClose time.Duration) {
	start := time.Now()
	if _, err := s.Service.RevokeDevice(context.Background(), p.account, p.pub); err != nil {
		b.Fatalf("revoke %s: %v", p.pub, err)
	}
	call = time.Since(start)
	select {
	case at := <-p.closed:
		toClose = at.Sub(start)
	case <-time.After(10 * time.Second):
		b.Fatalf("the connection of %s is still open 10s after its revocation", p.pub)
	}
	// The server sends -ERR before it closes the connection; the client
	// hands that to its error handler before its closed handler.
	if errs := p.conn.Errors(); !slices.ContainsFunc(errs, func(err error) bool { return errors.Is(err, nats.ErrAuthRevoked) }) {
		b.Fatalf("the connection of %s was closed with errors %v, want %v", p.pub, errs, nats.ErrAuthRevoked)
	}
	return call, toClose
}

// sleepPastSecond sleeps until the wall-clock second after t's, which is
// when the writer signs the next JWT of an account last signed at t.
func sleepPastSecond(t time.Time) {
	next := time.Unix(t.Unix()+1, 0).Add(time.Millisecond)
	if d := time.Until(next); d > 0 {
		time.Sleep(d)
	}
}

// benchPersons creates n persons with the timer stopped.
func benchPersons(b *testing.B, s *latchtest.Stack, prefix string, n int) []accounts.Person {
	b.Helper()
	ps := make([]accounts.Person, n)
	benchEach(b, n, func(i int) (err error) {
		ps[i], err = s.Service.CreatePerson(context.Background(), accounts.NewPerson{Name: fmt.Sprintf("%s-%d", prefix, i)})
		return err
	})
	return ps
}

// benchProbes issues and connects n devices, spread over the persons,
// with the timer stopped.
func benchProbes(b *testing.B, s *latchtest.Stack, ps []accounts.Person, n int) []*revokeProbe {
	b.Helper()
	probes := make([]*revokeProbe, n)
	benchEach(b, n, func(i int) (err error) {
		probes[i], err = newProbe(b, s, ps[i%len(ps)].Name, fmt.Sprintf("dev-%d", i))
		return err
	})
	return probes
}

// benchEach runs f(0) … f(n-1), a few at a time, with the timer stopped,
// and fails the benchmark with the first error.
func benchEach(b *testing.B, n int, f func(i int) error) {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	var (
		wg    sync.WaitGroup
		next  atomic.Int64
		first atomic.Value
	)
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n && first.Load() == nil; i = int(next.Add(1)) - 1 {
				if err := f(i); err != nil {
					first.CompareAndSwap(nil, err)
				}
			}
		})
	}
	wg.Wait()
	if err, _ := first.Load().(error); err != nil {
		b.Fatal(err)
	}
}

// reportRate reports operations per second of timed work, and the CPU
// time per operation of the whole process since cpu (from cpuTime): the
// service and the embedded server together, GC included. The CPU time
// barely moves when other processes compete for the cores, the rate does.
func reportRate(b *testing.B, unit string, cpu time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
	b.ReportMetric(float64(cpuTime()-cpu)/float64(time.Microsecond)/float64(b.N), "cpu-us/op")
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportLatency reports the median and 99th percentile of the time until
// the connection closed ("p50-ms", "p99-ms") and of the RevokeDevice call
// itself ("call-p50-ms", "call-p99-ms").
func reportLatency(b *testing.B, call, toClose []time.Duration) {
	b.ReportMetric(percentileMS(toClose, 50), "p50-ms")
	b.ReportMetric(percentileMS(toClose, 99), "p99-ms")
	b.ReportMetric(percentileMS(call, 50), "call-p50-ms")
	b.ReportMetric(percentileMS(call, 99), "call-p99-ms")
}

// percentileMS is the q-th percentile of ds, nearest rank, in milliseconds.
func percentileMS(ds []time.Duration, q int) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := (q*len(s) + 99) / 100 // ceil(q/100 × n)
	return float64(s[max(rank, 1)-1]) / float64(time.Millisecond)
}
