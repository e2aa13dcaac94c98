package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// slowRecovery is a log writer that makes nats-server's JetStream recovery
// as slow as thousands of persons make it, with a few dozen: the server
// logs "Starting restore for stream" (at debug level in latch) from the
// goroutine that recovers that stream, so each stream takes delay longer.
type slowRecovery struct {
	delay time.Duration
	seen  atomic.Int64
}

func (w *slowRecovery) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("Starting restore for stream")) {
		w.seen.Add(1)
		time.Sleep(w.delay)
	}
	return len(p), nil
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

// A restart that takes longer than latch used to wait (30 s) comes back,
// /healthz says how far it is meanwhile, and a stop in the middle of it is
// a clean stop that loses nothing.
func TestRestartWhileRecovering(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	s := mustServe(t, data)
	const persons = 16
	for i := range persons {
		s.mustAdmin(t, "account", "add", fmt.Sprintf("p%02d", i))
	}
	s.stop()
	// LATCH's buckets and audit trail, and a records bucket per person.
	streams := streamsOnDisk(t, data)
	if streams <= persons {
		t.Fatalf("%d streams on disk, want more than the %d persons' records", streams, persons)
	}
	debug := map[string]string{"LATCH_LOG_LEVEL": "debug"}

	// Stopped while recovering.
	slow := &slowRecovery{delay: 500 * time.Millisecond}
	s = launchServe(t, data, debug, slow)
	for slow.seen.Load() < 12 {
		if s.exited {
			t.Fatalf("latch serve stopped while recovering: %v\n%s", s.exitErr, s.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, body := s.healthz()
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "nats is starting: JetStream is recovering: restored ") ||
		!strings.Contains(body, fmt.Sprintf(" of %d streams", streams)) {
		t.Errorf("/healthz while recovering: got %d %q, want 503 \"nats is starting: JetStream is recovering: restored N of %d streams …\"", code, body, streams)
	}
	if resp, err := http.Get(s.http + "/login"); err != nil {
		t.Errorf("GET /login while recovering: %v", err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET /login while recovering: got %d, want 503", resp.StatusCode)
	}
	s.stop() // fails the test unless run returns nil
	logs := s.logs.String()
	// This start logs at debug level, where the stop's consequences go;
	// nothing at info or above may speak of them.
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "level=DEBUG") {
			continue
		}
		for _, bad := range []string{"level=ERROR", "level=WARN", "server is not running"} {
			if strings.Contains(line, bad) {
				t.Errorf("a stop while recovering logged %q: %s", bad, line)
			}
		}
	}
	if !strings.Contains(logs, "nats is stopping while starting: JetStream is recovering: restored") {
		t.Errorf("the log does not say the stop came during recovery:\n%s", logs)
	}

	// A restart slower than the old fixed wait.
	slow = &slowRecovery{delay: time.Second}
	began := time.Now()
	s = launchServe(t, data, debug, slow)
	var progress []string
	for {
		if s.exited {
			t.Fatalf("latch serve stopped while recovering: %v\n%s", s.exitErr, s.logs)
		}
		code, body := s.healthz()
		if code == http.StatusOK {
			break
		}
		if code == http.StatusServiceUnavailable && strings.Contains(body, "recovering") {
			progress = append(progress, body)
		}
		if time.Since(began) > 5*time.Minute {
			t.Fatalf("not healthy after 5 minutes; /healthz said %q\n%s", body, s.logs)
		}
		select {
		case err := <-s.done:
			s.exited, s.exitErr = true, err
		case <-time.After(200 * time.Millisecond):
		}
	}
	took := time.Since(began)
	// Not a speed requirement: the recovery must have taken longer than
	// the wait latch used to give up after, or the test shows nothing.
	if took < 30*time.Second {
		t.Fatalf("the restart took %s; the test needs one longer than 30s (raise the delay)", took)
	}
	if n := slow.seen.Load(); n != int64(streams) {
		t.Errorf("recovered %d streams, want %d", n, streams)
	}
	if len(progress) < 2 || progress[0] == progress[len(progress)-1] {
		t.Errorf("/healthz did not show progress while recovering: %q", progress)
	}
	logs = s.logs.String()
	if n := strings.Count(logs, "msg=\"nats is starting: JetStream is recovering: restored "); n < 3 {
		t.Errorf("the log said how far recovery was %d times in %s, want every 5s:\n%s", n, took, logs)
	}
	if strings.Contains(logs, "level=INFO msg=\"  Starting restore") || strings.Contains(logs, "level=INFO msg=\"  Restored ") {
		t.Errorf("per-stream recovery lines logged at info level:\n%s", logs)
	}
	var ls []struct{ Name string }
	decodeJSON(t, s.mustAdmin(t, "account", "ls", "--json"), &ls)
	if len(ls) != persons {
		t.Errorf("after the restart: %d persons, want %d", len(ls), persons)
	}
	t.Logf("restart with %d streams, each held %s: healthy after %s", streams, slow.delay, took.Round(time.Millisecond))
}

// A port that another process holds stops `latch serve` at once, with the
// address and the flag that sets it.
func TestServePortInUse(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	data := filepath.Join(t.TempDir(), "data")
	for _, flag := range []string{"--nats", "--monitor", "--http"} {
		t.Run(flag, func(t *testing.T) {
			ports := map[string]string{"--nats": "127.0.0.1:0", "--monitor": "127.0.0.1:0", "--http": "127.0.0.1:0"}
			ports[flag] = addr
			args := []string{"serve", "--data", data}
			for f, a := range ports {
				args = append(args, f, a)
			}
			r := latchWithin(t, 60*time.Second, nil, args...)
			if r.err == nil {
				t.Fatalf("latch serve with %s %s taken: no error", flag, addr)
			}
			msg := r.err.Error()
			for _, want := range []string{addr, "(" + flag + ")", "address already in use"} {
				if !strings.Contains(msg, want) {
					t.Errorf("got %q, want it to name %q", msg, want)
				}
			}
			if exitCode(r.err) != 1 {
				t.Errorf("exit code %d, want 1", exitCode(r.err))
			}
			// Nothing was written: no half-made data folder is left.
			if _, err := os.Stat(data); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("after the refused start, the data folder: %v; want none", err)
			}
		})
	}
}
