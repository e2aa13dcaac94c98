package web

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/a-h/templ"
	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/resolver"
	"github.com/latch-dev/latch/views"
)

// sseHeartbeat is how often an idle event stream sends a comment, so that
// proxies and browsers do not give up on it, and the person's account is
// checked again.
const sseHeartbeat = 25 * time.Second

// hubBuffer is how many changes a slow event stream may fall behind before
// it loses some; a lost change leaves a row stale until the next reload.
const hubBuffer = 64

// hub fans "a device changed" out to the event streams of the device's
// account, so that a revocation or a new device in one tab shows in every
// other tab of the person at once. Online and offline come from Presence
// instead; the hub carries what happens in this process.
type hub struct {
	mu     sync.Mutex
	subs   map[chan string]string // stream → account public key
	closed bool
}

func newHub() *hub { return &hub{subs: make(map[chan string]string)} }

// subscribe returns the public keys of the account's devices that change
// from now on; cancel ends it.
// The channel is closed when the hub is.
func (h *hub) subscribe(account string) (<-chan string, func()) {
	ch := make(chan string, hubBuffer)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(ch)
		return ch, func() {}
	}
	h.subs[ch] = account
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[ch]; ok {
			delete(h.subs, ch)
			close(ch)
		}
	}
}

// close ends every subscription, now and to come.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for ch := range h.subs {
		delete(h.subs, ch)
		close(ch)
	}
}

// publish tells the streams of an account that one of its devices
// changed. It never waits: a stream that is behind loses the change.
func (h *hub) publish(account, device string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch, acc := range h.subs {
		if acc != account {
			continue
		}
		select {
		case ch <- device:
		default:
		}
	}
}

// deviceChanged tells the person's open device pages that a device was
// added, revoked or otherwise changed; they show its row anew. account is
// the person account's public key (A…), device the device's (U…).
func (s *Server) deviceChanged(account, device string) {
	s.events.publish(account, device)
}

// CloseStreams ends the event streams of every open devices page, and
// those opened later. An http.Server's Shutdown waits for open requests,
// and these would never end: register it with RegisterOnShutdown.
// Browsers reconnect to wherever latch runs next.
func (s *Server) CloseStreams() { s.events.close() }

// openStream starts a response as a stream of server-sent events and
// returns its controller for flushing; false when the client is gone.
func (s *Server) openStream(w http.ResponseWriter) (*http.ResponseController, bool) {
	rc := http.NewResponseController(w)
	// A server-wide write timeout would cut the stream; this one is meant
	// to stay open. Servers without deadlines answer ErrNotSupported.
	if err := rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.log.Debug("event stream write deadline", "err", err)
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not hold events back
	w.WriteHeader(http.StatusOK)
	// The browser reconnects after this long when the stream drops.
	if _, err := w.Write([]byte("retry: 5000\n\n")); err != nil || rc.Flush() != nil {
		return nil, false
	}
	return rc, true
}

// handleDeviceEvents is GET /devices/events: a stream of server-sent
// events that keeps the devices page live. Each event is named after a
// device's row (views.Device.RowID) and carries the row anew, which the
// row swaps in for itself; a device the page did not list comes as a
// views.DeviceNewEvent. Presence (online, offline) and the hub (revoked,
// added) feed it; it ends when the request does, or when the person can no
// longer log in.
func (s *Server) handleDeviceEvents(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	ctx := r.Context()
	devs, err := s.cfg.Accounts.Devices(ctx, p.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	known := make(map[string]bool, len(devs))
	for _, d := range devs {
		known[d.PublicKey] = true
	}
	// Subscribe before the first byte goes out: whatever happens once the
	// browser holds the stream reaches it.
	var presence <-chan resolver.PresenceEvent
	if s.cfg.Presence != nil {
		ch, cancel := s.cfg.Presence.Subscribe(p.Account)
		defer cancel()
		presence = ch
	}
	changes, cancel := s.events.subscribe(p.Account)
	defer cancel()

	rc, ok := s.openStream(w)
	if !ok {
		return
	}

	beat := time.NewTicker(sseHeartbeat)
	defer beat.Stop()
	for {
		var device string
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			if _, err := s.loggedIn(r); err != nil {
				return // logged out, disabled or deleted meanwhile
			}
			if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil || rc.Flush() != nil {
				return
			}
			continue
		case ev, ok := <-presence:
			if !ok {
				presence = nil // presence stopped; revocations still come
				continue
			}
			device = ev.User
		case d, ok := <-changes:
			if !ok {
				return // the server is shutting down
			}
			device = d
		}
		ev, row, ok := s.deviceEvent(ctx, p, device, known)
		if !ok {
			continue
		}
		if err := writeEvent(ctx, w, ev, row); err != nil || rc.Flush() != nil {
			return
		}
	}
}

// deviceEvent is the event name and row of a device that changed; ok is
// false for a user of the account that is not a device (the server's own
// short-lived users) or a device that cannot be read now.
func (s *Server) deviceEvent(ctx context.Context, p accounts.Person, device string, known map[string]bool) (string, templ.Component, bool) {
	d, err := s.cfg.Accounts.Device(ctx, p.Name, device)
	if err != nil || d.PublicKey != device {
		if err != nil && accounts.Kind(err) != "not_found" && ctx.Err() == nil {
			s.log.Warn("device event", "account", p.Account, "device", device, "err", err)
		}
		return "", nil, false
	}
	v := s.deviceView(d)
	if known[device] {
		return v.RowID(), views.DeviceRow(v), true
	}
	known[device] = true
	return views.DeviceNewEvent, views.DeviceNew(v), true
}

// writeEvent writes one server-sent event whose data is a rendered
// component, one data line for each line of HTML.
func writeEvent(ctx context.Context, w http.ResponseWriter, name string, c templ.Component) error {
	var html bytes.Buffer
	if err := c.Render(ctx, &html); err != nil {
		return err
	}
	var b bytes.Buffer
	b.WriteString("event: " + name + "\n")
	// A bare CR ends a line in an event stream too; names cannot hold one,
	// but nothing in the data may ever start a field of its own.
	for line := range bytes.Lines(bytes.ReplaceAll(html.Bytes(), []byte("\r"), nil)) {
		b.WriteString("data: ")
		b.Write(bytes.TrimSuffix(line, []byte("\n")))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}
