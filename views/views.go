// Package views renders latch's pages and fragments with typed templ
// components, and serves the static files they need (htmx, its SSE
// extension, the passkey script, the style sheet) from the binary itself.
//
// Every page is a value with a Render method, so a handler builds, say, a
// DevicesPage from what it looked up and renders it; nothing untyped passes
// between handlers and templates. templ escapes every string it prints.
package views

import (
	"context"
	"embed"
	"io/fs"
	"strings"
	"time"
)

//go:generate go tool templ generate -path .

//go:embed static
var static embed.FS

// Static is the folder of static files, served under /static/.
func Static() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the folder is embedded above; it is always there
	}
	return sub
}

// Viewer is who is looking at a page: nobody (zero value) or a person.
type Viewer struct {
	Name        string // person name; "" when logged out
	DisplayName string
	Admin       bool
}

// LoggedIn reports whether a person is looking.
func (v Viewer) LoggedIn() bool { return v.Name != "" }

// Shown is the name shown for the viewer.
func (v Viewer) Shown() string {
	if v.DisplayName != "" {
		return v.DisplayName
	}
	return v.Name
}

// Frame is what every full page shares: who is looking and which
// navigation entry is current.
type Frame struct {
	Viewer Viewer
	Active string // "devices", "enroll", "records", "passkeys", "downloads", "admin"
	Title  string
}

// when formats a time for a table cell, in UTC.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// whenPtr formats an optional time, with none for nil.
func whenPtr(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return when(*t)
}

// Fingerprint is the short form of a public key people compare by eye:
// its last eight characters in two groups.
func Fingerprint(pub string) string {
	if len(pub) < 8 {
		return pub
	}
	f := pub[len(pub)-8:]
	return f[:4] + " " + f[4:]
}

// Site is what every page says of the server it is on.
type Site struct {
	// Name is the deployment's name, the operator's (`latch init --name`);
	// "latch" or empty says nothing more.
	Name    string
	Version string
	// Insecure is a server whose public address is plain http on another
	// host than localhost: browsers refuse passkeys there.
	Insecure bool
}

type siteKey struct{}

// WithSite returns a context whose pages say site.
func WithSite(ctx context.Context, site Site) context.Context {
	return context.WithValue(ctx, siteKey{}, site)
}

func siteOf(ctx context.Context) Site {
	s, _ := ctx.Value(siteKey{}).(Site)
	return s
}

// deployment is the deployment's name when it says more than "latch".
func deployment(ctx context.Context) string {
	if n := siteOf(ctx).Name; n != "latch" {
		return n
	}
	return ""
}

// pageTitle is a page's title with the product's and deployment's names.
func pageTitle(ctx context.Context, title string) string {
	return strings.Join(nonEmpty(title, "latch", deployment(ctx)), " · ")
}

// footerText is "latch VERSION · DEPLOYMENT", as far as they are known.
func footerText(ctx context.Context) string {
	return strings.Join(nonEmpty(strings.TrimSpace("latch "+siteOf(ctx).Version), deployment(ctx)), " · ")
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// The event streams of live pages, apart from the pages' own paths (a
// record may be named "events").
const (
	EventsDevicesPath = "/events/devices"
	EventsRecordsPath = "/events/records"
)
