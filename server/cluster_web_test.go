package server_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/latch-dev/latch/accounts"
	latchclient "github.com/latch-dev/latch/client"
	"github.com/latch-dev/latch/internal/browsertest"
	"github.com/latch-dev/latch/server"
	"github.com/nats-io/nats.go"
)

// The nodes of a test cluster, by index, for the front door's routes.
const (
	n1 = iota
	n2
	n3
)

// frontDoor is the one address people reach a deployment at, as a load
// balancer in front of its nodes gives it: every node's public URL. The
// test says which node serves each request, by its method and path or
// else the node of the moment, and the door keeps who served what, so
// that a step can show its requests really went where it meant them to.
type frontDoor struct {
	URL string // http://localhost:PORT

	mu     sync.Mutex
	nodes  []*url.URL     // the nodes' own HTTP addresses
	to     int            // the node of the moment
	routes map[string]int // "POST /login/begin" → node
	served []servedBy
}

// servedBy is one request through the door.
type servedBy struct {
	route  string // "POST /login/begin"
	node   int
	status int
}

// newFrontDoor listens on a loopback port. Its address is a name, not an
// IP address: a passkey's relying party must be a domain.
func newFrontDoor(t testing.TB) *frontDoor {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &frontDoor{URL: fmt.Sprintf("http://localhost:%d", l.Addr().(*net.TCPAddr).Port), routes: map[string]int{}}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(d.pick(pr.In))
			// As a load balancer does: the node sees the public host.
			pr.Out.Host = pr.In.Host
		},
		ModifyResponse: func(resp *http.Response) error {
			d.record(resp.Request, resp.StatusCode)
			return nil
		},
		ErrorLog: log.New(io.Discard, "", 0), // a node stopping under a live stream at the end
	}
	hs := &http.Server{Handler: proxy, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(l)
	t.Cleanup(func() { hs.Close() })
	return d
}

// open lets the door in to the nodes, once they listen.
func (d *frontDoor) open(c *testCluster) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range c.nodes {
		u, err := url.Parse(c.nodes[i].Addrs().HTTP)
		if err != nil {
			c.t.Fatal(err)
		}
		d.nodes = append(d.nodes, u)
	}
}

// send makes node i the node of the moment, and forgets every route.
func (d *frontDoor) send(i int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.to = i
	clear(d.routes)
}

// route sends the requests of route, "METHOD /path", to node i.
func (d *frontDoor) route(route string, i int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.routes[route] = i
}

func (d *frontDoor) pick(r *http.Request) *url.URL {
	d.mu.Lock()
	defer d.mu.Unlock()
	i, ok := d.routes[r.Method+" "+r.URL.Path]
	if !ok {
		i = d.to
	}
	return d.nodes[i]
}

func (d *frontDoor) record(r *http.Request, status int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, u := range d.nodes {
		if u.Host == r.URL.Host {
			d.served = append(d.served, servedBy{route: r.Method + " " + r.URL.Path, node: i, status: status})
		}
	}
}

// wantServed fails unless the last request whose "METHOD /path" matches
// pattern (path.Match's) was answered by node i, without an error.
func (d *frontDoor) wantServed(t testing.TB, pattern string, i int) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for j := len(d.served) - 1; j >= 0; j-- {
		s := d.served[j]
		if ok, _ := path.Match(pattern, s.route); !ok {
			continue
		}
		if s.node != i || s.status >= 400 {
			t.Errorf("%s: answered %d by node %d, want node %d without an error", s.route, s.status, s.node+1, i+1)
		}
		return
	}
	t.Errorf("no request %s went through the front door", pattern)
}

// TestClusterBrowser: a person in a browser uses a deployment of three
// nodes behind one address, and whichever node answers a request, it
// works. The front door sends each request where the step says, so that
// every hand-over a load balancer could make is made: a passkey ceremony
// begun on one node ends on another, a session made on one is good on
// the others, an enrollment is started, approved and collected on three
// nodes, and a page open on one node shows at once what another node did.
// Each step is a subtest, needing the ones before it.
func TestClusterBrowser(t *testing.T) {
	chromium := browsertest.FindChromium(t)
	door := newFrontDoor(t)
	links := setupLinks{got: map[int]string{}}
	c := startClusterOf(t, 0, func(i int, cfg *server.Config) {
		cfg.PublicURL = door.URL
		cfg.SetupLink = links.add(i)
	})
	door.open(c)
	b := browsertest.Start(t, chromium)
	f := &clusterFlow{c: c, door: door, b: b, top: t, setupLink: links.first(t)}

	for _, step := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"SetupAcrossNodes", f.setup},
		{"SessionOnEveryNode", f.sessionOnEveryNode},
		{"LogOutAndInAcrossNodes", f.logOutAndIn},
		{"EnrollOnThreeNodes", f.enroll},
		{"LiveAcrossNodes", f.liveAcrossNodes},
	} {
		if !t.Run(step.name, step.run) {
			t.Fatalf("step %s failed; the steps after it need it", step.name)
		}
	}
	for _, e := range b.PageErrors() {
		t.Errorf("the page's console: %s", e)
	}
}

// setupLinks are the setup links the nodes made, by node.
type setupLinks struct {
	mu  sync.Mutex
	got map[int]string
}

func (l *setupLinks) add(node int) func(link string, ok bool) {
	return func(link string, ok bool) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if ok {
			l.got[node] = link
		}
	}
}

// first is node 1's setup link, once each node's link has been shown to
// open the setup page: every node of a cluster prints its own, and one
// node's start does not end another's.
func (l *setupLinks) first(t testing.TB) string {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.got) != 3 {
		t.Fatalf("the nodes told %d setup links, want one each", len(l.got))
	}
	for node, link := range l.got {
		resp, err := http.Get(strings.Replace(link, "localhost", "127.0.0.1", 1))
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), `id="display_name"`) {
			t.Fatalf("node %d's setup link does not open the setup page: %d", node+1, resp.StatusCode)
		}
	}
	return l.got[n1]
}

// clusterFlow is the state the steps of TestClusterBrowser hand on.
type clusterFlow struct {
	c         *testCluster
	door      *frontDoor
	b         *browsertest.Browser
	top       *testing.T // for what outlives a step, like the device's home
	setupLink string

	person string // the account name of the person who signed up
	device *latchclient.Device
}

const clusterDisplayName = "Grace Hopper"

// setup: the setup link, and a passkey registered with its ceremony begun
// on node 2 and finished on node 1. The challenge node 2 made is kept
// where node 1 finds it (not in node 2's memory), and node 1 accepts the
// ceremony cookie node 2 set: the person exists, an admin, and is logged
// in.
func (f *clusterFlow) setup(t *testing.T) {
	if !strings.HasPrefix(f.setupLink, f.door.URL+"/setup/") {
		t.Fatalf("setup link %q, want one under the front door's %s", f.setupLink, f.door.URL)
	}
	b := f.b
	f.door.send(n1)
	f.door.route("POST /register/begin", n2)
	f.door.route("POST /register/finish", n1)
	b.Do(t, "open the setup link",
		chromedp.Navigate(f.setupLink),
		chromedp.WaitVisible(chromedp.ID("display_name")),
		chromedp.SendKeys(chromedp.ID("display_name"), clusterDisplayName),
	)
	b.Do(t, `click "Create a passkey"`, chromedp.Click(browsertest.ButtonNamed("Create a passkey"), chromedp.NodeVisible))
	b.WaitPath(t, "/devices")
	f.door.wantServed(t, "POST /register/begin", n2)
	f.door.wantServed(t, "POST /register/finish", n1)
	f.door.wantServed(t, "GET /devices", n1)

	// Node 3's admin service knows the person node 1 made.
	ps, err := accounts.EndpointAccountList.Call(t.Context(), f.c.admin(n3), accounts.NoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].DisplayName != clusterDisplayName || ps[0].Role != accounts.RoleAdmin {
		t.Fatalf("persons through node 3: %+v, want one admin, %s", ps, clusterDisplayName)
	}
	f.person = ps[0].Name
	if n := len(b.Credentials(t)); n != 1 {
		t.Errorf("the authenticator holds %d passkeys, want 1", n)
	}
}

// sessionOnEveryNode: the session node 1 started is good on node 3, which
// reads it from the shared bucket and decrypts its cookie with the keys
// every node derives from one secret.
func (f *clusterFlow) sessionOnEveryNode(t *testing.T) {
	b := f.b
	f.door.send(n3)
	b.Do(t, "open the devices page on node 3", chromedp.Navigate(f.door.URL+"/devices"))
	b.WaitPath(t, "/devices")
	if body := b.BodyText(); !strings.Contains(body, clusterDisplayName) {
		t.Errorf("the devices page on node 3 does not name %q: %q", clusterDisplayName, body)
	}
	f.door.wantServed(t, "GET /devices", n3)
}

// logOutAndIn: a log out on node 3 ends the session on every node (a copy
// of the cookie is refused by node 1 afterwards); a passkey login begun on
// node 2 and finished on node 1 makes a session node 3 accepts.
func (f *clusterFlow) logOutAndIn(t *testing.T) {
	b := f.b
	f.door.send(n3)
	cookies := b.Cookies(t, f.door.URL)
	if len(cookies) == 0 {
		t.Fatal("the browser holds no cookie of latch's")
	}
	// A copy of the login cookie, as someone could take it from the browser.
	copied := func() *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, f.door.URL+"/devices", nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, ck := range cookies {
			req.AddCookie(&http.Cookie{Name: ck.Name, Value: ck.Value})
		}
		hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 10 * time.Second}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	f.door.route("GET /devices", n1)
	if resp := copied(); resp.StatusCode != http.StatusOK {
		t.Fatalf("the copied cookie on node 1 before the log out: %s, want 200", resp.Status)
	}

	b.Do(t, `click "Log out" on node 3`, chromedp.Click(browsertest.ButtonNamed("Log out"), chromedp.NodeVisible))
	b.WaitPath(t, "/login")
	f.door.wantServed(t, "POST /logout", n3)
	if resp := copied(); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("the copied cookie on node 1 after the log out on node 3: %s to %q, want a redirect to /login", resp.Status, resp.Header.Get("Location"))
	}
	f.door.wantServed(t, "GET /devices", n1)

	f.door.send(n3)
	f.door.route("POST /login/begin", n2)
	f.door.route("POST /login/finish", n1)
	b.Do(t, `click "Log in with a passkey"`, chromedp.Click(browsertest.ButtonNamed("Log in with a passkey"), chromedp.NodeVisible))
	b.WaitPath(t, "/devices")
	if body := b.BodyText(); !strings.Contains(body, clusterDisplayName) {
		t.Errorf("after the login the page does not name %q: %q", clusterDisplayName, body)
	}
	f.door.wantServed(t, "POST /login/begin", n2)
	f.door.wantServed(t, "POST /login/finish", n1)
	f.door.wantServed(t, "GET /devices", n3)
}

// enroll: a device starts enrolling on node 1; the person approves its
// code on node 2, after a fresh passkey check begun on node 1 and
// finished on node 3 (node 2 sees that check in the session); the device
// polls node 3 and gets its JWT, for its own key.
func (f *clusterFlow) enroll(t *testing.T) {
	b := f.b
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	f.door.send(n2)
	f.door.route("POST /api/enroll/start", n1)
	f.door.route("POST /api/enroll/poll", n3)
	f.door.route("POST /reauth/begin", n1)
	f.door.route("POST /reauth/finish", n3)

	// The device side is package client, as `latch client enroll` runs it.
	p, err := latchclient.StartEnroll(ctx, latchclient.EnrollOptions{
		URL: f.door.URL, Name: "laptop", Platform: "linux/amd64", Home: filepath.Join(f.top.TempDir(), "laptop"),
	})
	if err != nil {
		t.Fatalf("StartEnroll: %v", err)
	}
	f.door.wantServed(t, "POST /api/enroll/start", n1)
	type waited struct {
		d   *latchclient.Device
		err error
	}
	wait := make(chan waited, 1)
	go func() {
		d, err := p.Wait(ctx)
		wait <- waited{d, err}
	}()

	b.Do(t, `open the devices page on node 2 and click "Enroll a device"`,
		chromedp.Navigate(f.door.URL+"/devices"),
		chromedp.Click(browsertest.ControlNamed("Enroll a device"), chromedp.NodeVisible),
	)
	b.WaitPath(t, "/enroll")
	code := chromedp.CSS(`main form input:not([type=hidden])`)
	b.Do(t, "type the code", chromedp.WaitVisible(code), chromedp.SendKeys(code, p.UserCode+kb.Enter))
	b.WaitFor(t, "the review page with the device's name and fingerprint",
		fmt.Sprintf(`document.body.innerText.includes(%s) && document.body.innerText.includes(%s)`,
			browsertest.JSString(p.Name), browsertest.JSString(p.Fingerprint)))
	b.Do(t, `click "Approve"`, chromedp.Click(browsertest.ButtonNamed("Approve"), chromedp.NodeVisible))
	b.WaitFor(t, "the enrollment's result", `/is enrolled/.test(document.getElementById("enroll-result")?.innerText ?? "")`)
	f.door.wantServed(t, "POST /reauth/begin", n1)
	f.door.wantServed(t, "POST /reauth/finish", n3)
	f.door.wantServed(t, "POST /enroll/*/approve", n2)

	select {
	case w := <-wait:
		if w.err != nil {
			t.Fatalf("the device's Wait: %v", w.err)
		}
		f.device = w.d
	case <-time.After(30 * time.Second):
		t.Fatal("the device got no JWT within 30 s of the approval")
	}
	f.door.wantServed(t, "POST /api/enroll/poll", n3)
	if f.device.PublicKey != p.PublicKey || f.device.Person != f.person {
		t.Errorf("enrolled: key %s of %q, want the device's own %s of %q", f.device.PublicKey, f.device.Person, p.PublicKey, f.person)
	}
}

// liveAcrossNodes: with the devices page open through node 1, its live
// stream served by node 1, the device connects to node 3 with the creds
// it enrolled with and writes a record; the row turns online. An admin
// revokes it through node 2's admin service; the row turns revoked
// without a reload, and node 3 cuts the device off.
func (f *clusterFlow) liveAcrossNodes(t *testing.T) {
	b := f.b
	d := f.device
	f.door.send(n1)
	row := fmt.Sprintf(`document.getElementById(%s)`, browsertest.JSString("device-"+d.PublicKey))
	b.Do(t, "open the devices page on node 1", chromedp.Navigate(f.door.URL+"/devices"))
	b.WaitFor(t, "the laptop's row and the live stream", "!!"+row+" && "+browsertest.SSEOpen)
	f.door.wantServed(t, "GET /events/devices", n1)
	// A reload would lose this.
	browsertest.Value(t, b, "mark the page", chromedp.Evaluate[bool](`window.notReloaded = true`))
	if txt := browsertest.Value(t, b, "read the row", chromedp.Evaluate[string](row+".innerText")); strings.Contains(strings.ToLower(txt), "online") {
		t.Errorf("the row before the device connected: %q, want it not online", txt)
	}

	closed := make(chan struct{})
	nc, err := deviceConn(t, f.c.url(n3), d.CredsPath, nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		t.Fatalf("the device on node 3 with its enrolled creds: %v", err)
	}
	if _, err := records(t, nc).Put(t.Context(), "note", []byte("from the laptop")); err != nil {
		t.Fatalf("a record from the device on node 3: %v", err)
	}
	b.WaitFor(t, "the row to say online, without a reload", fmt.Sprintf(`window.notReloaded && /\bonline\b/i.test(%s.innerText)`, row))

	if _, err := accounts.EndpointDeviceRevoke.Call(t.Context(), f.c.admin(n2), accounts.DeviceRequest{Account: f.person, Device: d.Name}); err != nil {
		t.Fatalf("revoke the laptop through node 2: %v", err)
	}
	b.WaitFor(t, "the row to say revoked, without a reload", fmt.Sprintf(`window.notReloaded && /\brevoked\b/i.test(%s.innerText)`, row))
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Errorf("the device's connection to node 3 is still open 10 s after its revocation through node 2")
	}
}
