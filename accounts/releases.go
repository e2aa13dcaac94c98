package accounts

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/latch-dev/latch/internal/semver"
	"github.com/latch-dev/latch/operator"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// Releases: builds of latch published through NATS. A build is uploaded
// in chunks to a staging stream, streamed from there into the
// latch_releases object store (never whole in memory), described by a
// manifest signed with the deployment's release key, recorded in the
// latch_release_index bucket and announced on latch.releases.<os>.<arch>,
// which every person account imports.
const (
	ReleasesStore      = "latch_releases"
	ReleaseIndexBucket = "latch_release_index"
	releaseUploads     = "latch_release_uploads"
	uploadSubject      = "latch.upload"
	// ReleaseChunkSize is the most bytes of one upload request; the
	// request, base64 in JSON, stays well under NATS's 1 MiB.
	ReleaseChunkSize = 256 << 10
	// uploadLifetime is how long an upload not published is kept.
	uploadLifetime = time.Hour
	// MaxReleaseNotes bounds a release's notes.
	MaxReleaseNotes = 4096
)

// Release kinds: a build devices install, or one of the server.
const (
	ReleaseClient = "client"
	ReleaseServer = "server"
)

// ReleaseManifest is what latch signs for a release: everything a device
// checks before it installs the file.
type ReleaseManifest struct {
	Version   string    `json:"version"`
	OS        string    `json:"os"`
	Arch      string    `json:"arch"`
	Kind      string    `json:"kind"`
	File      string    `json:"file"` // the download's file name
	Size      int64     `json:"size"`
	SHA256    string    `json:"sha256"` // hex
	Notes     string    `json:"notes,omitempty"`
	Published time.Time `json:"published"`
}

// SignedManifest is a manifest as signed: the exact bytes, the release
// key's signature over them (base64url, no padding) and that key (N…).
type SignedManifest struct {
	Manifest  json.RawMessage `json:"manifest"`
	Signature string          `json:"signature"`
	Key       string          `json:"key"`
}

// Verify checks the signature with key, the release public key a device
// trusts, and returns the manifest.
func (sm SignedManifest) Verify(key string) (ReleaseManifest, error) {
	var m ReleaseManifest
	if sm.Key != key {
		return m, fmt.Errorf("the release is signed by %s, not by the release key this device trusts (%s)", sm.Key, key)
	}
	pub, err := nkeys.FromPublicKey(key)
	if err != nil {
		return m, fmt.Errorf("release key %q: %v", key, err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(sm.Signature)
	if err != nil || pub.Verify(sm.Manifest, sig) != nil {
		return m, errors.New("the release manifest's signature does not verify: it was not signed by the release key, or was changed")
	}
	if err := json.Unmarshal(sm.Manifest, &m); err != nil {
		return m, fmt.Errorf("the release manifest: %v", err)
	}
	return m, nil
}

// Release is a published build: its signed manifest, who published it,
// and whether it was withdrawn.
type Release struct {
	SignedManifest
	ReleaseManifest `json:"-"`
	Publisher       string `json:"publisher,omitempty"`
	// Object is the file's name in the object store: of this upload's
	// own, so that two publishes of one version at once cannot mix.
	Object   string     `json:"object,omitempty"`
	Yanked   *time.Time `json:"yanked,omitempty"`
	YankedBy string     `json:"yanked_by,omitempty"`
}

// MarshalJSON writes the release with its manifest's fields beside it,
// for people and scripts; devices check the signed bytes.
func (r Release) MarshalJSON() ([]byte, error) {
	type plain Release
	return json.Marshal(struct {
		plain
		Version   string    `json:"version"`
		OS        string    `json:"os"`
		Arch      string    `json:"arch"`
		Kind      string    `json:"kind"`
		File      string    `json:"file"`
		Size      int64     `json:"size"`
		SHA256    string    `json:"sha256"`
		Notes     string    `json:"notes,omitempty"`
		Published time.Time `json:"published"`
	}{plain(r), r.Version, r.OS, r.Arch, r.Kind, r.File, r.Size, r.SHA256, r.Notes, r.Published})
}

// UnmarshalJSON reads a release and its manifest's fields from the
// signed bytes (not from the fields beside them).
func (r *Release) UnmarshalJSON(b []byte) error {
	type plain Release
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*r = Release(p)
	if len(r.Manifest) > 0 {
		return json.Unmarshal(r.Manifest, &r.ReleaseManifest)
	}
	return nil
}

// ReleaseAnnouncement is what latch.releases.<os>.<arch> carries: a
// release published, or yanked.
type ReleaseAnnouncement struct {
	Release Release `json:"release"`
	Yanked  bool    `json:"yanked,omitempty"`
}

// ReleaseSubject is where releases for os and arch are announced.
func ReleaseSubject(os, arch string) string {
	return operator.ReleaseSubjectPrefix + "." + os + "." + arch
}

var platformName = regexp.MustCompile(`^[a-z0-9]{1,16}$`)

// checkRelease validates what identifies a release.
func checkRelease(version, goos, arch, kind string) (semver.Version, error) {
	v, err := semver.Parse(version)
	if err != nil {
		return v, invalid("version", "%v", err)
	}
	if !platformName.MatchString(goos) {
		return v, invalid("os", "os %q: want a name such as linux, darwin, windows or android", goos)
	}
	if !platformName.MatchString(arch) {
		return v, invalid("arch", "arch %q: want a name such as amd64, arm64 or arm", arch)
	}
	if kind != ReleaseClient && kind != ReleaseServer {
		return v, invalid("kind", "kind %q: want client or server", kind)
	}
	return v, nil
}

// releaseKey is a release's key in the index: kind.os.arch.version, the
// version's dots as underscores.
func releaseKey(kind, goos, arch, version string) string {
	return kind + "." + goos + "." + arch + "." + strings.ReplaceAll(version, ".", "_")
}

// releaseObject is a release's object in the store.
func releaseObject(m ReleaseManifest) string {
	return m.Kind + "/" + m.Version + "/" + m.OS + "-" + m.Arch
}

// releaseFile is the file name a release downloads as.
func releaseFile(kind, goos, arch, version string) string {
	name := "latch"
	if kind == ReleaseServer {
		name = "latch-server"
	}
	name += "_" + version + "_" + goos + "_" + arch
	if goos == "windows" {
		name += ".exe"
	}
	return name
}

// ReleaseChunk is one piece of an upload, in order from 0.
type ReleaseChunk struct {
	Upload string `json:"upload"` // the uploader's name for it, such as a NUID
	Seq    int    `json:"seq"`
	Data   []byte `json:"data"` // base64 in JSON
}

// ReleaseChunkReply says a chunk is kept.
type ReleaseChunkReply struct {
	Upload string `json:"upload"`
	Seq    int    `json:"seq"`
}

// ReleasePublishRequest publishes an upload: what it is, and what the
// uploader read from the file, which the server checks.
type ReleasePublishRequest struct {
	Upload  string `json:"upload"`
	Chunks  int    `json:"chunks"`
	Version string `json:"version"`
	OS      string `json:"os"`
	Arch    string `json:"arch"`
	Kind    string `json:"kind"`
	Notes   string `json:"notes,omitempty"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
}

// ReleaseYankRequest names the releases to withdraw: a version, for every
// os and arch unless they are given, of kind (default client).
type ReleaseYankRequest struct {
	Version string `json:"version"`
	OS      string `json:"os,omitempty"`
	Arch    string `json:"arch,omitempty"`
	Kind    string `json:"kind,omitempty"`
}

var uploadName = regexp.MustCompile(`^[A-Za-z0-9_-]{8,64}$`)

// uploads is the staging stream, made when the first chunk comes.
func (s *Service) uploads(ctx context.Context) error {
	return s.untilPlaced(ctx, "stream "+releaseUploads, func(ctx context.Context) error {
		_, err := s.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:        releaseUploads,
			Description: "latch release uploads, in chunks, until published",
			Subjects:    []string{uploadSubject + ".>"},
			Storage:     jetstream.FileStorage,
			Replicas:    s.cfg.Replicas,
			MaxAge:      uploadLifetime,
			Duplicates:  uploadLifetime / 2,
		})
		return err
	})
}

// UploadReleaseChunk keeps one chunk of an upload. A chunk sent again
// (its answer was lost) is kept once.
func (s *Service) UploadReleaseChunk(ctx context.Context, c ReleaseChunk) (ReleaseChunkReply, error) {
	switch {
	case !uploadName.MatchString(c.Upload):
		return ReleaseChunkReply{}, invalid("upload", "upload %q: want 8 to 64 letters, digits, - or _", c.Upload)
	case c.Seq < 0:
		return ReleaseChunkReply{}, invalid("seq", "seq %d: chunks count from 0", c.Seq)
	case len(c.Data) == 0 || len(c.Data) > ReleaseChunkSize:
		return ReleaseChunkReply{}, invalid("data", "a chunk holds 1 to %d bytes, not %d", ReleaseChunkSize, len(c.Data))
	}
	if err := s.uploads(ctx); err != nil {
		return ReleaseChunkReply{}, err
	}
	m := nats.NewMsg(uploadSubject + "." + c.Upload)
	m.Data = c.Data
	m.Header.Set("Latch-Seq", strconv.Itoa(c.Seq))
	err := steadily(ctx, true, func(ctx context.Context) error {
		_, err := s.js.PublishMsg(ctx, m, jetstream.WithMsgID(c.Upload+"."+strconv.Itoa(c.Seq)))
		return err
	})
	if err != nil {
		return ReleaseChunkReply{}, fmt.Errorf("keep chunk %d: %w", c.Seq, err)
	}
	return ReleaseChunkReply{Upload: c.Upload, Seq: c.Seq}, nil
}

// PublishRelease makes an upload a release: its chunks streamed into the
// object store, checked against the size and SHA-256 the uploader read,
// the manifest signed, recorded and announced. A version is published once
// for each kind, os and arch: a new build is a new version.
func (s *Service) PublishRelease(ctx context.Context, r ReleasePublishRequest) (Release, error) {
	if _, err := checkRelease(r.Version, r.OS, r.Arch, r.Kind); err != nil {
		return Release{}, err
	}
	v, _ := semver.Parse(r.Version)
	r.Version = v.String()
	switch {
	case s.cfg.ReleaseSigner == nil:
		return Release{}, errorf(ErrInvalid, "%v", operator.ErrNoReleaseKey)
	case !uploadName.MatchString(r.Upload) || r.Chunks <= 0:
		return Release{}, invalid("upload", "name the upload and how many chunks it has")
	case r.Size <= 0 || int64(r.Chunks) != (r.Size+ReleaseChunkSize-1)/ReleaseChunkSize:
		return Release{}, invalid("size", "%d bytes are not %d chunks of %d", r.Size, r.Chunks, ReleaseChunkSize)
	case len(r.SHA256) != 64 || strings.Trim(r.SHA256, "0123456789abcdef") != "":
		return Release{}, invalid("sha256", "want the file's SHA-256 in lowercase hex")
	case len(r.Notes) > MaxReleaseNotes:
		return Release{}, invalid("notes", "notes of %d bytes; at most %d", len(r.Notes), MaxReleaseNotes)
	}
	key := releaseKey(r.Kind, r.OS, r.Arch, r.Version)
	if _, err := s.releaseIndex.Get(ctx, key); err == nil {
		return Release{}, errorf(ErrExists, "%s %s for %s/%s is published already; a release never changes: publish a new version", r.Kind, r.Version, r.OS, r.Arch)
	} else if !isNotFound(err) {
		return Release{}, err
	}
	m := ReleaseManifest{
		Version: r.Version, OS: r.OS, Arch: r.Arch, Kind: r.Kind, File: releaseFile(r.Kind, r.OS, r.Arch, r.Version),
		Size: r.Size, SHA256: r.SHA256, Notes: r.Notes, Published: time.Now().UTC().Truncate(time.Second),
	}
	store, err := s.releaseStore(ctx)
	if err != nil {
		return Release{}, err
	}
	object := releaseObject(m) + "/" + r.Upload
	// A store just made may not answer yet (no responders in a cluster
	// that is placing it): the chunks are still staged, so store them
	// again from the first.
	for deadline := time.Now().Add(leaderWait); ; {
		err = s.storeUpload(ctx, store, r, m, object)
		if err == nil || !leaderless(err, false) || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return Release{}, err
		case <-time.After(250 * time.Millisecond):
		}
	}
	if err != nil {
		return Release{}, err
	}
	body, err := json.Marshal(m)
	if err != nil {
		return Release{}, err
	}
	sig, err := s.cfg.ReleaseSigner.Sign(body)
	if err != nil {
		return Release{}, err
	}
	pub, _ := s.cfg.ReleaseSigner.PublicKey()
	rel := Release{
		SignedManifest:  SignedManifest{Manifest: body, Signature: base64.RawURLEncoding.EncodeToString(sig), Key: pub},
		ReleaseManifest: m, Publisher: actorOf(ctx).Name, Object: object,
	}
	b, err := json.Marshal(rel)
	if err != nil {
		return Release{}, err
	}
	if _, err := s.releaseIndex.Create(ctx, key, b); err != nil {
		store.Delete(ctx, object)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return Release{}, errorf(ErrExists, "%s %s for %s/%s was published meanwhile", r.Kind, r.Version, r.OS, r.Arch)
		}
		return Release{}, fmt.Errorf("record the release: %w", err)
	}
	s.purgeUpload(ctx, r.Upload)
	s.announce(rel, false)
	s.auditAfter(ctx, AuditEvent{Action: ActionReleasePublish,
		Detail: fmt.Sprintf("%s %s %s/%s, %d bytes, sha256 %s", m.Kind, m.Version, m.OS, m.Arch, m.Size, m.SHA256)})
	return rel, nil
}

// releaseStore is the object store of release files, made on first use.
func (s *Service) releaseStore(ctx context.Context) (jetstream.ObjectStore, error) {
	st, err := s.js.ObjectStore(ctx, ReleasesStore)
	if err == nil || !errors.Is(err, jetstream.ErrBucketNotFound) {
		return st, err
	}
	err = s.untilPlaced(ctx, "object store "+ReleasesStore, func(ctx context.Context) error {
		st, err = s.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket: ReleasesStore, Description: "latch release files", Storage: jetstream.FileStorage, Replicas: s.cfg.Replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			st, err = s.js.ObjectStore(ctx, ReleasesStore)
		}
		return err
	})
	return st, err
}

// storeUpload streams an upload's chunks, in order, into the object
// store, and checks the file against the manifest. What does not match is
// removed.
func (s *Service) storeUpload(ctx context.Context, store jetstream.ObjectStore, r ReleasePublishRequest, m ReleaseManifest, object string) error {
	cons, err := s.js.OrderedConsumer(ctx, releaseUploads, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{uploadSubject + "." + r.Upload},
	})
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return errorf(ErrNotFound, "upload %s: no chunks; upload the file first", r.Upload)
		}
		return err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(copyChunks(ctx, cons, r, pw)) }()
	h := sha256.New()
	paced, err := s.pacedReader(ctx, pr)
	if err != nil {
		return err
	}
	info, err := store.Put(ctx, jetstream.ObjectMeta{
		Name: object, Description: m.File,
		Headers: nats.Header{"Latch-Sha256": []string{m.SHA256}},
	}, io.TeeReader(paced, h))
	pr.CloseWithError(err)
	if err != nil {
		return fmt.Errorf("store the release file: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); int64(info.Size) != r.Size || got != r.SHA256 {
		store.Delete(ctx, object)
		return invalid("sha256", "the file uploaded is %d bytes with SHA-256 %s, not the %d bytes with %s said; upload it again",
			info.Size, got, r.Size, r.SHA256)
	}
	return nil
}

// pacedReader gives r to the object store no faster than it stores it.
// The store publishes a file's chunks without waiting for each to be
// stored; fed as fast as it reads, it would have a large file in flight in
// memory. Every paceStep bytes, the reader waits until the store's stream
// holds all but paceWindow of what was read (for up to paceWait, so that a
// slow check never stops a publish).
func (s *Service) pacedReader(ctx context.Context, r io.Reader) (io.Reader, error) {
	st, err := s.js.Stream(ctx, "OBJ_"+ReleasesStore)
	if err != nil {
		return nil, err
	}
	base := st.CachedInfo().State.Bytes
	return &paced{ctx: ctx, r: r, st: st, base: base}, nil
}

const (
	paceStep   = 2 << 20
	paceWindow = 4 << 20
	paceWait   = 10 * time.Second
)

type paced struct {
	ctx        context.Context
	r          io.Reader
	st         jetstream.Stream
	base, read uint64
	next       uint64
}

func (p *paced) Read(b []byte) (int, error) {
	if p.read >= p.next {
		p.next = p.read + paceStep
		deadline := time.Now().Add(paceWait)
		for time.Now().Before(deadline) {
			info, err := p.st.Info(p.ctx)
			if err != nil || info.State.Bytes+paceWindow >= p.base+p.read {
				break
			}
			select {
			case <-p.ctx.Done():
				return 0, p.ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	n, err := p.r.Read(b)
	p.read += uint64(n)
	return n, err
}

// copyChunks writes an upload's chunks 0 … Chunks-1 to w, failing on a
// gap: a chunk lost, or the upload expired.
func copyChunks(ctx context.Context, cons jetstream.Consumer, r ReleasePublishRequest, w io.Writer) error {
	for seq := 0; seq < r.Chunks; {
		batch, err := cons.Fetch(min(r.Chunks-seq, 4), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return err
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			got, _ := strconv.Atoi(msg.Headers().Get("Latch-Seq"))
			if got != seq {
				return invalid("upload", "upload %s: chunk %d where %d was due; upload the file again", r.Upload, got, seq)
			}
			if _, err := w.Write(msg.Data()); err != nil {
				return err
			}
			seq++
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if n == 0 {
			return invalid("upload", "upload %s: %d of %d chunks kept (an upload is kept for %s); upload the file again", r.Upload, seq, r.Chunks, uploadLifetime)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// purgeUpload drops an upload's chunks once published.
func (s *Service) purgeUpload(ctx context.Context, upload string) {
	st, err := s.js.Stream(ctx, releaseUploads)
	if err == nil {
		err = st.Purge(ctx, jetstream.WithPurgeSubject(uploadSubject+"."+upload))
	}
	if err != nil {
		s.log.Warn("drop a published upload's chunks; they expire anyway", "upload", upload, "err", err)
	}
}

// announce tells every device of os and arch of a client release, or that
// it was yanked. Devices that miss it ask for the latest when they
// connect. A server build is no device's business.
func (s *Service) announce(r Release, yanked bool) {
	if r.Kind != ReleaseClient {
		return
	}
	b, err := json.Marshal(ReleaseAnnouncement{Release: r, Yanked: yanked})
	if err == nil {
		err = s.cfg.App.Publish(ReleaseSubject(r.OS, r.Arch), b)
	}
	if err != nil {
		s.log.Warn("announce a release", "version", r.Version, "os", r.OS, "arch", r.Arch, "err", err)
	}
}

// Releases lists every release, yanked ones too, newest version first.
func (s *Service) Releases(ctx context.Context) ([]Release, error) {
	all, _, err := listJSON[Release](ctx, s.releaseIndex, ">")
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, err
	}
	slices.SortFunc(all, func(a, b Release) int {
		if c := strings.Compare(a.Kind+a.OS+a.Arch, b.Kind+b.OS+b.Arch); c != 0 {
			return c
		}
		va, _ := semver.Parse(a.Version)
		vb, _ := semver.Parse(b.Version)
		return -semver.Compare(va, vb)
	})
	return all, nil
}

// LatestRelease is the newest release of kind for os and arch that is not
// yanked; ErrNotFound when there is none.
func (s *Service) LatestRelease(ctx context.Context, kind, goos, arch string) (Release, error) {
	all, err := s.Releases(ctx)
	if err != nil {
		return Release{}, err
	}
	for _, r := range all {
		if r.Kind == kind && r.OS == goos && r.Arch == arch && r.Yanked == nil {
			return r, nil
		}
	}
	return Release{}, errorf(ErrNotFound, "no %s release for %s/%s", kind, goos, arch)
}

// YankRelease withdraws a version: no longer offered, and the devices of
// its os and arch are told. It returns the releases yanked.
func (s *Service) YankRelease(ctx context.Context, r ReleaseYankRequest) ([]Release, error) {
	if r.Kind == "" {
		r.Kind = ReleaseClient
	}
	v, err := semver.Parse(r.Version)
	if err != nil {
		return nil, invalid("version", "%v", err)
	}
	all, err := s.Releases(ctx)
	if err != nil {
		return nil, err
	}
	var out []Release
	for _, rel := range all {
		if rel.Version != v.String() || rel.Kind != r.Kind || r.OS != "" && rel.OS != r.OS || r.Arch != "" && rel.Arch != r.Arch || rel.Yanked != nil {
			continue
		}
		now := time.Now().UTC().Truncate(time.Second)
		rel.Yanked, rel.YankedBy = &now, actorOf(ctx).Name
		b, err := json.Marshal(rel)
		if err != nil {
			return out, err
		}
		if _, err := s.releaseIndex.Put(ctx, releaseKey(rel.Kind, rel.OS, rel.Arch, rel.Version), b); err != nil {
			return out, fmt.Errorf("yank %s %s/%s: %w", rel.Version, rel.OS, rel.Arch, err)
		}
		s.announce(rel, true)
		s.auditAfter(ctx, AuditEvent{Action: ActionReleaseYank, Detail: fmt.Sprintf("%s %s %s/%s", rel.Kind, rel.Version, rel.OS, rel.Arch)})
		out = append(out, rel)
	}
	if len(out) == 0 {
		return nil, errorf(ErrNotFound, "no %s release %s to yank (for %s/%s)", r.Kind, v, orAny(r.OS), orAny(r.Arch))
	}
	return out, nil
}

func orAny(s string) string {
	if s == "" {
		return "any"
	}
	return s
}

// OpenRelease gives the file of a release that is not yanked, to stream
// to a download; the caller closes it.
func (s *Service) OpenRelease(ctx context.Context, kind, goos, arch, version string) (Release, io.ReadCloser, error) {
	e, err := s.releaseIndex.Get(ctx, releaseKey(kind, goos, arch, version))
	if err != nil {
		if isNotFound(err) {
			return Release{}, nil, errorf(ErrNotFound, "no %s release %s for %s/%s", kind, version, goos, arch)
		}
		return Release{}, nil, err
	}
	var r Release
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return Release{}, nil, err
	}
	if r.Yanked != nil {
		return Release{}, nil, errorf(ErrNotFound, "%s %s for %s/%s was withdrawn", kind, version, goos, arch)
	}
	store, err := s.js.ObjectStore(ctx, ReleasesStore)
	if err != nil {
		return Release{}, nil, err
	}
	object := r.Object
	if object == "" {
		object = releaseObject(r.ReleaseManifest)
	}
	info, err := store.GetInfo(ctx, object)
	if err != nil {
		return Release{}, nil, fmt.Errorf("the file of %s %s for %s/%s: %w", kind, version, goos, arch, err)
	}
	// The object's chunks, read a few at a time as the download takes
	// them: the store's own Get has the server push them all, and a slow
	// reader would have the file pile up in memory.
	cons, err := s.js.OrderedConsumer(ctx, "OBJ_"+ReleasesStore, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"$O." + ReleasesStore + ".C." + info.NUID},
	})
	if err != nil {
		return Release{}, nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		err := copyObject(ctx, cons, int(info.Chunks), pw)
		pw.CloseWithError(err)
	}()
	return r, pr, nil
}

// copyObject writes an object's chunks, n of them, to w, a few at a time.
// A fetch that brings nothing (the consumer being placed, or reset, on a
// cluster's stream leader) is made again, for up to half a minute without
// progress.
func copyObject(ctx context.Context, cons jetstream.Consumer, n int, w io.Writer) error {
	stalled := time.Now()
	for left := n; left > 0; {
		batch, err := cons.Fetch(min(left, 4), jetstream.FetchMaxWait(5*time.Second))
		got := 0
		if err == nil {
			for msg := range batch.Messages() {
				got++
				if _, err := w.Write(msg.Data()); err != nil {
					return err
				}
			}
			err = batch.Error()
		}
		left -= got
		if got > 0 {
			stalled = time.Now()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if got == 0 || err != nil {
			if time.Since(stalled) > 30*time.Second {
				if err == nil {
					err = errors.New("no chunk came")
				}
				return fmt.Errorf("the release file stops after %d of %d chunks: %w", n-left, n, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}
