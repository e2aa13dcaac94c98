package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/semver"
	"github.com/nats-io/nats.go"
)

// ErrUpToDate says there is no newer release than the one running.
var ErrUpToDate = errors.New("no newer release")

// Update is a release newer than the one running, checked against the
// release key the device trusts.
type Update struct {
	Release  accounts.Release
	Manifest accounts.ReleaseManifest
	Running  string
}

// CheckRelease checks an announced or fetched release for this device:
// signed by the release key it learned at enrollment, for its os and arch,
// a client build, not yanked, and newer than running. It returns the
// manifest, or why the release is refused; ErrUpToDate when it is not
// newer.
func (d *Device) CheckRelease(r accounts.Release, running string) (accounts.ReleaseManifest, error) {
	if d.ReleaseKey == "" {
		return accounts.ReleaseManifest{}, errors.New("this device learned no release key when it enrolled, so it trusts no release; enroll it again with `latch client enroll --force`")
	}
	m, err := r.Verify(d.ReleaseKey)
	if err != nil {
		return m, err
	}
	switch {
	case m.Kind != accounts.ReleaseClient:
		return m, fmt.Errorf("release %s is a %s build, not a client", m.Version, m.Kind)
	case m.OS != runtime.GOOS || m.Arch != runtime.GOARCH:
		return m, fmt.Errorf("release %s is for %s/%s, not for this %s/%s", m.Version, m.OS, m.Arch, runtime.GOOS, runtime.GOARCH)
	case r.Yanked != nil:
		return m, fmt.Errorf("release %s was withdrawn", m.Version)
	}
	next, err := semver.Parse(m.Version)
	if err != nil {
		return m, err
	}
	cur, err := semver.Parse(running)
	if err != nil {
		return m, fmt.Errorf("this build's version %q cannot be compared: it is not a release (build one with a version stamped in)", running)
	}
	if semver.Compare(next, cur) <= 0 {
		return m, fmt.Errorf("%w: release %s is not newer than %s, which runs (no rollback)", ErrUpToDate, m.Version, running)
	}
	return m, nil
}

// LatestRelease asks latch, over nc (the device's own connection), for
// the newest client release for this device's platform, and checks it.
func (d *Device) LatestRelease(ctx context.Context, nc *nats.Conn, running string) (Update, error) {
	body, _ := json.Marshal(accounts.ReleasesLatestRequest{OS: runtime.GOOS, Arch: runtime.GOARCH})
	msg, err := nc.RequestWithContext(ctx, accounts.DeviceAPIRequestSubject(d.PublicKey, accounts.DeviceEndpointReleasesLatest), body)
	if err != nil {
		return Update{}, fmt.Errorf("ask latch for the latest release: %w", err)
	}
	if msg.Header.Get("Nats-Service-Error-Code") == "404" {
		return Update{}, fmt.Errorf("%w: latch has no client release for %s/%s", ErrUpToDate, runtime.GOOS, runtime.GOARCH)
	}
	if e := msg.Header.Get("Nats-Service-Error"); e != "" {
		return Update{}, fmt.Errorf("latch: %s", e)
	}
	var r accounts.Release
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return Update{}, fmt.Errorf("latch's answer: %v", err)
	}
	m, err := d.CheckRelease(r, running)
	if err != nil {
		return Update{}, err
	}
	return Update{Release: r, Manifest: m, Running: running}, nil
}

// Install downloads u's file from latch's web (d.URL), checks its size
// and SHA-256 against the signed manifest while it is written beside
// exe, and then puts it in exe's place in one step. Whatever goes wrong,
// exe is left as it was.
func (d *Device) Install(ctx context.Context, u Update, exe string) error {
	base, err := baseURL(d.URL)
	if err != nil {
		return err
	}
	hc, err := httpClientFor(nil, d.CAFile)
	if err != nil {
		return err
	}
	download := *hc
	download.Timeout = 0 // a large file takes as long as it takes; ctx ends it
	m := u.Manifest
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/downloads/"+m.Kind+"/"+m.OS+"/"+m.Arch+"/"+m.Version, nil)
	if err != nil {
		return err
	}
	resp, err := download.Do(req)
	if err != nil {
		return fmt.Errorf("download %s: %w", m.File, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("download %s: the server answered %s", m.File, resp.Status)
	}
	return replaceExecutable(exe, io.LimitReader(resp.Body, m.Size+1), m)
}

// replaceExecutable writes r beside exe, checks it against m, makes it
// durable and executable, and renames it over exe.
func replaceExecutable(exe string, r io.Reader, m accounts.ReleaseManifest) (err error) {
	fi, err := os.Stat(exe)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(exe), "."+filepath.Base(exe)+".new-*")
	if err != nil {
		return fmt.Errorf("write the new build beside %s: %w", exe, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), r)
	if err != nil {
		return fmt.Errorf("download %s: %w", m.File, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != m.Size || got != m.SHA256 {
		return fmt.Errorf("the file downloaded is %d bytes with SHA-256 %s, not the %d bytes with %s the signed manifest says: refused, nothing replaced",
			n, got, m.Size, m.SHA256)
	}
	if err := tmp.Chmod(fi.Mode().Perm() | 0o100); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return swapExecutable(tmp.Name(), exe)
}
