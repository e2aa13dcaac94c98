package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// result is what one run of the command line gave.
type result struct {
	stdout, stderr string
	err            error
}

// latch runs the command line with args and an environment of its own
// (nothing is read from the process's environment).
func latch(t testing.TB, environ map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	getenv := func(k string) string { return environ[k] }
	err := run(context.Background(), append([]string{"latch"}, args...), getenv, &out, &errb)
	return result{stdout: out.String(), stderr: errb.String(), err: err}
}

// mustLatch runs the command line and fails the test when it fails.
func mustLatch(t testing.TB, environ map[string]string, args ...string) result {
	t.Helper()
	r := latch(t, environ, args...)
	if r.err != nil {
		t.Fatalf("latch %s: %v\nstderr: %s", strings.Join(args, " "), r.err, r.stderr)
	}
	return r
}

// served is a `latch serve` running in this process.
type served struct {
	data    string
	nats    string // nats://host:port
	http    string // http://host:port
	monitor string
	env     map[string]string // LATCH_DATA and LATCH_SERVER for admin commands
	stop    func()
	logs    *syncBuffer
}

// syncBuffer is a bytes.Buffer safe for the server's log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// mustServe runs `latch serve` on data (made fresh when empty) with free
// ports, waits until /healthz says ok, and stops it when the test ends.
func mustServe(t testing.TB, data string, extra ...string) *served {
	t.Helper()
	if data == "" {
		data = filepath.Join(t.TempDir(), "data")
	}
	s := &served{data: data, logs: &syncBuffer{}}
	natsAddr, httpAddr, monAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	s.nats, s.http, s.monitor = "nats://"+natsAddr, "http://"+httpAddr, "http://"+monAddr
	s.env = map[string]string{"LATCH_DATA": data, "LATCH_SERVER": s.nats}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	args := append([]string{"latch", "serve", "--data", data, "--nats", natsAddr, "--http", httpAddr,
		"--monitor", monAddr, "--lame-duck", "1s"}, extra...)
	go func() {
		done <- run(ctx, args, func(string) string { return "" }, s.logs, s.logs)
	}()
	var stopOnce sync.Once
	s.stop = func() {
		stopOnce.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("latch serve: %v\n%s", err, s.logs)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("latch serve did not stop within 30s\n%s", s.logs)
			}
		})
	}
	t.Cleanup(s.stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-done:
			t.Fatalf("latch serve stopped: %v\n%s", err, s.logs)
		default:
		}
		resp, err := http.Get(s.http + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("latch serve not healthy after 30s\n%s", s.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// admin runs an admin command against this server.
func (s *served) admin(t testing.TB, args ...string) result {
	t.Helper()
	return latch(t, s.env, args...)
}

func (s *served) mustAdmin(t testing.TB, args ...string) result {
	t.Helper()
	return mustLatch(t, s.env, args...)
}

func (s *served) String() string { return fmt.Sprintf("latch serve on %s", s.nats) }
