package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/client"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/latch-dev/latch/operator"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// releaseListener is a device's subscription to release announcements,
// with its own creds, as a client subscribes.
type releaseListener struct {
	nc  *nats.Conn
	got chan releaseHeard
}

type releaseHeard struct {
	a  accounts.ReleaseAnnouncement
	at time.Time
}

func mustListenReleases(t *testing.T, url, creds string) *releaseListener {
	t.Helper()
	nc, err := connectCreds(url, creds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	l := &releaseListener{nc: nc, got: make(chan releaseHeard, 16)}
	_, err = nc.Subscribe(accounts.ReleaseSubject("linux", "amd64"), func(m *nats.Msg) {
		var a accounts.ReleaseAnnouncement
		if err := json.Unmarshal(m.Data, &a); err != nil {
			t.Errorf("announcement %q: %v", m.Data, err)
			return
		}
		l.got <- releaseHeard{a, time.Now()}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return l
}

func (l *releaseListener) next(t *testing.T) releaseHeard {
	t.Helper()
	select {
	case h := <-l.got:
		return h
	case <-time.After(10 * time.Second):
		t.Fatal("no release announcement within 10 s")
		return releaseHeard{}
	}
}

// mustBuildFile writes n random bytes, and returns the file and its SHA-256.
func mustBuildFile(t *testing.T, n int) (string, string) {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	f := filepath.Join(t.TempDir(), "latch")
	if err := os.WriteFile(f, b, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return f, hex.EncodeToString(sum[:])
}

// latch release publish: the file lands in NATS, its manifest is signed
// with the deployment's release key, and every device of the platform
// hears of it at once with its own creds, without asking: persons made
// before any release and after alike. A device that was away asks for the
// latest. ls lists, yank withdraws and tells devices; a version is
// published once.
func TestReleasePublish(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "")
	releaseKey := mustOperatorTree(t, s.data).ReleaseKey
	aliceCreds := mustIssueDevice(t, s, "alice", "laptop")
	alice := mustListenReleases(t, s.nats, aliceCreds)
	before := alice.nc.Stats().OutMsgs

	file, sum := mustBuildFile(t, 3*accounts.ReleaseChunkSize+1234)
	began := time.Now()
	mustLatch(t, s.env, "release", "publish", file, "--version", "1.4.0", "--os", "linux", "--arch", "amd64", "--notes", "faster <sync>")
	returned := time.Now()
	h := alice.next(t)
	t.Logf("announced %s after the publish began, %s before or after it returned (a %d-byte file in %d chunks)",
		h.at.Sub(began).Round(time.Millisecond), h.at.Sub(returned).Round(time.Millisecond), 3*accounts.ReleaseChunkSize+1234, 4)
	if h.at.After(returned.Add(time.Second)) {
		t.Errorf("the announcement came %s after the publish returned, want well under a second", h.at.Sub(returned))
	}
	if got := alice.nc.Stats().OutMsgs; got != before {
		t.Errorf("the device sent %d messages while it waited: it should only listen", got-before)
	}
	m, err := h.a.Release.Verify(releaseKey)
	if err != nil {
		t.Fatalf("the announced release does not verify with the release key: %v", err)
	}
	if m.Version != "1.4.0" || m.OS != "linux" || m.Arch != "amd64" || m.Kind != "client" || m.SHA256 != sum ||
		m.Size != 3*accounts.ReleaseChunkSize+1234 || m.Notes != "faster <sync>" || m.File != "latch_1.4.0_linux_amd64" || h.a.Yanked {
		t.Errorf("the announced manifest: %+v", m)
	}

	// Trust nothing else: a changed manifest, another key.
	forged := h.a.Release.SignedManifest
	forged.Manifest = json.RawMessage(strings.Replace(string(forged.Manifest), sum, strings.Repeat("0", 64), 1))
	if _, err := forged.Verify(releaseKey); err == nil {
		t.Error("a changed manifest verifies")
	}
	other, _ := nkeys.CreatePair(nkeys.PrefixByteServer)
	otherPub, _ := other.PublicKey()
	if _, err := h.a.Release.Verify(otherPub); err == nil {
		t.Error("a manifest verifies with a key that did not sign it")
	}

	// A server build is listed, and no device's business.
	serverFile, _ := mustBuildFile(t, 500)
	mustLatch(t, s.env, "release", "publish", serverFile, "--version", "9.9.9", "--os", "linux", "--arch", "amd64", "--kind", "server")

	// A person made after the first release hears of the next.
	bobCreds := mustIssueDevice(t, s, "bob", "phone")
	bob := mustListenReleases(t, s.nats, bobCreds)
	file2, _ := mustBuildFile(t, 1000)
	mustLatch(t, s.env, "release", "publish", file2, "--version", "1.4.1", "--os", "linux", "--arch", "amd64")
	for who, l := range map[string]*releaseListener{"alice": alice, "bob": bob} {
		if h := l.next(t); h.a.Release.Version != "1.4.1" {
			t.Errorf("%s heard of %s, want 1.4.1", who, h.a.Release.Version)
		}
	}

	// A device that was away asks for the latest, with its own creds.
	latest := func(creds string) accounts.Release {
		t.Helper()
		nc, err := connectCreds(s.nats, creds)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		dev := credsUser(t, creds)
		body, _ := json.Marshal(accounts.ReleasesLatestRequest{OS: "linux", Arch: "amd64"})
		msg, err := nc.Request(accounts.DeviceAPIRequestSubject(dev, accounts.DeviceEndpointReleasesLatest), body, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var r accounts.Release
		if err := json.Unmarshal(msg.Data, &r); err != nil {
			t.Fatalf("releases.latest answered %q: %v", msg.Data, err)
		}
		return r
	}
	if r := latest(bobCreds); r.Version != "1.4.1" {
		t.Errorf("latest: %s, want 1.4.1", r.Version)
	}

	// Published once.
	if r := latch(t, s.env, "release", "publish", file2, "--version", "1.4.1", "--os", "linux", "--arch", "amd64"); r.err == nil ||
		!strings.Contains(r.err.Error(), "published already") {
		t.Errorf("publishing 1.4.1 again: %v, want it refused", r.err)
	}

	// Yanked: devices told, no longer the latest, listed as yanked.
	mustLatch(t, s.env, "release", "yank", "1.4.1")
	if h := alice.next(t); !h.a.Yanked || h.a.Release.Version != "1.4.1" {
		t.Errorf("the yank's announcement: %+v", h.a)
	}
	if r := latest(aliceCreds); r.Version != "1.4.0" {
		t.Errorf("latest after the yank: %s, want 1.4.0", r.Version)
	}
	var rs []accounts.Release
	decodeJSON(t, mustLatch(t, s.env, "release", "ls", "--json"), &rs)
	if len(rs) != 3 || rs[0].Version != "1.4.1" || rs[0].Yanked == nil || rs[1].Version != "1.4.0" || rs[1].Yanked != nil ||
		!strings.HasPrefix(rs[1].Publisher, "admin:") || rs[2].Kind != "server" {
		t.Errorf("release ls: %+v", rs)
	}
	var events []accounts.AuditEvent
	decodeJSON(t, mustLatch(t, s.env, "audit", "--json"), &events)
	for _, action := range []accounts.Action{accounts.ActionReleasePublish, accounts.ActionReleaseYank} {
		found := false
		for _, e := range events {
			found = found || e.Action == action && strings.HasPrefix(e.Actor, "admin:")
		}
		if !found {
			t.Errorf("the audit trail has no %s by an admin", action)
		}
	}
}

// mustOperatorTree loads a data folder's operator tree.
func mustOperatorTree(t *testing.T, data string) *operator.Tree {
	t.Helper()
	op, err := operator.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	return op
}

// mustBuildLatch builds this package's latch with version stamped in.
func mustBuildLatch(t *testing.T, dir, version string) string {
	t.Helper()
	out := filepath.Join(dir, "latch-"+version)
	cmd := exec.Command("go", "build", "-o", out, "-ldflags", "-X main.version="+version+" -X main.commit=test", ".")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", version, err, b)
	}
	return out
}

// runBinary runs a latch binary with only environ, and returns what it
// printed.
func runBinary(t *testing.T, bin string, environ []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = environ
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// latch client update, as a device runs it: an older latch binary asks
// with its device's creds, checks the release against the key it learned
// at enrollment, downloads it, and replaces itself; run again, it is the
// new version and says it is up to date.
func TestClientUpdate(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "")
	s.mustAdmin(t, "account", "add", "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	home := filepath.Join(t.TempDir(), "home")
	d := s.mustEnroll(t, ctx, "alice", client.EnrollOptions{URL: s.http, Name: "laptop", Home: home})
	if d.ReleaseKey != mustOperatorTree(t, s.data).ReleaseKey {
		t.Fatalf("the device learned release key %q at enrollment, want the deployment's", d.ReleaseKey)
	}
	build := t.TempDir()
	newer := mustBuildLatch(t, build, "1.1.0")
	older := mustBuildLatch(t, build, "1.0.0")
	bin := filepath.Join(t.TempDir(), "latch")
	b, err := os.ReadFile(older)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	environ := []string{client.HomeEnv + "=" + home, "HOME=" + t.TempDir()}

	if out, err := runBinary(t, bin, environ, "client", "update", "--check"); err != nil || !strings.Contains(out, "up to date") {
		t.Errorf("update --check with no release: %v\n%s", err, out)
	}
	mustLatch(t, s.env, "release", "publish", newer, "--version", "1.1.0", "--os", runtime.GOOS, "--arch", runtime.GOARCH, "--notes", "the newer one")
	if out, err := runBinary(t, bin, environ, "client", "update", "--check"); err != nil || !strings.Contains(out, "latch 1.1.0 is available (this is 1.0.0)") {
		t.Errorf("update --check: %v\n%s", err, out)
	}
	if out, err := runBinary(t, bin, environ, "client", "update"); err == nil || !strings.Contains(out, "--yes") {
		t.Errorf("update without --yes and no terminal: %v\n%s", err, out)
	}
	if out, err := runBinary(t, bin, environ, "--version"); err != nil || !strings.Contains(out, "latch version 1.0.0") {
		t.Fatalf("before the update: %v\n%s", err, out)
	}
	if out, err := runBinary(t, bin, environ, "client", "update", "--yes"); err != nil || !strings.Contains(out, "from 1.0.0 to 1.1.0") {
		t.Fatalf("update --yes: %v\n%s", err, out)
	}
	if out, err := runBinary(t, bin, environ, "--version"); err != nil || !strings.Contains(out, "latch version 1.1.0") {
		t.Errorf("after the update: %v\n%s", err, out)
	}
	if out, err := runBinary(t, bin, environ, "client", "update", "--yes"); err != nil || !strings.Contains(out, "up to date") {
		t.Errorf("update again: %v\n%s", err, out)
	}
	// Withdrawn, it is offered no more: the older one does not update.
	mustLatch(t, s.env, "release", "yank", "1.1.0")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := runBinary(t, bin, environ, "client", "update", "--yes"); err != nil || !strings.Contains(out, "up to date") {
		t.Errorf("update after the yank: %v\n%s", err, out)
	}
	if out, _ := runBinary(t, bin, environ, "--version"); !strings.Contains(out, "latch version 1.0.0") {
		t.Errorf("a yanked release was installed:\n%s", out)
	}
}

// latch client watch --updates --yes, left running on a device: it hears
// of a new release at once, updates its binary, starts it again in the
// same process, and goes on printing the records' changes.
func TestClientWatchUpdates(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "")
	s.mustAdmin(t, "account", "add", "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	home := filepath.Join(t.TempDir(), "home")
	s.mustEnroll(t, ctx, "alice", client.EnrollOptions{URL: s.http, Name: "laptop", Home: home})
	build := t.TempDir()
	newer := mustBuildLatch(t, build, "1.1.0")
	bin := filepath.Join(t.TempDir(), "latch")
	b, err := os.ReadFile(mustBuildLatch(t, build, "1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	environ := []string{client.HomeEnv + "=" + home, "HOME=" + t.TempDir()}

	watch := exec.CommandContext(ctx, bin, "client", "watch", "--updates", "--yes")
	watch.Env = environ
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	watch.Stdout, watch.Stderr = stdout, stderr
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { watch.Process.Kill(); watch.Wait() })
	env := map[string]string{client.HomeEnv: home}
	mustClient(t, env, "put", "before", "1")
	waitFor := func(what string, buf *syncBuffer, want string) {
		t.Helper()
		latchtest.Eventually(t, what, func() error {
			if !strings.Contains(buf.String(), want) {
				return fmt.Errorf("no %q yet; stdout:\n%s\nstderr:\n%s", want, stdout, stderr)
			}
			return nil
		})
	}
	waitFor("the watch prints a change", stdout, "put before")
	pid := watch.Process.Pid

	mustLatch(t, s.env, "release", "publish", newer, "--version", "1.1.0", "--os", runtime.GOOS, "--arch", runtime.GOARCH)
	waitFor("the watch updates itself", stderr, "from 1.0.0 to 1.1.0; starting it again")
	if out, err := runBinary(t, bin, environ, "--version"); err != nil || !strings.Contains(out, "latch version 1.1.0") {
		t.Errorf("the binary after the watch's update: %v\n%s", err, out)
	}
	// The same process, running the new program, resumes the watch.
	mustClient(t, env, "put", "after", "2")
	waitFor("the watch goes on after the update", stdout, "put after")
	if watch.Process.Pid != pid || watch.ProcessState != nil {
		t.Error("the watch is not the same process after its update")
	}
	if strings.Count(stdout.String(), "put before") != 1 {
		t.Errorf("the watch printed a change twice after starting again:\n%s", stdout)
	}
}

// A 100 MB build is published and downloaded in chunks: the process that
// runs both the server and the CLI never holds anything like the file in
// memory. The peak of the live heap, sampled every 50 ms after a GC, is
// reported beside the file's size; what it grows by is nats-server's
// buffers of the message blocks being written and read (two streams'
// worth, whatever the file's size), not the file. Under the race
// detector, which makes moving the bytes about ten times slower, the file
// is 25 MiB.
func TestRelease100MB(t *testing.T) {
	// Not parallel: the live heap is the whole test process's, and the
	// package's other tests running beside this one (each with its own
	// server) would be counted as this file's.
	size := 100 << 20
	if raceEnabled {
		size = 25 << 20
	}
	s := mustServe(t, "")
	file := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	chunk := make([]byte, 1<<20)
	for range size / len(chunk) {
		rand.Read(chunk)
		f.Write(chunk)
		h.Write(chunk)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	chunk = nil

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	peak.Store(base)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			// What is live, not garbage not yet collected.
			runtime.GC()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > peak.Load() {
				peak.Store(m.HeapAlloc)
				// LATCH_HEAP_PROFILE=FILE keeps where the peak's heap is.
				if f := os.Getenv("LATCH_HEAP_PROFILE"); f != "" {
					pf, _ := os.Create(f)
					pprof.WriteHeapProfile(pf)
					pf.Close()
				}
			}
		}
	}()
	began, cpu := time.Now(), benchCPU()
	mustLatch(t, s.env, "release", "publish", file, "--version", "2.0.0", "--os", "linux", "--arch", "amd64")
	published, publishCPU := time.Since(began), benchCPU()-cpu
	peakPublish := peak.Load()
	began, cpu = time.Now(), benchCPU()
	resp, err := http.Get(s.http + "/downloads/client/linux/amd64/2.0.0")
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	n, err := io.Copy(got, resp.Body)
	resp.Body.Close()
	downloaded, downloadCPU := time.Since(began), benchCPU()-cpu
	close(stop)
	<-sampled
	if err != nil || n != int64(size) || hex.EncodeToString(got.Sum(nil)) != sum {
		t.Fatalf("downloaded %d bytes (%v), sha256 %x; want %d bytes with %s", n, err, got.Sum(nil), size, sum)
	}
	grew := int64(peak.Load()) - int64(base)
	t.Logf("peak after publishing: %.1f MiB", float64(peakPublish)/(1<<20))
	t.Logf("%d MiB: published in %s (CPU %s), downloaded in %s (CPU %s); the live heap grew by at most %.1f MiB (from %.1f MiB)",
		size>>20, published.Round(time.Millisecond), publishCPU.Round(time.Millisecond), downloaded.Round(time.Millisecond),
		downloadCPU.Round(time.Millisecond), float64(grew)/(1<<20), float64(base)/(1<<20))
	if grew > 48<<20 {
		t.Errorf("the heap grew by %.1f MiB while %d MiB went through: the file is held in memory", float64(grew)/(1<<20), size>>20)
	}
}

// .github/scripts/publish-clients, as deploy.yml runs it after a release:
// every client archive of the version is published with its os and arch
// (goreleaser's armv7 is GOARCH arm), and a second run skips them.
func TestPublishClientsScript(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "")
	dist := t.TempDir()
	for _, platform := range []string{"linux_amd64", "linux_armv7", "android_arm64"} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "latch"), []byte("latch for "+platform), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("readme"), 0o644); err != nil {
			t.Fatal(err)
		}
		tarball := filepath.Join(dist, "latch_2.1.0_"+platform+".tar.gz")
		if out, err := exec.Command("tar", "-czf", tarball, "-C", dir, "latch", "README.md").CombinedOutput(); err != nil {
			t.Fatalf("tar: %v\n%s", err, out)
		}
	}
	bin := mustBuildLatch(t, t.TempDir(), "2.1.0")
	run := func() string {
		t.Helper()
		cmd := exec.Command("bash", filepath.Join(repoRoot, ".github/scripts/publish-clients"), bin, dist, "2.1.0")
		cmd.Env = append(os.Environ(), "LATCH_SERVER="+s.nats, "LATCH_DATA="+s.data)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("publish-clients: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := run(); !strings.Contains(out, "3 published") {
		t.Errorf("the first run:\n%s", out)
	}
	var rs []accounts.Release
	decodeJSON(t, mustLatch(t, s.env, "release", "ls", "--json"), &rs)
	var got []string
	for _, r := range rs {
		got = append(got, r.OS+"/"+r.Arch+"="+r.Version)
	}
	slices.Sort(got)
	if want := []string{"android/arm64=2.1.0", "linux/amd64=2.1.0", "linux/arm=2.1.0"}; !slices.Equal(got, want) {
		t.Errorf("published %v, want %v", got, want)
	}
	if out := run(); !strings.Contains(out, "0 published") || strings.Count(out, "published already") != 3 {
		t.Errorf("the second run:\n%s", out)
	}
}
