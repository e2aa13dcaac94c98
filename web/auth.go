package web

import (
	"errors"
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

// session is the request's web session and its person, checked by the
// account service (it exists, is younger than its lifetime, and names a
// person who still has its account and user handle), or errLoginNeeded.
func (s *Server) session(r *http.Request) (string, accounts.WebSession, accounts.Person, error) {
	token := s.sessions.token(r)
	if token == "" {
		return "", accounts.WebSession{}, accounts.Person{}, errLoginNeeded
	}
	ws, p, err := s.cfg.Accounts.Session(r.Context(), token, s.cfg.Now())
	if errors.Is(err, accounts.ErrNotFound) {
		return "", ws, p, errLoginNeeded
	}
	return token, ws, p, err
}

func (s *Server) loggedIn(r *http.Request) (accounts.Person, error) {
	_, ws, p, err := s.session(r)
	if err != nil {
		return p, err
	}
	if p.Status != accounts.StatusActive {
		return p, errStatus(http.StatusForbidden, "your account is "+p.Status+"; ask an admin")
	}
	if err := s.cfg.Accounts.TouchSession(r.Context(), ws, s.cfg.Now(), clientAddr(r), false); errors.Is(err, accounts.ErrNotFound) {
		return p, errLoginNeeded // ended a moment ago
	} else if err != nil {
		s.log.Warn("record a session's use", "person", p.Name, "err", err)
	}
	return p, nil
}

// startSession logs p in from this request: a new session on the server,
// its token in the cookie.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, p accounts.Person) error {
	token, _, err := s.cfg.Accounts.StartSession(r.Context(), accounts.NewWebSession{
		Person: p.Name, Addr: clientAddr(r), UserAgent: r.UserAgent(), Now: s.cfg.Now(),
	})
	if err != nil {
		return err
	}
	return s.sessions.setToken(w, r, token)
}

// endOtherSessions ends every session of the person but this one.
func (s *Server) endOtherSessions(r *http.Request, p accounts.Person) (int, error) {
	return s.cfg.Accounts.EndSessions(accounts.WithActor(r.Context(), actor(r, p)), p.Name, s.sessions.token(r))
}

// handleSessionsEnd is POST /sessions/end: log out everywhere else.
func (s *Server) handleSessionsEnd(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	n, err := s.endOtherSessions(r, p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.sessionsAnswer(w, r, p, n)
}

// handleSessionEnd is POST /sessions/{id}/end: log one session out.
func (s *Server) handleSessionEnd(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	ctx := accounts.WithActor(r.Context(), actor(r, p))
	if err := s.cfg.Accounts.EndSessionID(ctx, p.Name, r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	s.sessionsAnswer(w, r, p, 1)
}

// sessionsAnswer answers a request that ended sessions: the sessions table
// for htmx, the Passkeys page otherwise.
func (s *Server) sessionsAnswer(w http.ResponseWriter, r *http.Request, p accounts.Person, ended int) {
	if !isHTMX(r) {
		http.Redirect(w, r, "/passkeys", http.StatusSeeOther)
		return
	}
	ss, err := s.sessionRows(r, p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, views.SessionsSection(ss, ended))
}

// sessionRows are the person's sessions for the Passkeys page.
func (s *Server) sessionRows(r *http.Request, p accounts.Person) ([]views.Session, error) {
	wss, err := s.cfg.Accounts.Sessions(r.Context(), p.Name, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	cur := accounts.WebSession{}
	if token := s.sessions.token(r); token != "" {
		cur.ID = accounts.SessionID(token)
	}
	rows := make([]views.Session, len(wss))
	for i, ws := range wss {
		rows[i] = views.Session{ID: ws.ID, Created: ws.Created, LastUsed: ws.LastUsed, Addr: ws.Addr,
			UserAgent: ws.UserAgent, Current: ws.ID == cur.ID}
	}
	return rows, nil
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
	// The session ends on the server: a copy of the cookie is worth
	// nothing after this.
	if token := s.sessions.token(r); token != "" {
		if err := s.cfg.Accounts.EndSession(r.Context(), token); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	if err := s.sessions.clear(w, r); err != nil {
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
	if setup && errors.Is(err, accounts.ErrNotFound) {
		err = errStatus(http.StatusNotFound, "this setup link is not valid: it was used, a newer one was made, or an admin can log in already. "+
			"While no admin has a passkey, each start of latch serve makes a new one")
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if setup && !inv.Setup {
		s.fail(w, r, errStatus(http.StatusNotFound, "this is not a setup link; `latch serve` prints one while no admin has a passkey"))
		return
	}
	v := views.RegisterPage{Token: token, Setup: inv.Setup, Admin: inv.Admin, For: inv.For}
	if inv.For != "" {
		p, err := s.cfg.Accounts.Person(r.Context(), inv.For)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		v.Shown = p.DisplayName
		if v.Shown == "" {
			v.Shown = p.Name
		}
	}
	s.render(w, r, http.StatusOK, v)
}
