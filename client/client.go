// Package client is the device side of latch: it enrolls a device with a
// key the device makes itself (RFC 8628's device flow against the server's
// /api/enroll API), keeps the device's creds in a home folder, opens them
// again to read, write and watch the person's records, and renews the
// device's JWT before it expires.
//
// A device's home folder (LATCH_CLIENT_HOME, by default latch under the
// user's configuration folder) holds:
//
//	device.creds  the user JWT and the device's nkey seed, mode 0600
//	client.json   the server's URL, its NATS URLs, the account, the device's name, key and expiry
//	state.json    how far the device's watches got (SetApplied)
//
// The seed is made here and never leaves the machine: the server only ever
// sees the public key and a signature proving the device holds the seed.
//
// A program that keeps a copy of the records in sync, resuming where it
// stopped and so seeing every change made while it was away:
//
//	func main() {
//		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
//		defer stop()
//		home, _ := client.DefaultHome(os.Getenv)
//		dev, err := client.Open(home) // enrolled before with `latch client enroll`
//		if err != nil {
//			log.Fatal(err)
//		}
//		recs, err := dev.Records(ctx) // reconnects and renews on its own
//		if err != nil {
//			log.Fatal(err)
//		}
//		defer recs.Close()
//		var opts []client.WatchOption
//		if rev, ok, _ := dev.LastApplied(""); ok {
//			opts = append(opts, client.ResumeFrom(rev))
//		}
//		changes, err := recs.Watch(ctx, "", opts...)
//		if err != nil {
//			log.Fatal(err)
//		}
//		for c := range changes {
//			fmt.Println(c.Op, c.Key, c.Revision, string(c.Value)) // apply it
//			dev.SetApplied("", c.Revision)
//		}
//		if err := recs.Err(); err != nil {
//			log.Fatal(err) // revoked, say
//		}
//	}
//
// Writes are recs.Put(ctx, key, value), recs.Update(ctx, key, value,
// revision) to compare and set, and recs.Delete(ctx, key).
package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/latch-dev/latch/keys"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
)

// Names of the files in a device's home folder.
const (
	CredsFile  = "device.creds"
	ConfigFile = "client.json"
)

// HomeEnv names the environment variable that sets the home folder.
const HomeEnv = "LATCH_CLIENT_HOME"

// DefaultHome is the home folder: $LATCH_CLIENT_HOME as getenv reads it,
// else latch in the user's configuration folder (os.UserConfigDir).
func DefaultHome(getenv func(string) string) (string, error) {
	if getenv != nil {
		if h := getenv(HomeEnv); h != "" {
			return h, nil
		}
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no home folder for latch: %v; set %s or use --home", err, HomeEnv)
	}
	return filepath.Join(dir, "latch"), nil
}

// Device is an enrolled device as its home folder describes it.
type Device struct {
	// Home is the folder the device lives in; CredsPath its creds file.
	Home      string `json:"-"`
	CredsPath string `json:"-"`

	URL     string   `json:"url"`     // the latch server's web address
	Servers []string `json:"servers"` // NATS URLs to connect to
	// TLSFirst connects to Servers with the TLS handshake first: they are
	// a proxy that ends TLS from the first byte (latch on fly.io).
	TLSFirst bool `json:"tls_first,omitempty"`
	// ReleaseKey is the key that signs releases, learned at enrollment:
	// the only one the device trusts for an update.
	ReleaseKey string     `json:"release_key,omitempty"`
	Account    string     `json:"account"`          // the person account's public key (A…)
	Person     string     `json:"person,omitempty"` // the person's name, the account's name
	Name       string     `json:"name"`
	PublicKey  string     `json:"public_key"` // the device's user key (U…)
	Expires    *time.Time `json:"expires"`    // when the JWT expires; nil is never
	// CAFile is the CA that signed the server's certificate, when the
	// system does not trust it; empty is the system's.
	CAFile string `json:"ca,omitempty"`
	// CertFile and KeyFile are a client certificate, for a server that
	// asks NATS clients for one (latch serve --tls-ca).
	CertFile string `json:"cert,omitempty"`
	KeyFile  string `json:"key,omitempty"`

	// HTTPClient makes Renew's requests; nil is one with a 30s timeout.
	HTTPClient *http.Client `json:"-"`
}

// ErrNotEnrolled is returned by Open for a home without an enrollment.
var ErrNotEnrolled = errors.New("this device is not enrolled")

// Open reads the enrolled device in home: client.json and the creds,
// which must be readable by their owner only and belong together.
func Open(home string) (*Device, error) {
	b, err := os.ReadFile(filepath.Join(home, ConfigFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: no %s in %s; run `latch client enroll --url URL` first", ErrNotEnrolled, ConfigFile, home)
	}
	if err != nil {
		return nil, err
	}
	d := &Device{Home: home, CredsPath: filepath.Join(home, CredsFile)}
	if err := json.Unmarshal(b, d); err != nil {
		return nil, fmt.Errorf("%s: %v", filepath.Join(home, ConfigFile), err)
	}
	c, err := keys.ReadCreds(d.CredsPath)
	if err != nil {
		return nil, err
	}
	uc, err := jwt.DecodeUserClaims(c.JWT)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", d.CredsPath, err)
	}
	if uc.Subject != d.PublicKey {
		return nil, fmt.Errorf("%s is for key %s but %s says the device is %s; enroll again with --force",
			d.CredsPath, uc.Subject, ConfigFile, d.PublicKey)
	}
	return d, nil
}

// OpenCreds is Open with another creds file, as `latch client --creds`
// gives: the device is the one the creds are for, and client.json in
// home, when there is one, still says where the server is. With creds ""
// it is Open.
func OpenCreds(home, creds string) (*Device, error) {
	if creds == "" {
		return Open(home)
	}
	c, err := keys.ReadCreds(creds)
	if err != nil {
		return nil, err
	}
	wipe(c.Seed)
	uc, err := jwt.DecodeUserClaims(c.JWT)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", creds, err)
	}
	d := &Device{Home: home}
	b, err := os.ReadFile(filepath.Join(home, ConfigFile))
	switch {
	case err == nil:
		if err := json.Unmarshal(b, d); err != nil {
			return nil, fmt.Errorf("%s: %v", filepath.Join(home, ConfigFile), err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	d.CredsPath, d.PublicKey, d.Name, d.Account = creds, uc.Subject, uc.Name, uc.IssuerAccount
	if d.Account == "" {
		d.Account = uc.Issuer
	}
	d.Expires = nil
	if uc.Expires != 0 {
		t := time.Unix(uc.Expires, 0).UTC()
		d.Expires = &t
	}
	return d, nil
}

// Connect connects to the device's NATS servers with its creds.
func (d *Device) Connect(opts ...nats.Option) (*nats.Conn, error) {
	if len(d.Servers) == 0 {
		return nil, fmt.Errorf("%s lists no NATS servers; enroll again with --force", filepath.Join(d.Home, ConfigFile))
	}
	opts = append(append([]nats.Option{nats.UserCredentials(d.CredsPath), nats.Name("latch client " + d.Name)}, d.natsTLS()...), opts...)
	return nats.Connect(strings.Join(d.Servers, ","), opts...)
}

// enrolled reports whether home holds an enrollment, whole or in part.
func enrolled(home string) (bool, error) {
	for _, name := range []string{CredsFile, ConfigFile} {
		_, err := os.Lstat(filepath.Join(home, name))
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return false, err
		}
	}
	return false, nil
}

// prepareHome makes home (0700) if need be and checks that an enrollment
// can be written there, so a device never learns its JWT, which the
// server hands out once, only to find it cannot keep it.
func prepareHome(home string, force bool) error {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return fmt.Errorf("home folder: %w", err)
	}
	if !force {
		ok, err := enrolled(home)
		if err != nil {
			return err
		}
		if ok {
			return fmt.Errorf("%s holds an enrollment already; use --force to replace it (the old device stays enrolled until revoked), or another --home", home)
		}
	}
	f, err := os.CreateTemp(home, ".probe-*")
	if err != nil {
		return fmt.Errorf("cannot write in %s: %w", home, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// save writes the creds, then client.json, both mode 0600. Without force
// an existing file is never replaced.
func (d *Device) save(creds []byte, force bool) error {
	cfg, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	write := keys.WriteFileNew
	if force {
		write = keys.WriteFileReplace
	}
	if err := write(d.CredsPath, creds); err != nil {
		return err
	}
	return write(filepath.Join(d.Home, ConfigFile), append(cfg, '\n'))
}

// Fingerprint is the short form of a public key people compare by eye:
// its last eight characters in two groups. The web GUI shows the same
// (views.Fingerprint).
func Fingerprint(pub string) string {
	if len(pub) < 8 {
		return pub
	}
	f := pub[len(pub)-8:]
	return f[:4] + " " + f[4:]
}
