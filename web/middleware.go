package web

import (
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"
)

// contentSecurityPolicy allows scripts, styles and connections to latch's
// own origin only: htmx and the passkey script are served from the binary,
// and no page has inline script.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// maxBody is the largest request body any handler reads.
const maxBody = 64 << 10

// guard wraps every handler: security headers, a bound on request bodies,
// cross-origin protection for state-changing requests, and a recover that
// turns a panic into a 500 instead of a dropped connection.
func (s *Server) guard(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, errStatus(http.StatusForbidden, "cross-site request refused; use latch's own pages"))
	}))
	guarded := cop.Handler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if s.secure {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		// A body that trickles in, or an answer the client does not read,
		// holds a connection only so long. Live event streams write for
		// as long as the page is open. (A recorder cannot take deadlines.)
		rc := http.NewResponseController(w)
		now := time.Now()
		_ = rc.SetReadDeadline(now.Add(s.cfg.BodyTimeout))
		if !strings.HasSuffix(r.URL.Path, "/events") {
			_ = rc.SetWriteDeadline(now.Add(s.cfg.WriteTimeout))
		}
		if s.cfg.TrustProxy {
			if ip, ok := forwardedFor(r); ok {
				r.RemoteAddr = net.JoinHostPort(ip, "0")
			}
		}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				s.fail(w, r, errStatus(http.StatusInternalServerError, "internal error"))
			}
		}()
		guarded.ServeHTTP(w, r)
	})
}
