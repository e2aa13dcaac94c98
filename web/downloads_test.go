package web

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"

	"github.com/latch-dev/latch/accounts"
	"github.com/nats-io/nuid"
)

// mustPublish publishes data as a release, as latch release publish does.
func (tw *testWeb) mustPublish(tb testing.TB, version, goos, arch, notes string, data []byte) accounts.Release {
	tb.Helper()
	ctx := accounts.WithActor(context.Background(), accounts.Actor{Name: "admin:test"})
	up := nuid.Next()
	n := 0
	for off := 0; off < len(data); off += accounts.ReleaseChunkSize {
		end := min(off+accounts.ReleaseChunkSize, len(data))
		if _, err := tw.Service.UploadReleaseChunk(ctx, accounts.ReleaseChunk{Upload: up, Seq: n, Data: data[off:end]}); err != nil {
			tb.Fatal(err)
		}
		n++
	}
	sum := sha256.Sum256(data)
	r, err := tw.Service.PublishRelease(ctx, accounts.ReleasePublishRequest{Upload: up, Chunks: n, Version: version, OS: goos, Arch: arch,
		Kind: accounts.ReleaseClient, Notes: notes, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])})
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// /downloads lists what is on offer, to anyone: notes escaped, a QR code
// for an Android build, the release key; each file is served as the
// manifest says, yanked ones are gone, and latest redirects to the newest.
func TestDownloads(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{})
	tw.Web.cfg.ReleaseKey = "NRELEASEKEY"
	anyone := tw.client(t)
	if body := text(t, anyone.do("GET", "/downloads", nil)); !strings.Contains(body, "No release has been published yet") {
		t.Error("an empty downloads page does not say so")
	}
	linux := []byte(strings.Repeat("linux build ", 30000)) // more than one chunk
	tw.mustPublish(t, "1.0.0", "linux", "amd64", "first <b>bold</b> & more", []byte("old linux build"))
	rel := tw.mustPublish(t, "1.1.0", "linux", "amd64", "", linux)
	tw.mustPublish(t, "1.1.0", "android", "arm64", "", []byte("android build"))
	yanked := tw.mustPublish(t, "1.2.0", "linux", "amd64", "broken", []byte("a broken build"))
	ctx := accounts.WithActor(context.Background(), accounts.Actor{Name: "admin:test"})
	if _, err := tw.Service.YankRelease(ctx, accounts.ReleaseYankRequest{Version: "1.2.0"}); err != nil {
		t.Fatal(err)
	}

	resp := anyone.do("GET", "/downloads", nil)
	body := text(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /downloads: %d", resp.StatusCode)
	}
	for _, want := range []string{
		"latch for linux/amd64", "latch for android/arm64", rel.SHA256, `href="/downloads/client/linux/amd64/1.1.0"`,
		"latch_1.1.0_linux_amd64", "first &lt;b&gt;bold&lt;/b&gt; &amp; more", `class="qr"`, "NRELEASEKEY",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the downloads page lacks %q", want)
		}
	}
	if strings.Contains(body, "<b>bold</b>") || strings.Contains(body, yanked.SHA256) || strings.Contains(body, "1.2.0") {
		t.Error("the downloads page shows notes unescaped, or a yanked release")
	}
	if strings.Index(body, "1.1.0") > strings.Index(body, "1.0.0") {
		t.Error("the newest version is not listed first")
	}

	resp = anyone.do("GET", "/downloads/client/linux/amd64/1.1.0", nil)
	got := text(t, resp)
	sum := sha256.Sum256([]byte(got))
	if resp.StatusCode != http.StatusOK || hex.EncodeToString(sum[:]) != rel.SHA256 || resp.ContentLength != rel.Size ||
		!strings.Contains(resp.Header.Get("Content-Disposition"), "latch_1.1.0_linux_amd64") {
		t.Errorf("the download: %d, %d bytes, sha256 %x, disposition %q; want the manifest's %s",
			resp.StatusCode, len(got), sum, resp.Header.Get("Content-Disposition"), rel.SHA256)
	}
	if resp := anyone.do("GET", "/downloads/client/linux/amd64/1.2.0", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a yanked release's file: %d, want 404", resp.StatusCode)
	}
	resp = anyone.do("GET", "/downloads/latest/linux/amd64", nil)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/downloads/client/linux/amd64/1.1.0" {
		t.Errorf("latest: %d to %q, want a redirect to 1.1.0", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp := anyone.do("GET", "/downloads/latest/plan9/mips", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("latest for a platform with no release: %d, want 404", resp.StatusCode)
	}
}
