package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/latch-dev/latch/server"
	"github.com/nats-io/nats.go"
)

// result is what one run of the command line gave.
type result struct {
	stdout, stderr string
	err            error
}

// latch runs the command line with args and an environment of its own
// (nothing is read from the process's environment).
//
// run is safe to call from tests in parallel: each run builds its app,
// commands and flags afresh, help and version flags included (urfave/cli's
// shared ones are never used).
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
	done    chan error // what run returned
	exited  bool
	exitErr error
	web     *http.Client // for https: trusts the test's CA; nil is the default
	started chan *server.Server
	srv     *server.Server // once `latch serve` opened it
}

// attach learns where the server listens once `latch serve` has opened it
// (the NATS address once it is ready); false when it has not within d or
// stopped first.
func (s *served) attach(d time.Duration) bool {
	if s.srv == nil {
		select {
		case srv := <-s.started:
			s.srv = srv
		case err := <-s.done:
			s.exited, s.exitErr = true, err
			return false
		case <-time.After(d):
			return false
		}
	}
	a := s.srv.Addrs()
	s.http, s.monitor = a.HTTP, a.Monitor
	if a.NATS != "" {
		s.nats = a.NATS
		s.env["LATCH_SERVER"] = a.NATS
	}
	return true
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
	return mustServeEnv(t, data, nil, extra...)
}

// mustServeEnv is mustServe with an environment for `latch serve`.
func mustServeEnv(t testing.TB, data string, environ map[string]string, extra ...string) *served {
	t.Helper()
	s := launchServe(t, data, environ, nil, extra...)
	s.waitHealthy(t, 30*time.Second)
	return s
}

// mustServeTLS is mustServe with TLS on every port, from the test CA's
// server certificate; its URLs are tls:// and https://, and its admin
// commands trust the CA.
func mustServeTLS(t testing.TB, certs *latchtest.Certs, extra ...string) *served {
	t.Helper()
	s := launchServe(t, "", nil, nil, append([]string{"--tls-cert", certs.Cert, "--tls-key", certs.Key}, extra...)...)
	s.env["LATCH_CA"] = certs.CA
	s.web = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.Pool}}}
	s.waitHealthy(t, 30*time.Second)
	return s
}

// launchServe runs `latch serve` on data (made fresh when empty) with free
// ports and returns at once; it stops when the test ends. The server's
// log goes to s.logs and, when not nil, to log as well.
func launchServe(t testing.TB, data string, environ map[string]string, log io.Writer, extra ...string) *served {
	t.Helper()
	if data == "" {
		data = filepath.Join(t.TempDir(), "data")
	}
	s := &served{data: data, logs: &syncBuffer{}, done: make(chan error, 1), started: make(chan *server.Server, 1)}
	s.env = map[string]string{"LATCH_DATA": data}
	ctx, cancel := context.WithCancel(context.Background())
	// Every port is 0: the server picks free ones, which the test reads
	// back (a --nats, --http or --monitor in extra wins: the last of a
	// flag given twice counts).
	ports := []string{"--nats", "127.0.0.1:0", "--monitor", "127.0.0.1:0"}
	if slices.Contains(extra, "--nats-external") {
		ports = nil // the external servers' business
	}
	args := append(append([]string{"latch", "serve", "--data", data, "--http", "127.0.0.1:0", "--lame-duck", "1s"}, ports...), extra...)
	var w io.Writer = s.logs
	if log != nil {
		w = io.MultiWriter(s.logs, log)
	}
	e := &env{getenv: func(k string) string { return environ[k] }, stdin: strings.NewReader(""), stdout: w, stderr: w,
		started: func(srv *server.Server) { s.started <- srv }}
	go func() {
		s.done <- runEnv(ctx, args, e)
	}()
	var stopOnce sync.Once
	s.stop = func() {
		stopOnce.Do(func() {
			cancel()
			if err := s.wait(30 * time.Second); err != nil {
				t.Errorf("latch serve: %v\n%s", err, s.logs)
			}
		})
	}
	t.Cleanup(s.stop)
	return s
}

// wait waits for `latch serve` to return, and gives what it returned.
func (s *served) wait(d time.Duration) error {
	if s.exited {
		return s.exitErr
	}
	select {
	case err := <-s.done:
		s.exited, s.exitErr = true, err
		return err
	case <-time.After(d):
		return fmt.Errorf("did not stop within %s", d)
	}
}

// waitHealthy waits until /healthz says ok, failing the test when latch
// serve stops or d passes first.
func (s *served) waitHealthy(t testing.TB, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		select {
		case err := <-s.done:
			s.exited, s.exitErr = true, err
		default:
		}
		if s.exited {
			t.Fatalf("latch serve stopped: %v\n%s", s.exitErr, s.logs)
		}
		if code, _ := s.healthz(); code == http.StatusOK {
			s.attach(0) // the NATS address, now that it is ready
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("latch serve not healthy after %s\n%s", d, s.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// healthz is what GET /healthz answers: its status code and body, or 0
// when nothing answered.
func (s *served) healthz() (int, string) {
	if !s.attach(100 * time.Millisecond) {
		return 0, "latch serve has not opened its ports"
	}
	hc := s.web
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Get(s.http + "/healthz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		// Ready since the addresses were read: the NATS one is known now.
		s.attach(0)
	}
	return resp.StatusCode, strings.TrimSpace(string(b))
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

// latchWithin runs the command line as latch does but gives up after d,
// for a command that would block if it wrongly succeeded (a `latch serve`
// that should refuse to start).
func latchWithin(t testing.TB, d time.Duration, environ map[string]string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	getenv := func(k string) string { return environ[k] }
	done := make(chan error, 1)
	go func() { done <- run(ctx, append([]string{"latch"}, args...), getenv, &out, &errb) }()
	select {
	case err := <-done:
		return result{stdout: out.String(), stderr: errb.String(), err: err}
	case <-time.After(d):
		cancel()
		err := <-done
		t.Fatalf("latch %s still ran after %s (then: %v)\n%s", strings.Join(args, " "), d, err, errb.String())
		return result{}
	}
}

// decodeJSON parses a command's --json output into v.
func decodeJSON(t testing.TB, r result, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("--json output is not JSON for %T: %v\n%s", v, err, r.stdout)
	}
}

// mustOperatorInfo is `latch operator show --json`.
func mustOperatorInfo(t testing.TB, data string) operatorInfo {
	t.Helper()
	var info operatorInfo
	decodeJSON(t, mustLatch(t, nil, "operator", "show", "--json", "--data", data), &info)
	return info
}

// mustIssueDevice makes a person and a device of theirs and returns the
// creds.
func mustIssueDevice(t testing.TB, s *served, person, device string) string {
	t.Helper()
	creds := filepath.Join(t.TempDir(), device+".creds")
	s.mustAdmin(t, "account", "add", person)
	s.mustAdmin(t, "device", "issue", "--account", person, "--name", device, "--out", creds)
	return creds
}

// connectCreds connects to url as the user in a creds file. It does not
// reconnect, so a refused or closed connection stays so.
func connectCreds(url, creds string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.UserCredentials(creds), nats.NoReconnect(), nats.Timeout(10 * time.Second)}, opts...)
	return nats.Connect(url, opts...)
}

// watchedConn is a connection whose closing a test waits for.
type watchedConn struct {
	*nats.Conn
	closed chan struct{}
	mu     sync.Mutex
	errs   []error // asynchronous errors, as the server's -ERR
}

// mustWatch connects with a creds file and closes the connection when the
// test ends.
func mustWatch(t testing.TB, url, creds string) *watchedConn {
	t.Helper()
	w := &watchedConn{closed: make(chan struct{})}
	nc, err := connectCreds(url, creds,
		nats.ClosedHandler(func(*nats.Conn) { close(w.closed) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.errs = append(w.errs, err)
		}))
	if err != nil {
		t.Fatalf("connect with %s: %v", filepath.Base(creds), err)
	}
	w.Conn = nc
	t.Cleanup(nc.Close)
	return w
}

// waitClosed waits until the server has closed the connection, and
// returns the errors the connection saw, joined.
func (w *watchedConn) waitClosed(t testing.TB, why string) error {
	t.Helper()
	select {
	case <-w.closed:
		w.mu.Lock()
		defer w.mu.Unlock()
		return errors.Join(append(w.errs, w.LastError())...)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: the server did not close the connection within 30s", why)
		return nil
	}
}

// fileTree describes every file and folder under dir: its mode and, for a
// file, a hash of its content. Two equal trees hold the same things.
func fileTree(t testing.TB, dir string) map[string]string {
	t.Helper()
	tree := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		desc := fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			desc += " " + hex.EncodeToString(sum[:])
		}
		rel, _ := filepath.Rel(dir, path)
		tree[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}
