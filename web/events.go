package web

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/a-h/templ"
	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/views"
)

// sseHeartbeat is how often an idle event stream sends a comment, so that
// proxies and browsers do not give up on it, and the person's account is
// checked again.
const sseHeartbeat = 25 * time.Second

// CloseStreams ends the event streams of every open page, and those
// opened later. An http.Server's Shutdown waits for open requests, and
// these would never end: register it with RegisterOnShutdown. Browsers
// reconnect to wherever latch runs next.
func (s *Server) CloseStreams() { s.closeOnce.Do(func() { close(s.closing) }) }

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

// keepAlive sends an idle stream its heartbeat comment; false when the
// stream should end: the person can no longer log in (logged out,
// disabled or deleted meanwhile), or the browser is gone.
func (s *Server) keepAlive(w http.ResponseWriter, r *http.Request, rc *http.ResponseController) bool {
	if _, err := s.loggedIn(r); err != nil {
		return false
	}
	_, err := w.Write([]byte(": keep-alive\n\n"))
	return err == nil && rc.Flush() == nil
}

// handleDeviceEvents is GET /events/devices: a stream of server-sent
// events that keeps the devices page live. Each event is named after a
// device's row (views.Device.RowID) and carries the row anew, which the
// row swaps in for itself; a device the page did not list comes as a
// views.DeviceNewEvent. Presence (online, offline) and the account
// service's changes (added, revoked, renewed, renamed) feed it; it ends when the request does, or when the person can no
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
	var presence <-chan PresenceEvent
	if s.cfg.Presence != nil {
		ch, cancel := s.cfg.Presence.Subscribe(p.Account)
		defer cancel()
		presence = ch
	}
	// Changes come from the account service, whoever made them: this
	// page, another tab, the CLI, another node.
	changes, err := s.cfg.Accounts.Changes(ctx, p.Account)
	if err != nil {
		s.fail(w, r, err)
		return
	}

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
			if !s.keepAlive(w, r, rc) {
				return
			}
			continue
		case ev, ok := <-presence:
			if !ok {
				presence = nil // presence stopped; revocations still come
				continue
			}
			device = ev.User
		case <-s.closing:
			return // the server is shutting down
		case c, ok := <-changes:
			if !ok {
				return // latch's connection closed: the browser comes back
			}
			if c.Device == "" {
				continue // not about a device
			}
			device = c.Device
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
		if err != nil && !errors.Is(err, accounts.ErrNotFound) && ctx.Err() == nil {
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
