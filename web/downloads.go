package web

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/qr"
	"github.com/latch-dev/latch/views"
)

// releaseService is what the downloads need of the account service.
type releaseService interface {
	Releases(ctx context.Context) ([]accounts.Release, error)
	LatestRelease(ctx context.Context, kind, goos, arch string) (accounts.Release, error)
	OpenRelease(ctx context.Context, kind, goos, arch, version string) (accounts.Release, io.ReadCloser, error)
}

// downloadPath is where a release's file is served.
func downloadPath(r accounts.Release) string {
	return "/downloads/" + r.Kind + "/" + r.OS + "/" + r.Arch + "/" + r.Version
}

// handleDownloads is GET /downloads, public: every release on offer.
func (s *Server) handleDownloads(w http.ResponseWriter, r *http.Request) {
	all, err := s.cfg.Accounts.Releases(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	page := views.DownloadsPage{ReleaseKey: s.cfg.ReleaseKey, Viewer: s.viewer(r)}
	groups := map[string]int{}
	for _, rel := range all {
		if rel.Yanked != nil {
			continue
		}
		id := rel.Kind + "/" + rel.OS + "/" + rel.Arch
		i, ok := groups[id]
		if !ok {
			i = len(page.Groups)
			groups[id] = i
			page.Groups = append(page.Groups, views.DownloadGroup{Kind: rel.Kind, OS: rel.OS, Arch: rel.Arch})
		}
		d := views.Download{Version: rel.Version, File: rel.File, SHA256: rel.SHA256, Notes: rel.Notes,
			Size: rel.Size, Published: rel.Published, Link: downloadPath(rel)}
		if rel.OS == "android" {
			link := s.url(d.Link)
			d.Phone = views.QRCode{Link: link}
			if d.Phone.Size, d.Phone.Path, err = qr.Path(link); err != nil {
				s.log.Warn("draw a download's QR code", "err", err)
			}
		}
		page.Groups[i].Downloads = append(page.Groups[i].Downloads, d)
	}
	s.render(w, r, http.StatusOK, page)
}

// handleDownload is GET /downloads/{kind}/{os}/{arch}/{version}: the file,
// streamed from the object store, with its SHA-256 in the headers.
func (s *Server) handleDownload(w http.ResponseWriter, r *http.Request) {
	rel, f, err := s.cfg.Accounts.OpenRelease(r.Context(), r.PathValue("kind"), r.PathValue("os"), r.PathValue("arch"), r.PathValue("version"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(rel.Size, 10))
	h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", rel.File))
	h.Set("X-Content-Type-Options", "nosniff")
	if sum, err := hex.DecodeString(rel.SHA256); err == nil {
		h.Set("Repr-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(sum)+":")
	}
	h.Set("Cache-Control", "public, max-age=31536000, immutable") // a release never changes
	if r.Method == http.MethodHead {
		return
	}
	if _, err := io.Copy(w, f); err != nil && !isCanceled(r.Context()) {
		s.log.Warn("a download ended early", "file", rel.File, "err", err)
	}
}

// handleDownloadLatest is GET /downloads/latest/{os}/{arch}: a redirect to
// the newest client build for the platform (?kind=server for the server).
func (s *Server) handleDownloadLatest(w http.ResponseWriter, r *http.Request) {
	kind := r.URL.Query().Get("kind")
	if kind == "" {
		kind = accounts.ReleaseClient
	}
	rel, err := s.cfg.Accounts.LatestRelease(r.Context(), kind, r.PathValue("os"), r.PathValue("arch"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	http.Redirect(w, r, downloadPath(rel), http.StatusFound)
}
