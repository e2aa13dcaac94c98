package resolver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A starting nats-server opens its client port only after JetStream has
// recovered every account's streams, one account after another, and at
// thousands of persons that takes minutes (docs/operations.md). So a start
// is judged by its progress, which the server tells only in its log: each
// stream it recovers logs "Restored N messages for stream …". startup
// counts those lines, notices when the server gives up (Fatalf), and
// answers /healthz while the server itself cannot be asked: during
// recovery the server holds its own lock for long stretches.
type startup struct {
	began   time.Time
	streams int // streams on disk when the start began; -1 when unknown

	client, monitor string // the listeners' addresses, to name in errors

	restored atomic.Int64
	lastLine atomic.Int64 // UnixNano of the server's last log line
	ready    atomic.Bool
	stopping atomic.Bool
	stopped  atomic.Bool // stopped while starting: what the server logs now is dropped

	failOnce sync.Once
	failed   chan struct{} // closed when the server gives up
	failErr  error
}

func newStartup(jetStreamDir, client, monitor string) *startup {
	st := &startup{
		began: time.Now(), streams: countStreams(jetStreamDir),
		client: client, monitor: monitor, failed: make(chan struct{}),
	}
	st.lastLine.Store(st.began.UnixNano())
	return st
}

// countStreams counts the streams JetStream will recover from dir: one
// folder per stream under <account>/streams.
func countStreams(dir string) int {
	accts, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		return -1
	}
	n := 0
	for _, a := range accts {
		if !a.IsDir() {
			continue
		}
		ss, err := os.ReadDir(filepath.Join(dir, a.Name(), "streams"))
		if err != nil {
			continue
		}
		for _, s := range ss {
			if s.IsDir() {
				n++
			}
		}
	}
	return n
}

// line notes that the server logged something, and says at which level
// latch logs it. The two lines every recovered stream logs go to debug:
// at thousands of persons they would bury everything else, and progress
// is logged every few seconds instead.
func (st *startup) line(format string, lvl level) level {
	st.lastLine.Store(time.Now().UnixNano())
	switch {
	case strings.HasPrefix(format, "  Restored "):
		st.restored.Add(1)
		return levelDebug
	case strings.HasPrefix(format, "  Starting restore for stream"),
		strings.HasPrefix(format, "  Recovering ") && strings.Contains(format, "consumers for stream"):
		return levelDebug
	case st.stopping.Load() && !st.ready.Load() &&
		(strings.HasPrefix(format, "Error configuring jetstream for account") ||
			strings.HasPrefix(format, "  Error recreating stream")):
		// Stopped while recovering: the accounts and streams still in
		// the recovery loop fail with "server is not running" or
		// "JetStream not enabled for account". Nothing is lost; they are
		// recovered, whole, on the next start.
		return levelDebug
	}
	return lvl
}

// fatal records that the server gave up, saying msg; only the first
// reason counts. A listener it could not open becomes a *ListenError.
func (st *startup) fatal(msg string) {
	var err error
	switch {
	case strings.HasPrefix(msg, "Error listening on port:"):
		err = &ListenError{Listener: "client", Addr: st.client, Err: errors.New(lastQuoted(msg))}
	case strings.HasPrefix(msg, "Can't start monitoring:"), strings.HasPrefix(msg, "Error starting monitor on"):
		err = &ListenError{Listener: "monitor", Addr: st.monitor, Err: errors.New(msg)}
	default:
		err = errors.New("nats: " + msg)
	}
	st.failOnce.Do(func() {
		st.failErr = err
		close(st.failed)
	})
}

// lastQuoted is the text of the last %q in msg, or msg.
func lastQuoted(msg string) string {
	i := strings.LastIndex(msg, ", \"")
	if i < 0 {
		return msg
	}
	if u, err := strconv.Unquote(msg[i+2:]); err == nil {
		return u
	}
	return msg
}

// sinceLine is how long ago the server last logged.
func (st *startup) sinceLine() time.Duration {
	return time.Since(time.Unix(0, st.lastLine.Load()))
}

// String says how far the start is, for the log and /healthz.
func (st *startup) String() string {
	el := time.Since(st.began).Round(time.Second)
	n := st.restored.Load()
	if st.streams < 0 {
		return fmt.Sprintf("JetStream is recovering: restored %s streams in %s", comma(n), el)
	}
	if n >= int64(st.streams) {
		return fmt.Sprintf("JetStream recovered %s streams in %s; waiting for the listeners", comma(n), el)
	}
	return fmt.Sprintf("JetStream is recovering: restored %s of %s streams in %s", comma(n), comma(int64(st.streams)), el)
}

// comma writes n with thousands separators, as nats-server does.
func comma(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + comma(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
