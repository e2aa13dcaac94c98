package web

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/views"
)

// handleDevices is GET /devices: every device of the person logged in,
// live (see handleDeviceEvents), and the form that downloads creds.
func (s *Server) handleDevices(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	page, err := s.devicesPage(r.Context(), p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	s.page(w, r, page, page.Section())
}

func (s *Server) devicesPage(ctx context.Context, p accounts.Person) (views.DevicesPage, error) {
	devs, err := s.cfg.Accounts.Devices(ctx, p.Name)
	if err != nil {
		return views.DevicesPage{}, err
	}
	page := views.DevicesPage{Viewer: viewerOf(p), DownloadTTL: s.cfg.DownloadTTL, TLSFirst: s.cfg.TLSFirst}
	if s.cfg.Servers != nil {
		if urls := s.cfg.Servers(); len(urls) > 0 {
			page.NATSURL = urls[0]
		}
	}
	for _, d := range devs {
		page.Devices = append(page.Devices, s.deviceView(d))
	}
	return page, nil
}

// deviceView is a device as its row shows it: online from presence, and
// last seen from presence or, for a device not seen since this process
// started, from what the account service recorded.
func (s *Server) deviceView(d accounts.Device) views.Device {
	v := views.Device{
		Name: d.Name, PublicKey: d.PublicKey, Enrolled: d.Enrolled, Platform: d.Platform,
		Created: d.Created, Expires: d.Expires, RevokedAt: d.RevokedAt, LastSeen: d.LastSeen,
	}
	v.Expired = d.Expires != nil && !s.cfg.Now().Before(*d.Expires)
	if s.cfg.Presence != nil && !d.Revoked() {
		v.Online = s.cfg.Presence.Online(d.Account, d.PublicKey)
		v.Conns = s.cfg.Presence.Conns(d.Account, d.PublicKey)
		if t, ok := s.cfg.Presence.LastSeen(d.Account, d.PublicKey); ok && (v.LastSeen == nil || t.After(*v.LastSeen)) {
			v.LastSeen = &t
		}
	}
	return v
}

// handleDeviceRevoke is POST /devices/{pub}/revoke: the device's key is
// revoked and its connections close at once. No fresh passkey check is
// asked for: a lost device must be quick to cut off. htmx gets the row
// back, revoked; a form post goes back to the devices page.
func (s *Server) handleDeviceRevoke(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	ctx := accounts.WithActor(r.Context(), actor(r, p))
	// The account is the person's own: nobody revokes another's device here.
	d, err := s.cfg.Accounts.RevokeDevice(ctx, p.Name, r.PathValue("pub"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.changed(w, r, "/devices", fragment(views.DeviceRow(s.deviceView(d))))
}

// handleDeviceDisconnect is POST /devices/{pub}/disconnect: the device's
// connections close now, without revoking it (it may connect again). htmx
// gets the row back; a form post goes back to the devices page.
func (s *Server) handleDeviceDisconnect(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	ctx := accounts.WithActor(r.Context(), actor(r, p))
	d, _, err := s.cfg.Accounts.DisconnectDevice(ctx, p.Name, r.PathValue("pub"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.changed(w, r, "/devices", fragment(views.DeviceRow(s.deviceView(d))))
}

// handleDeviceDownload is POST /devices/download: a new device whose key
// the server makes, for a machine without the latch client. The creds go
// out in this response as a file and are kept nowhere; the issuance is on
// the audit trail, and the creds expire after Config.DownloadTTL.
func (s *Server) handleDeviceDownload(w http.ResponseWriter, r *http.Request, p accounts.Person) {
	// The file holds a seed: like an approval, it needs a fresh passkey check.
	f, err := s.freshForm(r, "downloading creds needs a passkey check from the last minute. Go back, press Download creds and use your passkey.")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	name := strings.TrimSpace(f["name"])
	ctx := accounts.WithActor(r.Context(), actor(r, p))
	d, creds, err := s.cfg.Accounts.IssueDevice(ctx, accounts.NewDevice{
		Person: p.Name, Name: name, Enrolled: accounts.EnrolledDownload, TTL: s.cfg.DownloadTTL,
	})
	if err != nil {
		s.downloadFailed(w, r, p, name, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", attachment(d.Name+".creds"))
	h.Set("Content-Length", strconv.Itoa(len(creds)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(creds); err != nil {
		s.log.Warn("creds download cut off; revoke the device and download again", "person", p.Name, "device", d.PublicKey, "err", err)
	}
	clear(creds) // the seed stays in memory no longer than needed
}

// downloadFailed shows the devices page again with what was wrong with the
// name, for a mistake the person can fix; other errors go the usual way.
func (s *Server) downloadFailed(w http.ResponseWriter, r *http.Request, p accounts.Person, name string, err error) {
	if !errors.Is(err, accounts.ErrInvalid) && !errors.Is(err, accounts.ErrExists) {
		s.fail(w, r, err)
		return
	}
	if isHTMX(r) || wantsJSON(r) {
		s.fail(w, r, err)
		return
	}
	page, perr := s.devicesPage(r.Context(), p)
	if perr != nil {
		s.fail(w, r, perr)
		return
	}
	page.DownloadName, page.DownloadError = name, err.Error()
	status, _ := statusOf(err)
	s.render(w, r, status, page)
}

// attachment is a Content-Disposition header that saves a file under a
// name: a plain ASCII name for every browser, and the exact name in
// RFC 5987 form when it has other characters.
func attachment(name string) string {
	plain := []byte(name)
	exact := true
	for i, c := range plain {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._-+ ()", c) >= 0
		if !ok {
			plain[i] = '_'
			exact = false
		}
	}
	v := `attachment; filename="` + string(plain) + `"`
	if !exact {
		v += "; filename*=UTF-8''" + rfc5987(name)
	}
	return v
}

// rfc5987 percent-encodes every byte but RFC 5987's attr-chars.
func rfc5987(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// deviceService is what the account service does for devices and the
// changes to them. person is a person's name, account an account's
// public key.
type deviceService interface {
	Devices(ctx context.Context, person string) ([]accounts.Device, error)
	// Changes follows one account's changes, wherever they are made.
	Changes(ctx context.Context, account string) (<-chan accounts.AuditEvent, error)
	Device(ctx context.Context, person, ref string) (accounts.Device, error)
	IssueDevice(ctx context.Context, nd accounts.NewDevice) (accounts.Device, []byte, error)
	RevokeDevice(ctx context.Context, person, ref string) (accounts.Device, error)
	DisconnectDevice(ctx context.Context, person, ref string) (accounts.Device, int, error)
}
