package web

import (
	"net/http"

	"github.com/latch-dev/latch/views"
)

// routes is the table of contents: every page, fragment and API call.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	static := http.FileServerFS(views.Static())
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		static.ServeHTTP(w, r)
	})))

	// Releases, for anyone (downloads.go).
	mux.HandleFunc("GET /downloads", s.handleDownloads)
	mux.HandleFunc("GET /downloads/latest/{os}/{arch}", s.handleDownloadLatest)
	mux.HandleFunc("GET /downloads/{kind}/{os}/{arch}/{version}", s.handleDownload)

	// Logging in and signing up (auth.go, passkeys.go).
	mux.HandleFunc("GET /", s.handleHome)
	mux.HandleFunc("GET /login", s.handleLogin)
	mux.HandleFunc("POST /logout", s.handleLogout)
	mux.HandleFunc("GET /setup/{token}", s.handleSetup)
	mux.HandleFunc("GET /invite/{token}", s.handleInvite)
	mux.HandleFunc("GET /signup", s.handleSignup)
	mux.HandleFunc("POST /register/begin", s.handleRegisterBegin)
	mux.HandleFunc("POST /register/finish", s.handleRegisterFinish)
	mux.HandleFunc("POST /login/begin", s.handleLoginBegin)
	mux.HandleFunc("POST /login/finish", s.handleLoginFinish)
	mux.HandleFunc("POST /reauth/begin", s.authed(s.handleReauthBegin))
	mux.HandleFunc("POST /reauth/finish", s.authed(s.handleReauthFinish))
	mux.HandleFunc("POST /sessions/end", s.authed(s.handleSessionsEnd))
	mux.HandleFunc("POST /sessions/{id}/end", s.authed(s.handleSessionEnd))

	// Passkeys of the person logged in (passkeys.go).
	mux.HandleFunc("POST /passkeys/begin", s.authed(s.handlePasskeyBegin))
	mux.HandleFunc("POST /passkeys/finish", s.authed(s.handlePasskeyFinish))

	// Enrollment (enroll.go): the device API, public and JSON, and the
	// pages where a person checks and approves a device's code.
	mux.HandleFunc("POST /api/enroll/start", s.handleEnrollStart)
	mux.HandleFunc("POST /api/enroll/poll", s.handleEnrollPoll)
	mux.HandleFunc("GET /enroll", s.handleEnroll)
	mux.HandleFunc("POST /enroll", s.authed(s.handleEnrollCode))
	mux.HandleFunc("GET /enroll/{code}", s.authed(s.handleEnrollReview))
	mux.HandleFunc("POST /enroll/{code}/approve", s.authed(s.handleEnrollApprove))
	mux.HandleFunc("POST /enroll/{code}/deny", s.authed(s.handleEnrollDeny))

	// Renewal (renew.go): a device swaps its JWT for a fresh one; public
	// and JSON, like the enrollment API.
	mux.HandleFunc("POST /api/devices/renew", s.handleDeviceRenew)

	// Records of the person logged in (records.go): a page of keys kept
	// live by a stream of server-sent events, a key's value and history,
	// and a delete.
	mux.HandleFunc("GET /records", s.authed(s.handleRecords))
	mux.HandleFunc("GET /events/records", s.authed(s.handleRecordEvents))
	mux.HandleFunc("POST /records/restore", s.authed(s.handleRecordsRestore))
	mux.HandleFunc("GET /records/{key}", s.authed(s.handleRecord))
	mux.HandleFunc("POST /records/{key}/delete", s.authed(s.handleRecordDelete))

	// Devices of the person logged in (devices.go), kept live by a stream
	// of server-sent events (events.go).
	mux.HandleFunc("GET /devices", s.authed(s.handleDevices))
	mux.HandleFunc("GET /events/devices", s.authed(s.handleDeviceEvents))
	mux.HandleFunc("POST /devices/{pub}/revoke", s.authed(s.handleDeviceRevoke))
	mux.HandleFunc("POST /devices/{pub}/disconnect", s.authed(s.handleDeviceDisconnect))
	mux.HandleFunc("POST /devices/download", s.authed(s.handleDeviceDownload))

	// The passkeys page: list, rename, remove (passkeys_page.go).
	mux.HandleFunc("GET /passkeys", s.authed(s.handlePasskeys))
	mux.HandleFunc("POST /passkeys/{id}/rename", s.authed(s.handlePasskeyRename))
	mux.HandleFunc("POST /passkeys/{id}/remove", s.authed(s.handlePasskeyRemove))

	// Admins only (admin.go): persons, invites, audit trail, server status.
	mux.HandleFunc("GET /admin", s.admin(s.handleAdmin))
	mux.HandleFunc("GET /admin/audit", s.admin(s.handleAdminAudit))
	mux.HandleFunc("POST /admin/persons/{name}/disable", s.admin(s.handleAdminPerson("disable")))
	mux.HandleFunc("POST /admin/persons/{name}/enable", s.admin(s.handleAdminPerson("enable")))
	mux.HandleFunc("POST /admin/persons/{name}/delete", s.admin(s.handleAdminPerson("delete")))
	mux.HandleFunc("POST /admin/persons/{name}/invite", s.admin(s.handleAdminPersonInvite))
	mux.HandleFunc("POST /admin/invites", s.admin(s.handleAdminInviteCreate))
	mux.HandleFunc("POST /admin/invites/{id}/revoke", s.admin(s.handleAdminInviteRevoke))

	return s.guard(mux)
}
