package web

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/views"
)

// The records pages show the logged-in person's records bucket: a page of
// keys, a key's value and history, a delete. They read through the account
// service, which reads as a short-lived user of the person's own account;
// a person only ever names keys of their own bucket.

// recordRow is a record as a table row shows it.
func recordRow(r accounts.Record) views.RecordRow {
	return views.RecordRow{Key: r.Key, Revision: r.Revision, Op: r.Op, Size: r.Size, Time: r.Time}
}

// restoreView is the restore part of the Records page: how far the
// history reaches (left out when it cannot be read), or that there is none.
func (s *Server) restoreView(r *http.Request, p accounts.Person) views.RecordsRestore {
	var v views.RecordsRestore
	h, err := s.cfg.Accounts.RecordsHistory(r.Context(), p.Name)
	if err == nil {
		v.Oldest, v.Writes = h.Oldest, h.Writes
	}
	v.None = errors.Is(err, accounts.ErrNotFound)
	return v
}

// handleRecordsRestore is POST /records/restore: the records set back to
// what they were at the form's time (UTC). htmx gets the restore part
// back with what was done; a form post goes back to the page.
func (s *Server) handleRecordsRestore(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	f, err := readForm(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// The form has whole seconds (or minutes): the records as they were
	// at the end of that second (or minute), its writes included.
	var at time.Time
	for _, l := range []struct {
		layout string
		span   time.Duration
	}{{"2006-01-02T15:04:05", time.Second}, {"2006-01-02T15:04", time.Minute}} {
		if at, err = time.ParseInLocation(l.layout, strings.TrimSpace(f["at"]), time.UTC); err == nil {
			at = at.Add(l.span)
			break
		}
	}
	var done *views.RestoreDone
	problem := ""
	if err != nil {
		problem = "say when, as a date and time (UTC), such as 2026-12-01T15:04"
	} else {
		ctx := accounts.WithActor(r.Context(), actor(r, p))
		res, err := s.cfg.Accounts.RestoreRecords(ctx, p.Name, at)
		switch {
		case err == nil:
			done = &views.RestoreDone{At: res.At, Put: res.Put, Deleted: res.Deleted}
		case errors.Is(err, accounts.ErrInvalid), errors.Is(err, accounts.ErrNotFound): // before the history, or none yet
			problem = err.Error()
		default:
			s.fail(w, r, err)
			return
		}
	}
	v := s.restoreView(r, p)
	v.Done, v.Error = done, problem
	s.changed(w, r, "/records", fragment(views.RecordsRestoreSection(v)))
}

// handleRecords is GET /records: a page of keys (?prefix= filters them,
// ?after= is the cursor of the page), kept live by handleRecordEvents.
func (s *Server) handleRecords(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	q := r.URL.Query()
	prefix, after := q.Get("prefix"), q.Get("after")
	page, err := s.cfg.Accounts.Records(r.Context(), p.Name, accounts.RecordQuery{Prefix: prefix, After: after})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	v := views.RecordsPage{
		Viewer: viewerOf(p), Prefix: prefix, After: after,
		Total: page.Total, Before: page.Before, Revision: page.Revision,
		Used: page.Usage.Records, Quota: page.Usage.Quota,
	}
	for _, rec := range page.Records {
		v.Rows = append(v.Rows, recordRow(rec))
	}
	if page.More && len(page.Records) > 0 {
		v.Next = page.Records[len(page.Records)-1].Key
	}
	v.Restore = views.RecordsRestore{Oldest: page.History.Oldest, Writes: page.History.Writes, None: page.NoHistory}
	w.Header().Set("Cache-Control", "no-store")
	s.page(w, r, v, v.Section())
}

// handleRecord is GET /records/{key}: the latest revision of a key, or
// the one ?revision= names, with its value and history; ?raw=1 downloads
// the value as it is.
func (s *Server) handleRecord(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	s.showRecord(w, r, p, r.PathValue("key"))
}

func (s *Server) showRecord(w http.ResponseWriter, r *http.Request, p accounts.Person, key string) {
	var revision uint64
	if v := r.URL.Query().Get("revision"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			s.fail(w, r, errStatus(http.StatusBadRequest, "revision must be a positive whole number"))
			return
		}
		revision = n
	}
	d, err := s.cfg.Accounts.Record(r.Context(), p.Name, key, revision)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if r.URL.Query().Get("raw") == "1" {
		if d.Deleted() {
			s.fail(w, r, errStatus(http.StatusNotFound, "revision "+strconv.FormatUint(d.Revision, 10)+" of "+key+" is a delete; it has no value"))
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", attachment(strings.ReplaceAll(key, "/", "_")))
		h.Set("Content-Length", strconv.Itoa(len(d.Value)))
		w.WriteHeader(http.StatusOK)
		w.Write(d.Value)
		return
	}
	v := views.RecordPage{Viewer: viewerOf(p), Record: recordRow(d.Record), Value: d.Value, Latest: d.Latest}
	for _, h := range d.History {
		v.History = append(v.History, recordRow(h))
	}
	s.render(w, r, http.StatusOK, v)
}

// handleRecordDelete is POST /records/{key}/delete: the key is deleted as
// a device would delete it; the devices watching see it at once. htmx
// gets the row back, deleted; a form goes back to the list, or to the
// key's page when it came from there (back=record).
func (s *Server) handleRecordDelete(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	f, err := readForm(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	key := r.PathValue("key")
	ctx := accounts.WithActor(r.Context(), actor(r, p))
	rec, err := s.cfg.Accounts.DeleteRecord(ctx, p.Name, key)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	back := "/records"
	if f["back"] == "record" {
		back = views.RecordURL(key, 0)
	}
	switch {
	case isHTMX(r) && f["back"] == "record":
		w.Header().Set(hxRedirect, back)
		w.WriteHeader(http.StatusOK)
	case isHTMX(r):
		s.render(w, r, http.StatusOK, views.RecordRowView(recordRow(rec)))
	default:
		http.Redirect(w, r, back, http.StatusSeeOther)
	}
}

// handleRecordEvents is GET /events/records: a stream of server-sent
// events that keeps a page of keys live. The query is the page's
// (views.RecordsPage.EventsURL): its filter, its range of keys and the
// revision it was listed at. A change to a key the page shows comes as an
// event named after the key's row, which swaps itself; a put of a key in
// the page's range that the page does not show comes as a
// views.RecordNewEvent. Each event's id is its revision, so a browser that
// reconnects (Last-Event-ID) resumes after the last change it saw; the
// account service then tells which keys the page gained meanwhile.
func (s *Server) handleRecordEvents(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	q := r.URL.Query()
	prefix, after, until := q.Get("prefix"), q.Get("after"), q.Get("until")
	since, err := strconv.ParseUint(q.Get("since"), 10, 64)
	if err != nil {
		s.fail(w, r, errStatus(http.StatusBadRequest, "since must be the revision the page was listed at"))
		return
	}
	from := since + 1
	if id, err := strconv.ParseUint(r.Header.Get("Last-Event-ID"), 10, 64); err == nil && id >= since {
		from = id + 1
	}
	inRange := func(key string) bool {
		return strings.HasPrefix(key, prefix) && key > after && (until == "" || key <= until)
	}

	ctx := r.Context()
	changes, err := s.cfg.Accounts.WatchRecords(ctx, p.Name, from, since)
	if err != nil {
		s.fail(w, r, err)
		return
	}

	rc, ok := s.openStream(w)
	if !ok {
		return
	}

	shown := map[string]bool{} // keys with a row on the page
	added := 0                 // rows of new keys sent
	beat := time.NewTicker(sseHeartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			if !s.keepAlive(w, r, rc) {
				return
			}
		case <-s.closing:
			return // the server is shutting down
		case c, ok := <-changes:
			if !ok {
				return // the browser comes back after the retry and resumes
			}
			if !inRange(c.Key) {
				continue
			}
			has, seen := shown[c.Key]
			if !seen {
				has = c.Listed
			}
			row := recordRow(c.Record)
			var name string
			var html = views.RecordRowView(row)
			switch {
			case has:
				name = row.RowID()
			case !c.Deleted():
				added++
				name, html = views.RecordNewEvent, views.RecordNew(row, added)
				has = true
			default:
				continue // a delete of a key the page does not show
			}
			shown[c.Key] = has
			if _, err := w.Write([]byte("id: " + strconv.FormatUint(c.Revision, 10) + "\n")); err != nil {
				return
			}
			if err := writeEvent(ctx, w, name, html); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

// recordService is what the account service does for device renewal and
// records.
type recordService interface {
	RenewDevice(ctx context.Context, account, device string) (accounts.Device, string, error)
	Records(ctx context.Context, person string, q accounts.RecordQuery) (accounts.RecordsPage, error)
	Record(ctx context.Context, person, key string, revision uint64) (accounts.RecordDetail, error)
	DeleteRecord(ctx context.Context, person, key string) (accounts.Record, error)
	WatchRecords(ctx context.Context, person string, from, listed uint64) (<-chan accounts.RecordChange, error)
	RecordsHistory(ctx context.Context, person string) (accounts.History, error)
	RestoreRecords(ctx context.Context, person string, at time.Time) (accounts.Restored, error)
}
