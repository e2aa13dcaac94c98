package web

import (
	"context"
	"errors"
	"github.com/a-h/templ"
	"net/http"
	"slices"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/views"
)

// Audit trail lengths: the admin page's section, and its page of its own.
const (
	auditOnAdmin = 100
	auditOnPage  = 1000
)

// handleAdmin is GET /admin: persons, invites, the server, the audit trail.
func (s *Server) handleAdmin(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	s.adminPage(w, r, p, views.AdminInvites{})
}

// adminPage renders the whole admin page; inv carries a new invite link
// to show once.
func (s *Server) adminPage(w http.ResponseWriter, r *http.Request, p accounts.Person, inv views.AdminInvites) {
	ctx := r.Context()
	persons, err := s.adminPersons(ctx, p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	inv.Invites, err = s.adminInvites(ctx)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, r, http.StatusOK, views.AdminPage{
		Viewer:  viewerOf(p),
		Persons: persons,
		Invites: inv,
		Audit:   s.adminAudit(ctx, auditOnAdmin),
		Status:  s.serverStatus(ctx),
	})
}

// handleAdminAudit is GET /admin/audit: the audit trail, newest first;
// the section alone for htmx (the admin page's Refresh), a page otherwise.
func (s *Server) handleAdminAudit(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	w.Header().Set("Cache-Control", "no-store")
	if isHTMX(r) {
		s.render(w, r, http.StatusOK, s.adminAudit(r.Context(), auditOnAdmin))
		return
	}
	s.render(w, r, http.StatusOK, views.AuditPage{Viewer: viewerOf(p), Audit: s.adminAudit(r.Context(), auditOnPage)})
}

// handleAdminPerson is POST /admin/persons/{name}/{action} for the actions
// disable, enable and delete. An admin cannot disable or delete
// themselves, so there is always an admin left who can log in.
func (s *Server) handleAdminPerson(action string) personHandler {
	return func(w http.ResponseWriter, r *http.Request, p accounts.Person) {
		name := r.PathValue("name")
		if name == p.Name && action != "enable" {
			s.fail(w, r, errStatus(http.StatusBadRequest, "you cannot "+action+" yourself; ask another admin"))
			return
		}
		ctx := accounts.WithActor(r.Context(), actor(r, p))
		var err error
		switch action {
		case "disable":
			_, err = s.cfg.Accounts.DisablePerson(ctx, name)
		case "enable":
			_, err = s.cfg.Accounts.EnablePerson(ctx, name)
		case "delete":
			_, err = s.cfg.Accounts.DeletePerson(ctx, name)
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.changed(w, r, "/admin", func() (templ.Component, error) {
			return s.adminPersons(r.Context(), p)
		})
	}
}

// handleAdminInviteCreate is POST /admin/invites: a one-time sign-up link,
// shown in this answer only (latch keeps only its hash).
func (s *Server) handleAdminInviteCreate(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	f, err := readForm(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	admin := f["admin"] == "true" || f["admin"] == "on"
	token, inv, err := s.cfg.Accounts.CreateInvite(accounts.WithActor(r.Context(), actor(r, p)), admin)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.showNewInvite(w, r, p, token, inv)
}

// showNewInvite answers with the invites section and a new invite's link,
// shown this once: the admin page, or the section alone for htmx.
func (s *Server) showNewInvite(w http.ResponseWriter, r *http.Request, p accounts.Person, token string, inv accounts.Invite) {
	section := views.AdminInvites{NewLink: s.url(views.InvitePath(token)), NewAdmin: inv.Admin, NewFor: inv.For, NewExpires: inv.Expires}
	// The link is a secret: no cache keeps the answer.
	w.Header().Set("Cache-Control", "no-store")
	if !isHTMX(r) {
		s.adminPage(w, r, p, section)
		return
	}
	var err error
	if section.Invites, err = s.adminInvites(r.Context()); err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, section)
}

// handleAdminPersonInvite is POST /admin/persons/{name}/invite: a
// one-time link that gives a person without a passkey one. (A recovery
// link, for a person who has one, is made on the command line.)
func (s *Server) handleAdminPersonInvite(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	token, inv, err := s.cfg.Accounts.CreateInviteFor(accounts.WithActor(r.Context(), actor(r, p)), r.PathValue("name"), false)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.showNewInvite(w, r, p, token, inv)
}

// handleAdminInviteRevoke is POST /admin/invites/{id}/revoke.
func (s *Server) handleAdminInviteRevoke(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	if err := s.cfg.Accounts.RevokeInvite(accounts.WithActor(r.Context(), actor(r, p)), r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	if !isHTMX(r) {
		http.Redirect(w, r, "/admin", http.StatusSeeOther)
		return
	}
	invs, err := s.adminInvites(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, views.AdminInvites{Invites: invs})
}

// adminPersons lists the persons with their active devices: neither
// revoked nor expired.
func (s *Server) adminPersons(ctx context.Context, viewer accounts.Person) (views.AdminPersons, error) {
	ps, err := s.cfg.Accounts.Persons(ctx)
	if err != nil {
		return views.AdminPersons{}, err
	}
	now := s.cfg.Now()
	out := views.AdminPersons{Persons: make([]views.AdminPerson, 0, len(ps))}
	for _, p := range ps {
		devs, err := s.cfg.Accounts.Devices(ctx, p.Name)
		if errors.Is(err, accounts.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return views.AdminPersons{}, err
		}
		active := 0
		for _, d := range devs {
			if !d.Revoked() && (d.Expires == nil || now.Before(*d.Expires)) {
				active++
			}
		}
		pks, err := s.cfg.Accounts.Passkeys(ctx, p.Name)
		if errors.Is(err, accounts.ErrNotFound) {
			continue
		}
		if err != nil {
			return views.AdminPersons{}, err
		}
		out.Persons = append(out.Persons, views.AdminPerson{
			Name: p.Name, DisplayName: p.DisplayName, Role: p.Role, Status: p.Status,
			Created: p.Created, Devices: active, Self: p.Name == viewer.Name, Passkeys: len(pks),
		})
	}
	return out, nil
}

func (s *Server) adminInvites(ctx context.Context) ([]views.AdminInvite, error) {
	invs, err := s.cfg.Accounts.Invites(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]views.AdminInvite, 0, len(invs))
	for _, inv := range invs {
		out = append(out, views.AdminInvite{
			ID: inv.ID, Admin: inv.Admin, Setup: inv.Setup, For: inv.For, Recover: inv.Recover,
			Created: inv.Created, Expires: inv.Expires, CreatedBy: inv.CreatedBy,
		})
	}
	return out, nil
}

// adminAudit is the last n audit events, newest first. A trail that cannot
// be read is shown as such rather than failing the whole page.
func (s *Server) adminAudit(ctx context.Context, n int) views.AdminAudit {
	evs, err := s.cfg.Accounts.Audit(ctx, n)
	if err != nil {
		s.log.Error("read audit trail", "err", err)
		return views.AdminAudit{Error: "the audit trail cannot be read now; see the server's log"}
	}
	out := views.AdminAudit{Events: make([]views.AuditEvent, 0, len(evs))}
	for _, e := range slices.Backward(evs) {
		out.Events = append(out.Events, views.AuditEvent{
			Time: e.Time, Actor: e.Actor, From: e.From, Action: string(e.Action),
			AccountName: e.AccountName, DeviceName: e.DeviceName, Device: e.Device, Detail: e.Detail,
		})
	}
	return out
}

// serverStatus is what the admin page shows of the NATS server.
func (s *Server) serverStatus(ctx context.Context) views.ServerStatus {
	if s.cfg.Status == nil {
		return views.ServerStatus{Unavailable: "not available"}
	}
	st, err := s.cfg.Status.Status(ctx)
	if err != nil {
		s.log.Error("server status", "err", err)
		return views.ServerStatus{Unavailable: "not available: " + err.Error()}
	}
	out := views.ServerStatus{
		Name: st.Name, Version: st.Version, Uptime: st.Uptime, Connections: st.Connections,
		JetStream: st.JetStream, StorageUsed: st.StorageUsed, MemoryUsed: st.MemoryUsed,
		Accounts: st.Accounts, ClientURL: st.ClientURL, ResolverError: st.ResolverError,
	}
	leader := ""
	for _, n := range st.Nodes {
		if n.MetaLeader != "" {
			leader = n.MetaLeader
		}
	}
	for _, n := range st.Nodes {
		out.Nodes = append(out.Nodes, views.ClusterNode{Name: n.Name, Region: n.Region, JetStream: n.JetStream,
			Up: n.Up, Current: n.Current, Leader: n.Name == leader, Behind: len(n.Lagging)})
	}
	for _, d := range st.Drift {
		out.Drift = append(out.Drift, views.Drift{Account: d.Account, AccountName: d.AccountName, Node: d.Node,
			FoundIssuer: d.FoundIssuer, Found: d.Found, Recorded: d.Recorded})
	}
	return out
}

// personService is what the account service does for persons: sign-up,
// login, the admin page.
type personService interface {
	PersonCount(ctx context.Context) (int, error)
	CreatePerson(ctx context.Context, np accounts.NewPerson) (accounts.Person, error)
	Person(ctx context.Context, name string) (accounts.Person, error)
	Persons(ctx context.Context) ([]accounts.Person, error)
	DisablePerson(ctx context.Context, name string) (accounts.Person, error)
	EnablePerson(ctx context.Context, name string) (accounts.Person, error)
	DeletePerson(ctx context.Context, name string) (accounts.Person, error)
}

// inviteService is what the account service does for invites.
type inviteService interface {
	CreateInvite(ctx context.Context, admin bool) (string, accounts.Invite, error)
	CreateInviteFor(ctx context.Context, person string, recover bool) (string, accounts.Invite, error)
	Invite(ctx context.Context, token string) (accounts.Invite, error)
	ConsumeInvite(ctx context.Context, token string) (accounts.Invite, error)
	Invites(ctx context.Context) ([]accounts.Invite, error)
	RevokeInvite(ctx context.Context, id string) error
}

// auditService is what the account service does for the audit trail.
type auditService interface {
	Audit(ctx context.Context, n int) ([]accounts.AuditEvent, error)
}
