package web

import (
	"net/http"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/views"
)

// personHandler is a handler for a logged-in person.
type personHandler func(w http.ResponseWriter, r *http.Request, p accounts.Person)

// authed runs h for a logged-in person whose account is active. The person
// is read again on every request, so disabling or deleting someone ends
// their sessions at once.
func (s *Server) authed(h personHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := s.loggedIn(r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		h(w, r, p)
	}
}

// admin runs h for a logged-in admin.
func (s *Server) admin(h personHandler) http.HandlerFunc {
	return s.authed(func(w http.ResponseWriter, r *http.Request, p accounts.Person) {
		if p.Role != accounts.RoleAdmin {
			s.fail(w, r, errAdminOnly)
			return
		}
		h(w, r, p)
	})
}

func (s *Server) loggedIn(r *http.Request) (accounts.Person, error) {
	l, ok := s.sessions.login(r)
	if !ok {
		return accounts.Person{}, errLoginNeeded
	}
	p, err := s.cfg.Accounts.Person(r.Context(), l.Person)
	if accounts.Kind(err) == "not_found" {
		return p, errLoginNeeded
	}
	if err != nil {
		return p, err
	}
	if p.Status != accounts.StatusActive {
		return p, errStatus(http.StatusForbidden, "your account is "+p.Status+"; ask an admin")
	}
	if p.SessionsSince != nil && l.At.Before(*p.SessionsSince) {
		return p, errLoginNeeded // ended from another session
	}
	return p, nil
}

// endOtherSessions ends every session of the person but this one, which
// begins anew.
func (s *Server) endOtherSessions(w http.ResponseWriter, r *http.Request, p accounts.Person) error {
	since, err := s.cfg.Accounts.EndSessions(accounts.WithActor(r.Context(), actor(r, p)), p.Name)
	if err != nil {
		return err
	}
	l, _ := s.sessions.login(r)
	l.At = s.cfg.Now()
	if l.At.Before(since) {
		l.At = since // a test clock, or a clock that stepped back
	}
	return s.sessions.setLogin(w, r, l)
}

// handleSessionsEnd is POST /sessions/end: log out everywhere else.
func (s *Server) handleSessionsEnd(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	if err := s.endOtherSessions(w, r, p); err != nil {
		s.fail(w, r, err)
		return
	}
	if isHTMX(r) {
		s.render(w, r, http.StatusOK, views.SessionsEnded())
		return
	}
	http.Redirect(w, r, "/passkeys", http.StatusSeeOther)
}

// viewer is who is looking, for the top bar; nobody when not logged in.
func (s *Server) viewer(r *http.Request) views.Viewer {
	p, err := s.loggedIn(r)
	if err != nil {
		return views.Viewer{}
	}
	return viewerOf(p)
}

func viewerOf(p accounts.Person) views.Viewer {
	return views.Viewer{Name: p.Name, DisplayName: p.DisplayName, Admin: p.Role == accounts.RoleAdmin}
}

// actor names the person for the audit trail.
func actor(r *http.Request, p accounts.Person) accounts.Actor {
	return accounts.Actor{Name: p.Name, From: clientAddr(r)}
}

// handleHome is GET /: the devices page for a person, the login page for
// anyone else.
func (s *Server) handleHome(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		s.fail(w, r, errStatus(http.StatusNotFound, "there is no page "+r.URL.Path))
		return
	}
	if _, err := s.loggedIn(r); err == nil {
		http.Redirect(w, r, "/devices", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// handleLogin is GET /login.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	if _, err := s.loggedIn(r); err == nil {
		http.Redirect(w, r, "/devices", http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, views.LoginPage{SignupOpen: s.cfg.Signup == SignupOpen})
}

// handleLogout is POST /logout.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	if err := s.sessions.logout(w, r); err != nil {
		s.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// handleSetup is GET /setup/{token}: the first-run link.
func (s *Server) handleSetup(w http.ResponseWriter, r *http.Request) {
	s.registerPage(w, r, r.PathValue("token"), true)
}

// handleInvite is GET /invite/{token}.
func (s *Server) handleInvite(w http.ResponseWriter, r *http.Request) {
	s.registerPage(w, r, r.PathValue("token"), false)
}

// handleSignup is GET /signup: open sign-up, when the server allows it.
func (s *Server) handleSignup(w http.ResponseWriter, r *http.Request) {
	s.registerPage(w, r, "", false)
}

func (s *Server) registerPage(w http.ResponseWriter, r *http.Request, token string, setup bool) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer") // keep the token out of Referer headers
	inv, err := s.signupAllowed(r.Context(), token)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if setup && !inv.Setup {
		s.fail(w, r, errStatus(http.StatusNotFound, "this is not a setup link; ask an admin for an invite"))
		return
	}
	s.render(w, r, http.StatusOK, views.RegisterPage{Token: token, Setup: inv.Setup, Admin: inv.Admin})
}
