package web

import (
	"net/http"
	"strings"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/views"
)

// handlePasskeys is GET /passkeys: the person's passkeys, and a button
// that adds one (the ceremony is in passkeys.go).
func (s *Server) handlePasskeys(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	s.passkeysAnswer(w, r, p, false)
}

// handlePasskeyRename is POST /passkeys/{id}/rename.
func (s *Server) handlePasskeyRename(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	f, err := readForm(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx := accounts.WithActor(r.Context(), actor(r, p))
	if _, err := s.cfg.Accounts.RenamePasskey(ctx, p.Name, r.PathValue("id"), strings.TrimSpace(f["name"])); err != nil {
		s.fail(w, r, err)
		return
	}
	s.passkeysAnswer(w, r, p, true)
}

// handlePasskeyRemove is POST /passkeys/{id}/remove. The account service
// refuses to remove the last passkey, whatever the page showed.
func (s *Server) handlePasskeyRemove(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	ctx := accounts.WithActor(r.Context(), actor(r, p))
	if err := s.cfg.Accounts.RemovePasskey(ctx, p.Name, r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	// A passkey is removed because it is lost or not trusted any more:
	// sessions it may have opened end with it.
	if _, err := s.endOtherSessions(r, p); err != nil {
		s.fail(w, r, err)
		return
	}
	s.passkeysAnswer(w, r, p, true)
}

// passkeysAnswer answers with the passkeys: the table for htmx, the page
// for a GET, and back to the page after a form post.
func (s *Server) passkeysAnswer(w http.ResponseWriter, r *http.Request, p accounts.Person, posted bool) {
	if posted && !isHTMX(r) {
		http.Redirect(w, r, "/passkeys", http.StatusSeeOther)
		return
	}
	page, err := s.passkeysPage(r, p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.page(w, r, page, page.Section())
}

func (s *Server) passkeysPage(r *http.Request, p accounts.Person) (views.PasskeysPage, error) {
	pks, err := s.cfg.Accounts.Passkeys(r.Context(), p.Name)
	if err != nil {
		return views.PasskeysPage{}, err
	}
	page := views.PasskeysPage{Viewer: viewerOf(p)}
	for _, pk := range pks {
		page.Passkeys = append(page.Passkeys, views.Passkey{
			ID: pk.ID, Name: pk.Name, Created: pk.Created, LastUsed: pk.LastUsed,
			Synced: pk.BackupEligible, BackedUp: pk.BackupState, CloneWarning: pk.CloneWarning,
		})
	}
	if page.Sessions, err = s.sessionRows(r, p); err != nil {
		return views.PasskeysPage{}, err
	}
	return page, nil
}
