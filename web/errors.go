package web

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/views"
)

// httpError is an error with the status it answers with. Its message is
// written for the person who sees it.
type httpError struct {
	status int
	code   string // JSON error code; derived from status when empty
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errStatus(status int, msg string) error { return &httpError{status: status, msg: msg} }

var (
	errLoginNeeded = &httpError{status: http.StatusUnauthorized, code: "login_required", msg: "log in first"}
	errAdminOnly   = &httpError{status: http.StatusForbidden, code: "forbidden", msg: "only an admin can do that"}
)

// statusOf maps an error to its HTTP status and a short code.
func statusOf(err error) (int, string) {
	var he *httpError
	if errors.As(err, &he) {
		code := he.code
		if code == "" {
			code = codeOf(he.status)
		}
		return he.status, code
	}
	// One table of kinds, in accounts.
	return accounts.Kind(err).HTTPStatus()
}

func codeOf(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_request"
	case http.StatusUnauthorized:
		return "login_required"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusConflict:
		return "exists"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	case http.StatusTooManyRequests:
		return "slow_down"
	}
	return "server_error"
}

// fail is the one place errors become responses: JSON for API and script
// requests, a notice for htmx to show beside what made the request, a page
// otherwise. Only unexpected errors are logged; their text is not shown.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code := statusOf(err)
	msg := err.Error()
	if status == http.StatusInternalServerError {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "something went wrong on the server; try again, and tell an admin if it keeps happening"
	}
	switch {
	case wantsJSON(r):
		writeJSON(w, status, apiError{Error: code, Description: msg})
	case isHTMX(r):
		if status == http.StatusUnauthorized {
			w.Header().Set(hxRedirect, "/login")
			w.WriteHeader(http.StatusOK)
			return
		}
		// htmx does not swap an error into the request's target; the
		// page's errors.js puts the notice right after the element that
		// made the request. The browser places it, not HX-Retarget: the
		// server knows that element only by an id, which most buttons lack.
		s.render(w, r, status, views.ErrorNotice(msg))
	default:
		if status == http.StatusUnauthorized && r.Method == http.MethodGet {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		s.render(w, r, status, views.ErrorPage{Viewer: s.viewer(r), Status: status, Title: http.StatusText(status), Message: msg})
	}
}

// apiError is the JSON body of every API error.
type apiError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
