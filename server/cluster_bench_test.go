package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/keys"
	"github.com/latch-dev/latch/resolver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkClusterRevokeOnOtherNode measures, on three nodes on loopback,
// a revocation made through node 1 until the device's connection to node 3
// is closed: the commit to the record, node 3 following it and applying
// the JWT, its server closing the connection.
func BenchmarkClusterRevokeOnOtherNode(b *testing.B) {
	c := startCluster(b)
	ctx := context.Background()
	admin := c.admin(0)
	// Each device of its own person, all made first: a person's JWT
	// changes at most once a second (iat is in seconds), and a revocation
	// in the second its account was made waits for the next.
	closed := make([]chan time.Time, b.N)
	for i := range b.N {
		name := fmt.Sprintf("p%d", i)
		if _, err := accounts.EndpointAccountAdd.Call(ctx, admin, accounts.AccountAddRequest{Name: name}); err != nil {
			b.Fatal(err)
		}
		r, err := accounts.EndpointDeviceIssue.Call(ctx, admin, accounts.DeviceIssueRequest{Account: name, Name: "phone"})
		if err != nil {
			b.Fatal(err)
		}
		creds := writeCreds(b, r.Creds)
		ch := make(chan time.Time, 1)
		closed[i] = ch
		if _, err := deviceConn(b, c.url(2), creds, nats.ClosedHandler(func(*nats.Conn) { ch <- time.Now() })); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(1100 * time.Millisecond)
	var toClose, call []time.Duration
	cpu := cpuTime()
	b.ResetTimer()
	for i := range b.N {
		began := time.Now()
		if _, err := accounts.EndpointDeviceRevoke.Call(ctx, admin, accounts.DeviceRequest{Account: fmt.Sprintf("p%d", i), Device: "phone"}); err != nil {
			b.Fatal(err)
		}
		call = append(call, time.Since(began))
		select {
		case at := <-closed[i]:
			toClose = append(toClose, at.Sub(began))
		case <-time.After(10 * time.Second):
			b.Fatal("the connection to node 3 is open 10 s after the revocation")
		}
	}
	b.StopTimer()
	b.ReportMetric(percentileMS(toClose, 50), "p50-ms")
	b.ReportMetric(percentileMS(toClose, 99), "p99-ms")
	b.ReportMetric(percentileMS(call, 50), "call-p50-ms")
	b.ReportMetric(float64(cpuTime()-cpu)/float64(time.Microsecond)/float64(b.N), "cpu-us/op")
}

// BenchmarkClusterPut measures puts with acknowledgement to a KV bucket of
// one replica and of three (one a region), in one run on the same three
// nodes, from a connection to node 2.
func BenchmarkClusterPut(b *testing.B) {
	c := startCluster(b)
	ctx := context.Background()
	js, err := jetstream.New(c.latchConn(1))
	if err != nil {
		b.Fatal(err)
	}
	value := make([]byte, 256)
	for _, replicas := range []int{1, 3} {
		b.Run(fmt.Sprintf("R%d", replicas), func(b *testing.B) {
			kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: fmt.Sprintf("bench_r%d", replicas), Replicas: replicas, Storage: jetstream.FileStorage})
			if err != nil {
				b.Fatal(err)
			}
			cpu := cpuTime()
			b.ResetTimer()
			for i := range b.N {
				if _, err := kv.Put(ctx, fmt.Sprintf("k%d", i%1000), value); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
			b.ReportMetric(float64(cpuTime()-cpu)/float64(time.Microsecond)/float64(b.N), "cpu-us/op")
		})
	}
}

// BenchmarkClusterCatchUp measures a node coming back. Node 2 is stopped;
// while it is down, M account JWTs change through node 1 (of every 20: 16
// revocations, each of a device issued while node 2 was down, 3 persons
// made and 1 deleted) and a person's device puts 10 records a change.
// Node 2 is then started again on its data folder. Reported, from that
// start: nats-ready-ms, until its nats-server is current with the meta
// leader; ready-ms, until latch says it is ready (it has caught up with
// the record of account JWTs by then); latch-current-ms, until its copy
// of LATCH's streams and the person's records holds everything their
// leaders held at the start; current-ms, the same of every stream, with
// the meta leader counting node 2 current; cpu-ms, the process's CPU time
// (all three nodes) until node 2 is both ready and current.
//
// The cases with down=1m keep node 2 down for a minute, the changes
// spread over it. Against the cases without, they show the time down
// counting only through what changed meanwhile: JetStream catches a
// replica up from its last sequence, and latch compares JWTs, not times.
func BenchmarkClusterCatchUp(b *testing.B) {
	for _, bc := range []struct {
		name    string
		changes int
		down    time.Duration // the least time node 2 is down
	}{
		{"changes=0", 0, 0},
		{"changes=100", 100, 0},
		{"changes=1000", 1000, 0},
		{"changes=0,down=1m", 0, time.Minute},
		{"changes=100,down=1m", 100, time.Minute},
	} {
		b.Run(bc.name, func(b *testing.B) { benchCatchUp(b, bc.changes, bc.down) })
	}
}

// catchUpPersons are the persons made before node 2 first stops: the
// first half have devices issued and revoked, the second half are deleted.
const catchUpPersons = 100

func benchCatchUp(b *testing.B, changes int, down time.Duration) {
	b.StopTimer()
	c := startCluster(b)
	ctx := context.Background()
	admin := c.admin(0)
	var revoked, deletable []string
	for i := range catchUpPersons {
		name := fmt.Sprintf("p%03d", i)
		addPerson(b, admin, name)
		if _, err := accounts.EndpointDeviceIssue.Call(ctx, admin, accounts.DeviceIssueRequest{Account: name, Name: "phone"}); err != nil {
			b.Fatal(err)
		}
		if i < catchUpPersons/2 {
			revoked = append(revoked, name)
		} else {
			deletable = append(deletable, name)
		}
	}
	addPerson(b, admin, "alice")
	_, creds := c.issue(0, "alice", "laptop")
	dc, err := deviceConn(b, c.url(0), creds)
	if err != nil {
		b.Fatal(err)
	}
	kv := records(b, dc)
	alice := streamKey{mustAccount(b, admin, "alice"), "KV_" + accounts.RecordsBucket}
	value := make([]byte, 256)
	monitor := func(i int) string { return c.nodes[i].Addrs().Monitor }

	var natsReady, ready, current, latchCurrent, cpu, downFor time.Duration
	var missed, jwtEntries, pushed, deletedAgain int
	for iter := range b.N {
		r, err := jsz(monitor(1), true, false)
		if err != nil {
			b.Fatal(err)
		}
		had := lastSeqs(r)
		if err := c.nodes[1].Close(); err != nil {
			b.Fatalf("stop node 2: %v", err)
		}
		downAt := time.Now()
		for k := range changes {
			switch k % 20 {
			case 16, 17, 18:
				name := fmt.Sprintf("n%d-%d", iter, k)
				addPerson(b, admin, name)
				deletable = append(deletable, name)
			case 19:
				if _, err := accounts.EndpointAccountDelete.Call(ctx, admin, accounts.AccountRequest{Name: deletable[0]}); err != nil {
					b.Fatal(err)
				}
				deletable = deletable[1:]
			default:
				// A person's JWT changes at most once a second; taking the
				// persons in turn keeps most revocations from waiting.
				person, device := revoked[k%len(revoked)], fmt.Sprintf("d%d-%d", iter, k)
				if _, err := accounts.EndpointDeviceIssue.Call(ctx, admin, accounts.DeviceIssueRequest{Account: person, Name: device}); err != nil {
					b.Fatal(err)
				}
				if _, err := accounts.EndpointDeviceRevoke.Call(ctx, admin, accounts.DeviceRequest{Account: person, Device: device}); err != nil {
					b.Fatal(err)
				}
			}
			for r := range 10 {
				if _, err := kv.Put(ctx, fmt.Sprintf("k%d", (10*k+r)%1000), value); err != nil {
					b.Fatal(err)
				}
			}
			if down > 0 {
				time.Sleep(time.Until(downAt.Add(down * time.Duration(k+1) / time.Duration(changes))))
			}
		}
		time.Sleep(time.Until(downAt.Add(down)))

		// What node 2 missed: each stream's last sequence on its leader
		// against node 2's when it stopped. Node 2 is current once it
		// holds every stream up to there and the meta leader counts it
		// current.
		want, err := leaderSeqs(monitor(0), monitor(2))
		if err != nil {
			b.Fatal(err)
		}
		jwts := streamKey{c.first.AppAccount.PublicKey, "KV_" + accounts.JWTsBucket}
		for k, last := range want {
			n := int(last - min(had[k], last))
			missed += n
			if k == jwts {
				jwtEntries += n
			}
		}

		log := &catchUpLog{}
		c.cfgs[1].Log = slog.New(log)
		downFor += time.Since(downAt)
		cpuAt := cpuTime()
		b.StartTimer()
		began := time.Now()
		c.open(1)
		var readyAt, currentAt, latchAt time.Duration
		readyc := c.nodes[1].Ready()
		// Polled every 250 ms: a report of every stream costs node 2 a
		// few milliseconds of CPU.
		tick := time.NewTicker(250 * time.Millisecond)
		for readyAt == 0 || currentAt == 0 {
			select {
			case <-readyc:
				readyAt, readyc = time.Since(began), nil
			case <-c.nodes[1].Done():
				b.Fatalf("node 2 stopped: %v", c.nodes[1].Err())
			case <-tick.C:
				if time.Since(began) > 5*time.Minute {
					b.Fatalf("node 2 is not ready and current 5 minutes after its start (ready after %v, current after %v)", readyAt, currentAt)
				}
				if currentAt > 0 {
					continue
				}
				r, err := jsz(monitor(1), true, false)
				if err != nil {
					continue // node 2's monitoring port is not up yet
				}
				held := lastSeqs(r)
				behind, latchBehind := 0, 0
				for k, last := range want {
					// A stream made while node 2 was down may be empty.
					if got, ok := held[k]; !ok || got < last {
						behind++
						if k.account == c.first.AppAccount.PublicKey || k == alice {
							latchBehind++
						}
					}
				}
				if latchBehind == 0 && latchAt == 0 {
					latchAt = time.Since(began)
				}
				if behind == 0 && c.metaCurrent(1, began) {
					currentAt = time.Since(began)
				}
			}
		}
		tick.Stop()
		b.StopTimer()
		cpu += cpuTime() - cpuAt
		ready += readyAt
		log.mu.Lock()
		if !log.natsReady.IsZero() {
			natsReady += log.natsReady.Sub(began)
		}
		pushed += log.pushed
		deletedAgain += log.deletedAgain
		log.mu.Unlock()
		current += currentAt
		latchCurrent += latchAt
	}
	per := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(b.N) }
	b.ReportMetric(per(natsReady), "nats-ready-ms")
	b.ReportMetric(per(ready), "ready-ms")
	b.ReportMetric(per(latchCurrent), "latch-current-ms")
	b.ReportMetric(per(current), "current-ms")
	b.ReportMetric(per(cpu), "cpu-ms")
	b.ReportMetric(per(downFor)/1000, "down-s")
	b.ReportMetric(float64(jwtEntries)/float64(b.N), "jwt-entries")
	b.ReportMetric(float64(missed)/float64(b.N), "missed-msgs")
	b.ReportMetric(float64(pushed)/float64(b.N), "pushed")
	b.ReportMetric(float64(deletedAgain)/float64(b.N), "deleted-again")
}

// addPerson makes a person, trying again when the making fails: on a
// loaded machine nats-server 2.15.2 now and then fails to create the new
// account's records stream on the node that makes it ("could not create
// storage directory", "storage directory not readable"), and latch then
// undoes the person.
func addPerson(b *testing.B, admin *accounts.AdminClient, name string) {
	for try := 1; ; try++ {
		_, err := accounts.EndpointAccountAdd.Call(context.Background(), admin, accounts.AccountAddRequest{Name: name})
		if err == nil {
			return
		}
		if try == 3 {
			b.Fatal(err)
		}
		b.Logf("try %d: %v", try, err)
	}
}

// streamKey names a stream: its account's public key and its name.
type streamKey struct{ account, stream string }

// jszReport is the part of nats-server's /jsz the benchmark reads.
type jszReport struct {
	Meta *struct {
		Leader   string `json:"leader"`
		Replicas []struct {
			Name    string        `json:"name"`
			Current bool          `json:"current"`
			Offline bool          `json:"offline"`
			Active  time.Duration `json:"active"` // since the leader last heard from it
		} `json:"replicas"`
	} `json:"meta_cluster"`
	Accounts []struct {
		ID      string `json:"id"`
		Streams []struct {
			Name  string `json:"name"`
			State struct {
				LastSeq uint64 `json:"last_seq"`
			} `json:"state"`
		} `json:"stream_detail"`
	} `json:"account_details"`
}

// jsz asks a node's monitoring port for its JetStream report: with
// streams, every stream of every account it holds a copy of (and with
// leaderOnly, only those it leads).
func jsz(monitor string, streams, leaderOnly bool) (*jszReport, error) {
	if monitor == "" {
		return nil, errors.New("no monitoring port")
	}
	u := monitor + "/jsz"
	switch {
	case leaderOnly:
		u += "?accounts=true&streams=true&stream-leader-only=true"
	case streams:
		u += "?accounts=true&streams=true"
	}
	hc := http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", u, resp.Status)
	}
	var r jszReport
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	return &r, nil
}

// lastSeqs is each stream's last sequence in the reports.
func lastSeqs(reports ...*jszReport) map[streamKey]uint64 {
	out := map[streamKey]uint64{}
	for _, r := range reports {
		for _, a := range r.Accounts {
			for _, st := range a.Streams {
				out[streamKey{a.ID, st.Name}] = st.State.LastSeq
			}
		}
	}
	return out
}

// leaderSeqs is each stream's last sequence on its leader, of every
// stream the node at monitors[0] holds a copy of, once each has a leader
// among the nodes at monitors.
func leaderSeqs(monitors ...string) (map[streamKey]uint64, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		all, err := jsz(monitors[0], true, false)
		if err != nil {
			return nil, err
		}
		var reports []*jszReport
		for _, m := range monitors {
			r, err := jsz(m, true, true)
			if err != nil {
				return nil, err
			}
			reports = append(reports, r)
		}
		seqs := lastSeqs(reports...)
		var leaderless []streamKey
		for k := range lastSeqs(all) {
			if _, ok := seqs[k]; !ok {
				leaderless = append(leaderless, k)
			}
		}
		if len(leaderless) == 0 {
			return seqs, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("streams without a leader: %v", leaderless)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metaCurrent reports whether the meta leader counts node i current and
// has heard from it since since.
func (c *testCluster) metaCurrent(i int, since time.Time) bool {
	for j := range c.nodes {
		r, err := jsz(c.nodes[j].Addrs().Monitor, false, false)
		if err != nil || r.Meta == nil || r.Meta.Leader != c.cfgs[j].Name {
			continue
		}
		if j == i {
			return true
		}
		for _, p := range r.Meta.Replicas {
			if p.Name == c.cfgs[i].Name {
				return p.Current && !p.Offline && p.Active < time.Since(since)
			}
		}
	}
	return false
}

// catchUpLog counts what a node says, as it starts, about catching up
// with latch's record of account JWTs.
type catchUpLog struct {
	mu                   sync.Mutex
	natsReady            time.Time // its nats-server listens and is current with the meta leader
	pushed, deletedAgain int
}

func (l *catchUpLog) Enabled(_ context.Context, level slog.Level) bool {
	return level >= slog.LevelInfo
}

func (l *catchUpLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch r.Message {
	case resolver.ReadyMessage:
		l.natsReady = r.Time
	case "caught up with latch's record of account JWTs":
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "pushed" && a.Value.Kind() == slog.KindInt64 {
				l.pushed += int(a.Value.Int64())
			}
			return true
		})
	case "deleted account came back; deleting it again":
		l.deletedAgain++
	}
	return nil
}

func (l *catchUpLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *catchUpLog) WithGroup(string) slog.Handler      { return l }

func writeCreds(b *testing.B, creds string) string {
	path := filepath.Join(b.TempDir(), "device.creds")
	if err := keys.WriteFileNew(path, []byte(creds)); err != nil {
		b.Fatal(err)
	}
	return path
}

// cpuTime is the CPU time the test process has used (all three nodes).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func percentileMS(ds []time.Duration, q int) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := (q*len(s) + 99) / 100
	return float64(s[max(rank, 1)-1]) / float64(time.Millisecond)
}
