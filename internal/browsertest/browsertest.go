// Package browsertest drives headless Chromium with a virtual passkey
// authenticator, for latch's tests of the web GUI as a person uses it: the
// web package's TestBrowser against one server, the server package's
// cluster test against three nodes behind one address. It knows nothing of
// latch's pages; the tests say what to click and what to wait for.
package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	cdpwebauthn "github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
)

// ScreenshotsEnv names the folder a browser leaves a picture of each page
// in: `make screenshots` sets it to docs/screenshots, for the README.
// Unset, the pictures go to a temporary folder, and a test run leaves the
// working tree as it was.
const ScreenshotsEnv = "LATCH_SCREENSHOTS"

// Zone is the browser's time zone: far from UTC, and off the hour.
const Zone = "Asia/Kolkata"

// StepTimeout bounds one browser action; generous, as a loaded CI machine
// can be slow. It is a limit, not an expectation.
const StepTimeout = 20 * time.Second

// SSEOpen is a JavaScript expression, true once the htmx SSE extension's
// stream of the page is open. The extension keeps its EventSource in
// htmx's data of the element.
const SSEOpen = `document.querySelector("[sse-connect]")?.["htmx-internal-data"]?.sseEventSource?.readyState === EventSource.OPEN`

// FindChromium returns the Chromium to drive. Without one the test fails
// in CI and says why it skips elsewhere.
func FindChromium(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not installed; .ci/run installs it with apt-get")
	}
	t.Skip("SKIP: the browser test needs Chromium (Debian: apt-get install chromium); .ci/run installs it, and in CI its absence fails the test")
	return ""
}

// Browser is one headless Chromium tab with a virtual authenticator.
type Browser struct {
	// Shots is the folder Screenshot writes to: ScreenshotsEnv's, or a
	// temporary one. A test whose pictures are not the README's sets it
	// to a folder of its own.
	Shots string

	ctx  context.Context
	auth cdpwebauthn.AuthenticatorID

	mu         sync.Mutex
	dialogs    []page.EventJavascriptDialogOpening
	pageErrors []string // uncaught script errors and CSP refusals
}

// Start starts Chromium with a fixed window size, so screenshots look the
// same on every machine, and a CTAP 2.1 platform authenticator that
// verifies the user and answers every ceremony at once. The browser stops
// when the test ends.
func Start(t testing.TB, chromium string) *Browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.WindowSize(1200, 800),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		wg.Wait()
	})
	b := &Browser{ctx: ctx, Shots: os.Getenv(ScreenshotsEnv)}
	if b.Shots == "" {
		b.Shots = t.TempDir()
	}

	// The first action starts the browser, and the browser lives as long
	// as the context of that action: so it gets the tab's own context.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1200, 800)); err != nil {
		t.Fatalf("start %s: %v", chromium, err)
	}
	start, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := chromedp.Do(start, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		// A reader far from UTC: pages show times in the reader's zone.
		if _, err := cdp.Call(ctx, tg, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: Zone}); err != nil {
			return err
		}
		if _, err := cdp.Call(ctx, tg, cdpwebauthn.Enable, cdpwebauthn.EnableParams{}); err != nil {
			return err
		}
		res, err := cdp.Call(ctx, tg, cdpwebauthn.AddVirtualAuthenticator, cdpwebauthn.AddVirtualAuthenticatorParams{
			Options: &cdpwebauthn.VirtualAuthenticatorOptions{
				Protocol: cdpwebauthn.AuthenticatorProtocolCtap2, Ctap2version: cdpwebauthn.Ctap2versionCtap21,
				Transport:      cdpwebauthn.AuthenticatorTransportInternal,
				HasResidentKey: true, HasUserVerification: true,
				// Both have no omitempty: left false, every ceremony hangs.
				IsUserVerified: true, AutomaticPresenceSimulation: true,
			},
		})
		b.auth = res.AuthenticatorID
		return err
	}))
	if err != nil {
		t.Fatalf("start chromium with a virtual authenticator: %v", err)
	}

	// A dialog blocks the page and the click that opened it, so another
	// goroutine accepts each one; the test reads which ones opened.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	wg.Go(func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.dialogs = append(b.dialogs, ev)
			b.mu.Unlock()
			wg.Go(func() {
				// An error here means the tab is gone; the waiting step says so.
				chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
			})
		}
	})
	// The console tells of script errors, of htmx's errors (a swap whose
	// target is missing, say) and of what the Content-Security-Policy
	// refused; with -v it is shown as it comes.
	console := chromedp.Console(ctx)
	wg.Go(func() {
		for m, err := range console {
			if err != nil {
				return
			}
			if testing.Verbose() {
				fmt.Fprintf(os.Stderr, "chromium console %s: %s\n", m.Type, m.Text)
			}
			if m.Type == chromedp.ConsoleException || strings.Contains(m.Text, "Content Security Policy") ||
				strings.HasPrefix(m.Text, "htmx:") {
				b.mu.Lock()
				b.pageErrors = append(b.pageErrors, m.Text)
				b.mu.Unlock()
			}
		}
	})
	return b
}

// Do runs browser steps, failing the test with what was being done.
func (b *Browser) Do(t testing.TB, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, StepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v (page %s)", what, err, b.Path())
	}
}

// Value runs one browser action that returns a value.
func Value[T any](t testing.TB, b *Browser, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, StepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v (page %s)", what, err, b.Path())
	}
	return v
}

// Path is the path of the page shown, for messages.
func (b *Browser) Path() string {
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "?"
	}
	if u, err := url.Parse(loc); err == nil {
		return u.Path
	}
	return loc
}

// WaitFor evaluates the JavaScript expression cond until it is true.
func (b *Browser) WaitFor(t testing.TB, what, cond string) {
	t.Helper()
	if err := b.Poll(cond); err != nil {
		t.Fatalf("waited %v for %s; page %s, body: %q (%v)", StepTimeout, what, b.Path(), b.BodyText(), err)
	}
}

// Poll evaluates cond until it is true, for StepTimeout at most. It polls
// from Go, so it survives the page navigating meanwhile.
func (b *Browser) Poll(cond string) error {
	deadline := time.Now().Add(StepTimeout)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond))
		cancel()
		if err == nil && ok {
			return nil
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("last error: %v", last)
}

// WaitPath waits until the page shown has the given path and has loaded.
func (b *Browser) WaitPath(t testing.TB, path string) {
	t.Helper()
	b.WaitFor(t, "page "+path, fmt.Sprintf(`location.pathname === %s && document.readyState === "complete"`, JSString(path)))
}

// BodyText is what the page says, cut short, for failure messages.
func (b *Browser) BodyText() string {
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		return "(" + err.Error() + ")"
	}
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 600 {
		s = s[:600] + "…"
	}
	return s
}

// DialogCount is how many JavaScript dialogs have opened so far.
func (b *Browser) DialogCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.dialogs)
}

// Dialog is the i-th JavaScript dialog opened, counting from 0.
func (b *Browser) Dialog(i int) page.EventJavascriptDialogOpening {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dialogs[i]
}

// PageErrors are what the pages' consoles said went wrong so far: uncaught
// script errors, htmx's errors and the Content-Security-Policy's refusals.
// A test ends by failing on each.
func (b *Browser) PageErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.pageErrors...)
}

// Credentials are the passkeys the virtual authenticator holds.
func (b *Browser) Credentials(t testing.TB) []*cdpwebauthn.Credential {
	t.Helper()
	res := Value(t, b, "list the authenticator's credentials", func(ctx context.Context, tg *chromedp.Target) (cdpwebauthn.GetCredentialsResult, error) {
		return cdp.Call(ctx, tg, cdpwebauthn.GetCredentials, cdpwebauthn.GetCredentialsParams{AuthenticatorID: b.auth})
	})
	return res.Credentials
}

// Cookies are the browser's cookies for the address addr, as a person
// could copy them out of it.
func (b *Browser) Cookies(t testing.TB, addr string) []*network.Cookie {
	t.Helper()
	res := Value(t, b, "read the cookies of "+addr, func(ctx context.Context, tg *chromedp.Target) (network.GetCookiesResult, error) {
		return cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{addr}})
	})
	return res.Cookies
}

// RemoveCredential takes a passkey out of the virtual authenticator, as a
// person who lost the phone that held it.
func (b *Browser) RemoveCredential(t testing.TB, id []byte) {
	t.Helper()
	b.Do(t, "remove a passkey from the authenticator", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, cdpwebauthn.RemoveCredential, cdpwebauthn.RemoveCredentialParams{AuthenticatorID: b.auth, CredentialID: id})
		return err
	}))
}

// Screenshot saves the page shown as <name>.png in the Shots folder.
func (b *Browser) Screenshot(t testing.TB, name string) {
	t.Helper()
	png := Value(t, b, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.MkdirAll(b.Shots, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.Shots, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// ButtonNamed selects a <button> by its text.
func ButtonNamed(text string) chromedp.Search {
	return chromedp.Search(fmt.Sprintf(`//button[normalize-space(.)=%s]`, XPathString(text)))
}

// ControlNamed selects a <button> or an <a> by its text, for a control
// that may be a link or a form.
func ControlNamed(text string) chromedp.Search {
	s := XPathString(text)
	return chromedp.Search(fmt.Sprintf(`//button[normalize-space(.)=%[1]s] | //a[normalize-space(.)=%[1]s]`, s))
}

// XPathString quotes s for XPath 1.0, which has no escapes.
func XPathString(s string) string {
	if !strings.Contains(s, `"`) {
		return `"` + s + `"`
	}
	return `'` + s + `'`
}

// JSString quotes a Go string as a JavaScript string literal.
func JSString(s string) string {
	j, _ := json.Marshal(s)
	return string(j)
}

// RowJS is a JavaScript expression for the table row that mentions text,
// or undefined.
func RowJS(text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll("main tr")].find(r => r.textContent.includes(%s))`, JSString(text))
}
