//go:build unix

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/keys"
	"github.com/latch-dev/latch/operator"
	"github.com/nats-io/nats.go"
)

// BenchmarkRestart restarts `latch serve` on a data folder holding
// LATCH_BENCH_PERSONS persons (1,000 unless set), each made over the admin
// service as `latch account add` makes them, and reports how long each
// start took until /healthz said ok ("healthy-s") and the CPU time the
// process spent on it ("cpu-s/op"). Making the persons is not measured.
// The figures are in docs/benchmarks.md and docs/operations.md.
func BenchmarkRestart(b *testing.B) {
	persons := 1000
	if v := os.Getenv("LATCH_BENCH_PERSONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			b.Fatalf("LATCH_BENCH_PERSONS=%q: want a number of persons", v)
		}
		persons = n
	}
	data := filepath.Join(b.TempDir(), "data")
	s := mustServe(b, data)
	mustAddPersons(b, s, persons)
	s.stop()

	var healthy time.Duration
	cpu := benchCPU()
	for b.Loop() {
		began := time.Now()
		s := launchServe(b, data, nil, nil)
		s.waitHealthy(b, 2*time.Hour)
		healthy += time.Since(began)
		s.stop()
	}
	b.ReportMetric(healthy.Seconds()/float64(b.N), "healthy-s")
	b.ReportMetric((benchCPU()-cpu).Seconds()/float64(b.N), "cpu-s/op")
	b.ReportMetric(float64(persons), "persons")
}

// mustAddPersons makes n persons over the admin service, four at a time.
func mustAddPersons(b *testing.B, s *served, n int) {
	b.Helper()
	creds, err := keys.ReadCreds(filepath.Join(s.data, "admin.creds"))
	if err != nil {
		b.Fatal(err)
	}
	op, err := operator.Load(s.data)
	if err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := nats.Connect(s.nats, nats.UserJWTAndSeed(creds.JWT, string(creds.Seed)),
				nats.CustomInboxPrefix(operator.AdminInboxPrefix(op.FirstAdmin)))
			if err != nil {
				errs <- err
				return
			}
			defer nc.Close()
			ac := accounts.NewAdminClient(nc)
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				if _, err := accounts.EndpointAccountAdd.Call(context.Background(), ac, accounts.AccountAddRequest{Name: fmt.Sprintf("p%d", i)}); err != nil {
					errs <- fmt.Errorf("add person %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}
