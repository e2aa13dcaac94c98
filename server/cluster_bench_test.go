package server_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/keys"
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
