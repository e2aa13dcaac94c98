package web

import (
	"fmt"
	"testing"
	"time"
)

// An enrollment storm from many addresses leaves nothing behind: each
// address's token bucket is forgotten once it is full again, at the first
// request ten minutes later. (The enrollments themselves live in a bucket
// whose TTL drops them; nothing else is kept per enrollment.)
func TestRateLimitersForgetIdleAddresses(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	l := newLimiters(func() time.Time { return now })
	for i := range 1000 {
		l.allow(limitEnrollStart, fmt.Sprintf("192.0.2.%d:%d", i%256, i))
	}
	// A busy address: the sweep forgets it once its bucket refilled, and
	// it is limited again as soon as it is busy again.
	for range 20 {
		l.allow(limitEnrollStart, "198.51.100.1")
	}
	if n := len(l.seen); n != 1001 {
		t.Fatalf("%d limiters after the storm, want 1001", n)
	}
	now = now.Add(9 * time.Minute)
	l.allow(limitLogin, "203.0.113.1")
	if n := len(l.seen); n != 1002 {
		t.Errorf("%d limiters 9 minutes on, want 1002 (no sweep yet)", n)
	}
	now = now.Add(2 * time.Minute)
	for range 30 {
		l.allow(limitEnrollStart, "198.51.100.1")
	}
	l.allow(limitLogin, "203.0.113.2")
	// Swept: every full bucket went; the busy address, busy again, and the
	// new one are all that is kept.
	if n := len(l.seen); n != 2 {
		t.Errorf("%d limiters after the sweep, want 2", n)
	}
	if ok, wait := l.allow(limitEnrollStart, "198.51.100.1"); ok || wait <= 0 {
		t.Errorf("the busy address after the sweep: allowed %v, wait %s; want it still limited", ok, wait)
	}
}
