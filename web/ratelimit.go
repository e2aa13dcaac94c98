package web

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rate limits. RFC 8628 §5.1: user codes are short, so code entry must be
// slow enough that guessing one is hopeless (20^8 codes, 5 a minute).
// limitKind names a rate limit.
type limitKind string

const (
	limitEnrollStart limitKind = "enroll-start" // per address
	limitCode        limitKind = "code"         // per address and per person
	limitLogin       limitKind = "login"        // per address
	limitRegister    limitKind = "register"     // per address
	limitRenew       limitKind = "renew"        // per address
)

var limits = map[limitKind]struct {
	every time.Duration
	burst int
}{
	limitEnrollStart: {6 * time.Second, 10},
	limitCode:        {12 * time.Second, 5},
	limitLogin:       {time.Second, 20},
	limitRegister:    {6 * time.Second, 10},
	limitRenew:       {6 * time.Second, 10},
}

// limiters holds one token bucket per (kind, key), forgetting idle ones.
type limiters struct {
	now   func() time.Time
	mu    sync.Mutex
	seen  map[string]*rate.Limiter
	swept time.Time
}

func newLimiters(now func() time.Time) *limiters {
	return &limiters{now: now, seen: make(map[string]*rate.Limiter)}
}

// allow takes a token for kind and key, or says how long to wait.
func (l *limiters) allow(kind limitKind, key string) (bool, time.Duration) {
	cfg, ok := limits[kind]
	if !ok {
		panic("web: no rate limit named " + string(kind))
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > 10*time.Minute {
		for k, lim := range l.seen {
			if lim.TokensAt(now) >= float64(lim.Burst()) {
				delete(l.seen, k)
			}
		}
		l.swept = now
	}
	id := string(kind) + "\x00" + key
	lim, ok := l.seen[id]
	if !ok {
		lim = rate.NewLimiter(rate.Every(cfg.every), cfg.burst)
		l.seen[id] = lim
	}
	if lim.AllowN(now, 1) {
		return true, 0
	}
	need := 1 - lim.TokensAt(now)
	return false, time.Duration(need * float64(cfg.every))
}

// limit answers 429 with Retry-After when kind's limit for key is spent.
func (s *Server) limit(w http.ResponseWriter, r *http.Request, kind limitKind, key string) bool {
	ok, wait := s.limits.allow(kind, key)
	if ok {
		return true
	}
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	s.fail(w, r, &httpError{status: http.StatusTooManyRequests, code: "slow_down",
		msg: "too many attempts; wait " + strconv.Itoa(secs) + "s and try again"})
	return false
}
