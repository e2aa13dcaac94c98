package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/client"
	"github.com/latch-dev/latch/internal/qr"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"
)

func clientCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "client",
		Usage: "the device side: enroll this machine as a device of your account, then read, write and watch your records",
		Subcommands: []*cli.Command{
			{
				Name:  "enroll",
				Usage: "enroll this machine: make its own nkey, show a code to approve in the web GUI, then write its creds",
				Description: `Makes a user nkey on this machine and asks the latch server at --url to
enroll it, proving it holds the seed; the seed never leaves the machine.
Prints a code such as WDJB-MJHT, a link, and the key's fingerprint, then
waits (up to 10 minutes) while you open the link or type the code under
"Enroll a device" in the web GUI and approve it with your passkey. Then it
writes device.creds (mode 0600) and client.json into the home folder
(--home, $LATCH_CLIENT_HOME, or latch in your configuration folder).
Nothing is written unless the enrollment is approved. An existing
enrollment in the home folder is never replaced without --force.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "url", Usage: "the latch server's web address, such as https://latch.example.com [$LATCH_URL]"},
					&cli.StringFlag{Name: "name", Usage: "this device's name (default: the host name)"},
					&cli.StringFlag{Name: "home", Usage: "the folder for the creds and client.json [$" + client.HomeEnv + "]"},
					&cli.BoolFlag{Name: "force", Usage: "replace an enrollment already in the home folder"},
					&cli.BoolFlag{Name: "no-qr", Usage: "do not draw the link as a QR code"},
					&cli.StringFlag{Name: "ca", Usage: "the CA (PEM) that signed the server's certificate, when the system does not trust it; the device keeps trusting it"},
					&cli.StringFlag{Name: "cert", Usage: "a client certificate (PEM) for a server that asks for one (latch serve --tls-ca); the device keeps showing it"},
					&cli.StringFlag{Name: "key", Usage: "the key (PEM) of --cert"},
				},
				Action: func(c *cli.Context) error {
					if _, err := args(c); err != nil {
						return err
					}
					url := c.String("url")
					if url == "" {
						url = e.getenv("LATCH_URL")
					}
					if url == "" {
						return usagef("`latch client enroll` needs --url, the latch server's web address; see `latch client enroll --help`")
					}
					home := c.String("home")
					if home == "" {
						var err error
						if home, err = client.DefaultHome(e.getenv); err != nil {
							return err
						}
					}
					name := c.String("name")
					if name == "" {
						h, err := os.Hostname()
						if err != nil || h == "" {
							return usagef("this machine's host name is unknown; give the device a name with --name")
						}
						name = h
					}
					p, err := client.StartEnroll(c.Context, client.EnrollOptions{
						URL: url, Name: name, Home: home, Force: c.Bool("force"), CAFile: c.String("ca"), CertFile: c.String("cert"), KeyFile: c.String("key"),
					})
					if err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "To enroll %s, open\n\n    %s\n\nor go to %s and enter the code\n\n    %s\n\n",
						oneLine(p.Name), p.VerificationURIComplete, p.VerificationURI, p.UserCode)
					if !c.Bool("no-qr") {
						// For a phone's camera, where the passkey often is.
						if code, err := qr.Terminal(p.VerificationURIComplete); err == nil {
							fmt.Fprintf(e.stdout, "or scan this with your phone:\n\n%s\n", code)
						}
					}
					fmt.Fprintf(e.stdout, "The page must show this key fingerprint: %s\n", p.Fingerprint)
					fmt.Fprintf(e.stdout, "Waiting for approval (the code expires in %d minutes)...\n", int(time.Until(p.Expires).Round(time.Minute)/time.Minute))
					d, err := p.Wait(c.Context)
					if errors.Is(err, context.Canceled) {
						return errors.New("interrupted; nothing was written, and the code expires by itself")
					}
					if err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "enrolled as %s (%s) in %s; creds in %s\n", oneLine(d.Name), client.Fingerprint(d.PublicKey), personOf(d), d.CredsPath)
					return nil
				},
			},
			clientPutCommand(e),
			clientGetCommand(e),
			clientRmCommand(e),
			clientLsCommand(e),
			clientWatchCommand(e),
			clientRenewCommand(e),
			clientUpdateCommand(e),
			clientStatusCommand(e),
		},
	}
}

// deviceFlags are the flags of the client commands that use the device's
// creds. --creds and --server mean the device's here, not the admin's: the
// environment's LATCH_CREDS and LATCH_SERVER, which are for admin
// commands, are not read.
func deviceFlags(fs ...cli.Flag) []cli.Flag {
	return append(fs,
		&cli.StringFlag{Name: "home", Usage: "the device's home folder [$" + client.HomeEnv + "]"},
		&cli.StringFlag{Name: "creds", Usage: "use this creds file instead of the home folder's device.creds"},
		&cli.StringFlag{Name: "server", Usage: "connect to this NATS URL instead of those given at enrollment"},
	)
}

// given returns a flag's value when it was given on the command line, on
// the command or before it, and "" otherwise.
func given(c *cli.Context, name string) string {
	for _, l := range c.Lineage() {
		if l.IsSet(name) {
			return l.String(name)
		}
	}
	return ""
}

// device opens the enrolled device, with --home, --creds and --server.
func (e *env) device(c *cli.Context) (*client.Device, error) {
	home := given(c, "home")
	if home == "" {
		var err error
		if home, err = client.DefaultHome(e.getenv); err != nil {
			return nil, err
		}
	}
	d, err := client.OpenCreds(home, given(c, "creds"))
	if err != nil {
		return nil, err
	}
	if s := given(c, "server"); s != "" {
		// TLS first is for the servers given at enrollment, a proxy's
		// tls:// URL; a nats:// one given here has no TLS to start.
		d.Servers, d.TLSFirst = []string{s}, d.TLSFirst && strings.HasPrefix(s, "tls://")
	}
	if len(d.Servers) == 0 {
		return nil, usagef("no NATS server is known for %s; give one with --server", d.CredsPath)
	}
	return d, nil
}

// keyRecords reads a command's one KEY argument, checks it, and opens the
// device's records.
func (e *env) keyRecords(c *cli.Context) (string, *client.Records, error) {
	a, err := args(c, "KEY")
	if err != nil {
		return "", nil, err
	}
	if err := keyArg(a[0]); err != nil {
		return "", nil, err
	}
	r, err := e.deviceRecords(c)
	return a[0], r, err
}

// deviceRecords opens the enrolled device's records, logging only the
// connection's warnings.
func (e *env) deviceRecords(c *cli.Context) (*client.Records, error) {
	d, err := e.device(c)
	if err != nil {
		return nil, err
	}
	return e.records(c, d, slog.LevelWarn)
}

// records opens the device's records; the connection's troubles go to
// stderr.
func (e *env) records(c *cli.Context, d *client.Device, level slog.Level) (*client.Records, error) {
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	return d.Records(c.Context, client.WithLogger(log))
}

// keyArg checks a KEY argument before anything connects.
func keyArg(key string) error {
	if err := client.ValidateKey(key); err != nil {
		return usagef("%v", err)
	}
	return nil
}

// prefixArg is the optional PREFIX argument.
func prefixArg(c *cli.Context) (string, error) {
	switch c.NArg() {
	case 0:
		return "", nil
	case 1:
		p := c.Args().First()
		if p != "" && client.ValidateKey(strings.TrimSuffix(p, ".")) != nil {
			return "", usagef("%q is not the start of a key; %s", p, client.KeyRule)
		}
		return p, nil
	}
	return "", usagef("`%s` takes at most one PREFIX, got %d; see `%s --help`", c.Command.HelpName, c.NArg(), c.Command.HelpName)
}

// recordJSON is a record in --json output. The value is text when it is
// UTF-8 and base64 otherwise, in value or value_base64.
type recordJSON struct {
	Op          string    `json:"op,omitempty"`
	Key         string    `json:"key"`
	Revision    uint64    `json:"revision"`
	Size        *int      `json:"size,omitempty"`
	Created     time.Time `json:"created"`
	Value       *string   `json:"value,omitempty"`
	ValueBase64 *string   `json:"value_base64,omitempty"`
}

func (r *recordJSON) setValue(b []byte) {
	s := string(b)
	if utf8.Valid(b) {
		r.Value = &s
		return
	}
	s = base64.StdEncoding.EncodeToString(b)
	r.ValueBase64 = &s
}

// lineValue is a value as watch prints it: as it is when it is text that
// stays on one line and reads back the same, else Go-quoted (strconv.Quote),
// so a value that starts with " is always quoted.
func lineValue(b []byte) string {
	s := string(b)
	if s != "" && utf8.ValidString(s) && strings.TrimSpace(s) == s && strconv.Quote(s) == `"`+s+`"` {
		return s
	}
	return strconv.Quote(s)
}

func clientPutCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "put",
		Usage:     "write a record; prints its new revision",
		ArgsUsage: "KEY VALUE",
		Description: `Writes VALUE under KEY in your records, which your other devices see at
once. VALUE - reads the value from standard input (bytes, as they are);
a value that starts with - goes after --, as in: put KEY -- -5.
KEY: ` + client.KeyRule + `.

With --if-revision N the write happens only if the record is still at
revision N (0: only if it has no value); otherwise nothing is written, and
latch says which revision the record is at and exits 1.`,
		Flags: deviceFlags(&cli.Uint64Flag{Name: "if-revision", Usage: "write only if the record is at this revision (0: only if it has no value)", DefaultText: "none: write whatever the revision"}),
		Action: func(c *cli.Context) error {
			a, err := args(c, "KEY", "VALUE")
			if err != nil {
				return err
			}
			if err := keyArg(a[0]); err != nil {
				return err
			}
			value := []byte(a[1])
			if a[1] == "-" {
				if value, err = io.ReadAll(e.stdin); err != nil {
					return fmt.Errorf("read the value from standard input: %v", err)
				}
			}
			r, err := e.deviceRecords(c)
			if err != nil {
				return err
			}
			defer r.Close()
			var rev uint64
			if c.IsSet("if-revision") {
				rev, err = r.Update(c.Context, a[0], value, c.Uint64("if-revision"))
			} else {
				rev, err = r.Put(c.Context, a[0], value)
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, rev)
			return nil
		},
	}
}

func clientGetCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "get",
		Usage:     "print a record's value",
		ArgsUsage: "KEY",
		Description: `Prints the value under KEY as it is, with nothing added. With --json
prints {key, revision, size, created, value}, the value as text when it
is UTF-8, else in value_base64. A key without a value exits 1.`,
		Flags: deviceFlags(jsonFlag()),
		Action: func(c *cli.Context) error {
			key, r, err := e.keyRecords(c)
			if err != nil {
				return err
			}
			defer r.Close()
			ent, err := r.Get(c.Context, key)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				out := recordJSON{Key: ent.Key, Revision: ent.Revision, Size: &ent.Size, Created: ent.Created.UTC()}
				out.setValue(ent.Value)
				return printJSON(e.stdout, out)
			}
			_, err = e.stdout.Write(ent.Value)
			return err
		},
	}
}

func clientRmCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "delete a record",
		ArgsUsage: "KEY",
		Description: `Deletes the record under KEY; your other devices see the delete at once.
Its earlier revisions go with it, and so does the room they took (the
server's records history keeps them for a restore). It works on records
too full for anything else. A key without a value exits 1.`,
		Flags: deviceFlags(),
		Action: func(c *cli.Context) error {
			key, r, err := e.keyRecords(c)
			if err != nil {
				return err
			}
			defer r.Close()
			return r.Delete(c.Context, key)
		},
	}
}

func clientLsCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:        "ls",
		Usage:       "list records: key, revision, size, time",
		ArgsUsage:   "[PREFIX]",
		Description: `Lists the records whose keys start with PREFIX (all without one), by key.`,
		Flags:       deviceFlags(jsonFlag()),
		Action: func(c *cli.Context) error {
			prefix, err := prefixArg(c)
			if err != nil {
				return err
			}
			r, err := e.deviceRecords(c)
			if err != nil {
				return err
			}
			defer r.Close()
			ents, err := r.List(c.Context, prefix)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				out := make([]recordJSON, 0, len(ents))
				for _, ent := range ents {
					out = append(out, recordJSON{Key: ent.Key, Revision: ent.Revision, Size: &ent.Size, Created: ent.Created.UTC()})
				}
				return printJSON(e.stdout, out)
			}
			return list(e.stdout, []string{"KEY", "REVISION", "SIZE", "CREATED"}, ents, func(ent client.Entry) []string {
				return []string{ent.Key, strconv.FormatUint(ent.Revision, 10), strconv.Itoa(ent.Size), when(ent.Created)}
			})
		},
	}
}

func clientWatchCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "watch",
		Usage:     "print every change to your records as it happens, resuming where the last watch stopped",
		ArgsUsage: "[PREFIX]",
		Description: `Prints one line per change to the records whose keys start with PREFIX:

    put KEY REVISION VALUE
    del KEY REVISION

VALUE is printed as it is when it is text that fits on one line; a value
that is empty, has control characters, quotes, backslashes, leading or
trailing spaces, or bytes that are not UTF-8 is printed Go-quoted ("…"
with \n, \x00 and the like), so a value starting with " is always quoted.
With --json each line is a JSON object instead.

After each line, watch records the change's revision in state.json in the
home folder (one per PREFIX), and the next watch of PREFIX resumes after
it: every change since, deletes included, in order. Without a recorded
revision, watch starts with the current value of every record, then the
changes. --all prints every change the bucket still holds from the start
(it keeps the last 10 revisions of each key), --from REV those after
REV. Runs until interrupted.

With --updates it also listens for new releases of latch for this
platform (and asks for the latest as it starts): a release newer than
this one, signed with the release key the device trusts, is said on
standard error; with --yes as well, the watch updates this binary as
latch client update does and starts it again in its place, resuming
where it was.`,
		Flags: deviceFlags(
			&cli.BoolFlag{Name: "all", Usage: "start from the first change the bucket holds"},
			&cli.Uint64Flag{Name: "from", Usage: "start after this revision"},
			&cli.BoolFlag{Name: "json", Usage: "print each change as a JSON object on its own line"},
			&cli.BoolFlag{Name: "updates", Usage: "say when a newer release of latch is published for this platform"},
			&cli.BoolFlag{Name: "yes", Usage: "with --updates: install it and start again, without asking"},
		),
		Action: func(c *cli.Context) error {
			prefix, err := prefixArg(c)
			if err != nil {
				return err
			}
			if c.IsSet("all") && c.IsSet("from") {
				return usagef("give --all or --from, not both")
			}
			d, err := e.device(c)
			if err != nil {
				return err
			}
			var opts []client.WatchOption
			switch {
			case c.Bool("all"):
				opts = append(opts, client.ResumeFrom(0))
			case c.IsSet("from"):
				opts = append(opts, client.ResumeFrom(c.Uint64("from")))
			default:
				rev, ok, err := d.LastApplied(prefix)
				if err != nil {
					return err
				}
				if ok {
					opts = append(opts, client.ResumeFrom(rev))
				}
			}
			r, err := e.records(c, d, slog.LevelInfo)
			if err != nil {
				return err
			}
			defer r.Close()
			if c.Bool("yes") && !c.Bool("updates") {
				return usagef("--yes goes with --updates")
			}
			ch, err := r.Watch(c.Context, prefix, opts...)
			if err != nil {
				return err
			}
			var updates <-chan client.Update
			if c.Bool("updates") {
				if updates, err = watchUpdates(c.Context, e, d, r.Conn()); err != nil {
					return err
				}
			}
			for ch != nil {
				select {
				case chg, ok := <-ch:
					if !ok {
						ch = nil
						continue
					}
					if err := printChange(e.stdout, chg, c.Bool("json")); err != nil {
						return err
					}
					if err := d.SetApplied(prefix, chg.Revision); err != nil {
						return fmt.Errorf("record how far the watch got: %v", err)
					}
				case u := <-updates:
					fmt.Fprintf(e.stderr, "latch %s is available (this is %s); latch client update installs it\n", u.Manifest.Version, version)
					if !c.Bool("yes") {
						continue
					}
					exe, err := thisBinary()
					if err == nil {
						err = d.Install(c.Context, u, exe)
					}
					if err != nil {
						fmt.Fprintf(e.stderr, "update to %s: %v\n", u.Manifest.Version, err)
						continue
					}
					fmt.Fprintf(e.stderr, "updated %s from %s to %s; starting it again\n", exe, version, u.Manifest.Version)
					r.Close()
					return reexec(exe)
				}
			}
			if c.Context.Err() != nil {
				return nil // interrupted: the way a watch ends
			}
			if err := r.Err(); err != nil {
				return err
			}
			return errors.New("the watch ended: the connection to the server closed")
		},
	}
}

func printChange(w io.Writer, c client.Change, asJSON bool) error {
	if asJSON {
		out := recordJSON{Op: string(c.Op), Key: c.Key, Revision: c.Revision, Created: c.Time.UTC()}
		if c.Op == client.OpPut {
			out.setValue(c.Value)
		}
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	var err error
	if c.Op == client.OpDelete {
		_, err = fmt.Fprintf(w, "del %s %d\n", c.Key, c.Revision)
	} else {
		_, err = fmt.Fprintf(w, "put %s %d %s\n", c.Key, c.Revision, lineValue(c.Value))
	}
	return err
}

func clientRenewCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "renew",
		Usage: "get a fresh JWT for this device's key before the one it has expires",
		Description: `Asks the latch server for a new JWT for the same key, proving it holds
the key, and writes it into the creds. The other client commands do this
by themselves when less than a third of the JWT's lifetime is left; a
revoked device is refused and must enroll again.`,
		Flags: deviceFlags(),
		Action: func(c *cli.Context) error {
			if _, err := args(c); err != nil {
				return err
			}
			d, err := e.device(c)
			if err != nil {
				return err
			}
			if err := d.Renew(c.Context); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "renewed %s; its JWT expires %s\n", d.CredsPath, expiry(d.Expires))
			return nil
		},
	}
}

// expiry says when a JWT expires, and how soon.
func expiry(t *time.Time) string {
	if t == nil {
		return "never"
	}
	left := time.Until(*t)
	if left <= 0 {
		return when(*t) + " (expired)"
	}
	if left >= 48*time.Hour {
		return fmt.Sprintf("%s (in %d days)", when(*t), int(left/(24*time.Hour)))
	}
	return when(*t) + " (in " + left.Round(time.Second).String() + ")"
}

func clientStatusCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show this device's server, account, key fingerprint, JWT expiry, whether it connects, and how full the records are; exits 1 when it cannot connect",
		Flags: deviceFlags(jsonFlag()),
		Action: func(c *cli.Context) (retErr error) {
			if _, err := args(c); err != nil {
				return err
			}
			d, err := e.device(c)
			if err != nil {
				return err
			}
			connected, detail := "yes", ""
			ctx, cancel := context.WithTimeout(c.Context, 5*time.Second)
			defer cancel()
			var usage *client.Usage
			nc, err := d.Connect(nats.NoReconnect(), nats.Timeout(5*time.Second))
			if err == nil {
				detail = nc.ConnectedUrlRedacted()
				if err = nc.FlushWithContext(ctx); err == nil {
					if js, jerr := jetstream.New(nc); jerr == nil {
						if u, uerr := client.StreamUsage(ctx, js); uerr == nil {
							usage = &u
						}
					}
					nc.Close()
				}
			}
			if errors.Is(err, nats.ErrMaxAccountConnectionsExceeded) && d.URL != "" {
				// A disabled account allows no connection, and the server
				// says only that the limit is reached; a renewal says why.
				if rerr := d.Renew(ctx); errors.Is(rerr, client.ErrDisabled) {
					err = client.ErrDisabled
				}
			}
			if err != nil {
				connected, detail = "no", err.Error()
			}
			// Not connected is a failure, after the status is printed.
			defer func() {
				if connected == "no" && retErr == nil {
					retErr = fmt.Errorf("not connected: %s", detail)
				}
			}()
			if c.Bool("json") {
				return printJSON(e.stdout, map[string]any{
					"url": d.URL, "servers": d.Servers, "tls_first": d.TLSFirst, "account": d.Account, "person": d.Person, "name": d.Name,
					"public_key": d.PublicKey, "fingerprint": client.Fingerprint(d.PublicKey),
					"creds": d.CredsPath, "expires": d.Expires, "connected": connected == "yes", "detail": detail,
					"usage": usage,
				})
			}
			records := "-"
			if usage != nil {
				records = recordsUsage(&accounts.Usage{Records: usage.Used, Quota: usage.Quota})
			}
			return fields(e.stdout,
				"server", d.URL,
				"nats", natsLine(d),
				"account", personOf(d),
				"device", d.Name,
				"key", d.PublicKey,
				"fingerprint", client.Fingerprint(d.PublicKey),
				"creds", d.CredsPath,
				"expires", expiry(d.Expires),
				"connected", connected+" ("+detail+")",
				"records", records,
			)
		},
	}
}

// personOf names the device's person: "alice's account (A…)", or the
// account key alone for an enrollment made before the server said whose.
func personOf(d *client.Device) string {
	if d.Person == "" {
		return "account " + d.Account
	}
	return oneLine(d.Person) + "'s account (" + d.Account + ")"
}

// natsLine is the device's NATS servers as `client status` shows them,
// saying when they are reached with the TLS handshake first.
func natsLine(d *client.Device) string {
	line := strings.Join(d.Servers, ", ")
	if d.TLSFirst {
		line += " (TLS handshake first)"
	}
	return line
}

func clientUpdateCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "update",
		Usage: "replace this latch binary with the newest release latch offers for this platform",
		Description: `Asks the latch server, with this device's creds, for the newest client
release for this os and arch; checks its manifest's signature with the
release key the device learned when it enrolled, and refuses a release
that is not newer than this one (no rollback) or was withdrawn. It then
downloads the file from the server's web, checks its size and SHA-256
against the signed manifest as it writes it beside this binary, and
renames it into place in one step. Whatever fails, this binary stays as
it was. --check only says whether there is an update (exit 0 either way).`,
		Flags: deviceFlags(
			&cli.BoolFlag{Name: "check", Usage: "only say whether a newer release is there"},
			&cli.BoolFlag{Name: "yes", Usage: "update without asking"},
		),
		Action: func(c *cli.Context) error {
			if _, err := args(c); err != nil {
				return err
			}
			d, err := e.device(c)
			if err != nil {
				return err
			}
			nc, err := d.Connect()
			if err != nil {
				return fmt.Errorf("connect to %s: %w", strings.Join(d.Servers, ", "), err)
			}
			defer nc.Close()
			ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
			defer cancel()
			u, err := d.LatestRelease(ctx, nc, version)
			if errors.Is(err, client.ErrUpToDate) {
				fmt.Fprintf(e.stdout, "latch %s is up to date (%v)\n", version, err)
				return nil
			}
			if err != nil {
				return err
			}
			m := u.Manifest
			if c.Bool("check") {
				fmt.Fprintf(e.stdout, "latch %s is available (this is %s): %d bytes, sha256 %s\n", m.Version, version, m.Size, m.SHA256)
				if m.Notes != "" {
					fmt.Fprintln(e.stdout, m.Notes)
				}
				return nil
			}
			if !c.Bool("yes") {
				f, ok := e.stdin.(*os.File)
				if !ok || !isTerminal(f) {
					return usagef("latch %s is available (this is %s); add --yes to update without a terminal to ask on", m.Version, version)
				}
				fmt.Fprintf(e.stderr, "Update latch %s to %s? [y/N] ", version, m.Version)
				var answer string
				fmt.Fscanln(e.stdin, &answer)
				if answer != "y" && answer != "Y" && answer != "yes" {
					return errors.New("not updated")
				}
			}
			exe, err := thisBinary()
			if err != nil {
				return err
			}
			if err := d.Install(c.Context, u, exe); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "updated %s from %s to %s\n", exe, version, m.Version)
			return nil
		},
	}
}

// watchUpdates hears of releases for this platform on nc, the device's
// connection, and asks for the latest once: it sends each newer release
// that checks out, and says on stderr why one was refused.
func watchUpdates(ctx context.Context, e *env, d *client.Device, nc *nats.Conn) (<-chan client.Update, error) {
	out := make(chan client.Update, 4)
	offer := func(u client.Update) {
		select {
		case out <- u:
		default: // a slow reader gets the next one
		}
	}
	_, err := nc.Subscribe(accounts.ReleaseSubject(runtime.GOOS, runtime.GOARCH), func(m *nats.Msg) {
		var a accounts.ReleaseAnnouncement
		if err := json.Unmarshal(m.Data, &a); err != nil || a.Yanked || a.Release.Kind != accounts.ReleaseClient {
			return
		}
		man, err := d.CheckRelease(a.Release, version)
		if errors.Is(err, client.ErrUpToDate) {
			return
		}
		if err != nil {
			fmt.Fprintf(e.stderr, "a release was announced and refused: %v\n", err)
			return
		}
		offer(client.Update{Release: a.Release, Manifest: man, Running: version})
	})
	if err != nil {
		return nil, fmt.Errorf("listen for releases: %w", err)
	}
	go func() {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		u, err := d.LatestRelease(actx, nc, version)
		switch {
		case err == nil:
			offer(u)
		case !errors.Is(err, client.ErrUpToDate) && ctx.Err() == nil:
			fmt.Fprintf(e.stderr, "ask for the latest release: %v\n", err)
		}
	}()
	return out, nil
}

// thisBinary is the file this program runs from, links resolved: what an
// update replaces.
func thisBinary() (string, error) {
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return "", fmt.Errorf("find this binary: %w", err)
	}
	return exe, nil
}
