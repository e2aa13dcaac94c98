package web

import (
	"context"
	"net/http"
	"strings"

	"github.com/a-h/templ"
	"github.com/latch-dev/latch/views"
)

// htmx request and response headers, named once.
const (
	hxRequest  = "HX-Request"
	hxHistory  = "HX-History-Restore-Request"
	hxRedirect = "HX-Redirect"
	hxTrigger  = "HX-Trigger"
)

// isHTMX reports whether htmx sent the request for a fragment (a history
// restore wants the whole page).
func isHTMX(r *http.Request) bool {
	return r.Header.Get(hxRequest) == "true" && r.Header.Get(hxHistory) != "true"
}

// wantsJSON reports whether the answer should be JSON: the API, and the
// passkey script's requests.
func wantsJSON(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/api/") ||
		strings.Contains(r.Header.Get("Accept"), "application/json") && !isHTMX(r)
}

// render writes a component as HTML with a status.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Add("Vary", hxRequest)
	w.WriteHeader(status)
	if err := c.Render(views.WithSite(r.Context(), s.site), w); err != nil && !isCanceled(r.Context()) {
		s.log.Error("render", "path", r.URL.Path, "err", err)
	}
}

func isCanceled(ctx context.Context) bool { return ctx.Err() != nil }

// page answers a GET with the whole page, or htmx with its section: the
// one place that decides page or fragment.
func (s *Server) page(w http.ResponseWriter, r *http.Request, whole, section templ.Component) {
	if isHTMX(r) {
		s.render(w, r, http.StatusOK, section)
		return
	}
	s.render(w, r, http.StatusOK, whole)
}

// changed answers a change: htmx gets the fragment that shows it, made
// only then; a form post goes back to the page at back.
func (s *Server) changed(w http.ResponseWriter, r *http.Request, back string, fragment func() (templ.Component, error)) {
	if !isHTMX(r) {
		http.Redirect(w, r, back, http.StatusSeeOther)
		return
	}
	c, err := fragment()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, c)
}

// fragment wraps a component that is ready.
func fragment(c templ.Component) func() (templ.Component, error) {
	return func() (templ.Component, error) { return c, nil }
}
