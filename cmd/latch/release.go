package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/latch-dev/latch/accounts"
	"github.com/nats-io/nuid"
	"github.com/urfave/cli/v2"
)

func releaseCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "release",
		Usage: "publish, list and withdraw builds of latch that devices update to (through the running server's admin service)",
		Subcommands: []*cli.Command{
			{
				Name:      "publish",
				Usage:     "publish a build: stored in NATS, its manifest signed with the release key, announced to every connected device",
				ArgsUsage: "FILE",
				Description: `Uploads FILE to the server in chunks (it is never held whole in memory),
which stores it in the latch_releases object store, checks its size and
SHA-256 against what this command read, signs a manifest (version, os,
arch, kind, size, SHA-256, notes, time) with the deployment's release key,
and announces it on latch.releases.<os>.<arch>: every device of that
platform hears of it at once. A version is published once for each kind,
os and arch: a new build is a new version. On a terminal a progress bar
shows the upload.`,
				Flags: withGlobals(
					&cli.StringFlag{Name: "version", Required: true, Usage: "the build's version: MAJOR.MINOR.PATCH[-PRERELEASE], as its --version prints"},
					&cli.StringFlag{Name: "os", Required: true, Usage: "the build's GOOS: linux, darwin, windows, android, …"},
					&cli.StringFlag{Name: "arch", Required: true, Usage: "the build's GOARCH: amd64, arm64, arm, …"},
					&cli.StringFlag{Name: "kind", Value: accounts.ReleaseClient, Usage: "client (devices update to it) or server"},
					&cli.StringFlag{Name: "notes", Usage: "what changed, shown with the release"},
					jsonFlag(),
				),
				Action: e.adminAction([]string{"FILE"}, func(c *cli.Context, ac *accounts.AdminClient, a []string) error {
					rel, err := publishRelease(c.Context, e, ac, a[0], accounts.ReleasePublishRequest{
						Version: c.String("version"), OS: c.String("os"), Arch: c.String("arch"),
						Kind: c.String("kind"), Notes: c.String("notes"),
					})
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return printJSON(e.stdout, rel)
					}
					fmt.Fprintf(e.stdout, "published %s %s for %s/%s: %d bytes, sha256 %s\n", rel.Kind, rel.Version, rel.OS, rel.Arch, rel.Size, rel.SHA256)
					return nil
				}),
			},
			{
				Name:  "ls",
				Usage: "list the releases, withdrawn ones too, newest version first",
				Flags: withGlobals(jsonFlag()),
				Action: adminCall(e, nil, accounts.EndpointReleaseList, noRequest, func(c *cli.Context, rs []accounts.Release) error {
					return list(e.stdout, []string{"KIND", "VERSION", "OS", "ARCH", "SIZE", "PUBLISHED", "BY", "YANKED"}, rs,
						func(r accounts.Release) []string {
							return []string{r.Kind, r.Version, r.OS, r.Arch, strconv.FormatInt(r.Size, 10), when(r.Published), dash(r.Publisher), whenPtr(r.Yanked)}
						})
				}),
			},
			{
				Name:      "yank",
				Usage:     "withdraw a version: no longer offered or installed, and the devices of its platforms are told",
				ArgsUsage: "VERSION",
				Flags: withGlobals(
					&cli.StringFlag{Name: "os", Usage: "only this os's build (default: every os)"},
					&cli.StringFlag{Name: "arch", Usage: "only this arch's build (default: every arch)"},
					&cli.StringFlag{Name: "kind", Value: accounts.ReleaseClient, Usage: "client or server"},
					jsonFlag(),
				),
				Action: adminCall(e, []string{"VERSION"}, accounts.EndpointReleaseYank,
					func(c *cli.Context, a []string) (accounts.ReleaseYankRequest, error) {
						return accounts.ReleaseYankRequest{Version: a[0], OS: c.String("os"), Arch: c.String("arch"), Kind: c.String("kind")}, nil
					},
					func(c *cli.Context, rs []accounts.Release) error {
						for _, r := range rs {
							fmt.Fprintf(e.stdout, "yanked %s %s for %s/%s\n", r.Kind, r.Version, r.OS, r.Arch)
						}
						return nil
					}),
			},
		},
	}
}

// publishRelease uploads file in chunks, then asks the server to publish
// it as req says. The file is read twice, a chunk at a time: once for its
// size and SHA-256, once to send.
func publishRelease(ctx context.Context, e *env, ac *accounts.AdminClient, file string, req accounts.ReleasePublishRequest) (accounts.Release, error) {
	f, err := os.Open(file)
	if err != nil {
		return accounts.Release{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return accounts.Release{}, err
	}
	if !fi.Mode().IsRegular() || fi.Size() == 0 {
		return accounts.Release{}, fmt.Errorf("%s: not a file with something in it", file)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return accounts.Release{}, err
	}
	req.Size, req.SHA256 = fi.Size(), hex.EncodeToString(h.Sum(nil))
	req.Chunks = int((req.Size + accounts.ReleaseChunkSize - 1) / accounts.ReleaseChunkSize)
	req.Upload = nuid.Next()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return accounts.Release{}, err
	}
	bar := newProgress(e.stderr, req.Size, "bytes")
	buf := make([]byte, accounts.ReleaseChunkSize)
	for seq := 0; seq < req.Chunks; seq++ {
		n, err := io.ReadFull(f, buf)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return accounts.Release{}, fmt.Errorf("read %s: %w", file, err)
		}
		if _, err := accounts.EndpointReleaseUpload.Call(ctx, ac, accounts.ReleaseChunk{Upload: req.Upload, Seq: seq, Data: buf[:n]}); err != nil {
			bar.done()
			return accounts.Release{}, fmt.Errorf("upload chunk %d of %d: %w", seq+1, req.Chunks, err)
		}
		bar.add(int64(n))
	}
	bar.done()
	return accounts.EndpointReleasePublish.Call(ctx, ac, req)
}

// progress draws an upload's progress on a terminal, and nothing
// elsewhere.
type progress struct {
	w           io.Writer
	total, sent int64
	unit        string
	on          bool
	last        int
}

func newProgress(w io.Writer, total int64, unit string) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, total: total, unit: unit, on: ok && isTerminal(f), last: -1}
}

func (p *progress) add(n int64) {
	p.sent += n
	if !p.on {
		return
	}
	pct := int(p.sent * 100 / p.total)
	if pct == p.last {
		return
	}
	p.last = pct
	const width = 40
	filled := pct * width / 100
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = ' '
		if i < filled {
			bar[i] = '='
		}
	}
	fmt.Fprintf(p.w, "\r[%s] %3d%% %d/%d %s", bar, pct, p.sent, p.total, p.unit)
}

// say writes a line above the bar, which is drawn again at the next add.
func (p *progress) say(format string, args ...any) {
	if p.on && p.last >= 0 {
		fmt.Fprint(p.w, "\r\033[K")
		p.last = -1
	}
	fmt.Fprintf(p.w, format+"\n", args...)
}

func (p *progress) done() {
	if p.on && p.last >= 0 {
		fmt.Fprintln(p.w)
	}
}
