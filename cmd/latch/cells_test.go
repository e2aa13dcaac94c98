package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latch-dev/latch/client"
	"github.com/nats-io/nats.go/jetstream"
)

// cellTier is the simulation's shared web tier and directory (docs/scale.md,
// "Cells"): it assigns each new person to the cell with the fewest persons,
// makes them there, and forwards /c/<cell>/… to that cell's web server.
// Every cell's public URL is the tier's (latch is served at the root of
// its host), so passkeys and the links a cell writes are the tier's; a
// device enrolls at its cell's address under the tier and keeps it for
// renewals. Not a product feature: enough to show that cells of one
// operator work side by side.
type cellTier struct {
	t      *testing.T
	url    string // http://127.0.0.1:port
	admin  string // the data folder whose admin.creds every cell takes
	mu     sync.Mutex
	cells  map[string]*node
	order  []string
	people map[string]string // person → cell
}

func (ct *cellTier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/c/")
	name, path, _ := strings.Cut(rest, "/")
	ct.mu.Lock()
	cell := ct.cells[name]
	ct.mu.Unlock()
	if !ok || cell == nil {
		http.Error(w, "no such cell", http.StatusNotFound)
		return
	}
	target, _ := url.Parse(cell.http)
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.URL.Path = "/" + path
		pr.Out.Host = pr.In.Host // the cell's public URL is the tier's
		pr.SetXForwarded()
	}}
	proxy.ServeHTTP(w, r)
}

// assign makes a person in the cell with the fewest and records where.
func (ct *cellTier) assign(person string) string {
	ct.t.Helper()
	ct.mu.Lock()
	count := map[string]int{}
	for _, c := range ct.people {
		count[c]++
	}
	best := ct.order[0]
	for _, c := range ct.order {
		if count[c] < count[best] {
			best = c
		}
	}
	ct.people[person] = best
	ct.mu.Unlock()
	ct.cellAdmin(best, "account", "add", person)
	return best
}

// cellAdmin runs an admin command against one cell.
func (ct *cellTier) cellAdmin(cell string, args ...string) result {
	ct.t.Helper()
	return mustLatch(ct.t, map[string]string{"LATCH_DATA": ct.admin, "LATCH_SERVER": ct.cells[cell].nats}, args...)
}

// Two cells, each a latch deployment of its own (one node each here;
// three regions each in production), made from one identity: the same
// operator, no routes between them. A shared web tier assigns persons to
// cells and forwards to them. A device enrolls through the tier, gets its
// cell's NATS address, and syncs there; its account exists in its cell
// alone, so its creds, valid under the shared operator, open nothing in
// the other cell. A release is published to every cell.
func TestCellsSimulation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	home := filepath.Join(dir, "control")
	mustLatch(t, nil, "init", "--name", "acme", "--data", home)
	idFile := filepath.Join(dir, "acme.identity")
	if err := os.WriteFile(idFile, []byte(mustLatch(t, nil, "identity", "export", "--data", home).stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// localhost: passkeys want a host name, and allow plain http there.
	ct := &cellTier{t: t, url: "http://localhost:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), admin: home, cells: map[string]*node{},
		order: []string{"a", "b"}, people: map[string]string{}}
	hs := &http.Server{Handler: ct, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })

	var wg sync.WaitGroup
	for _, name := range ct.order {
		wg.Go(func() {
			n := startNode(t, "--data", filepath.Join(dir, "cell-"+name), "--identity", idFile,
				"--server-name", "cell-"+name, "--public-url", ct.url)
			ct.mu.Lock()
			ct.cells[name] = n
			ct.mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("cells: a at %s, b at %s; the web tier at %s", ct.cells["a"].nats, ct.cells["b"].nats, ct.url)

	if got := []string{ct.assign("alice"), ct.assign("bob")}; got[0] == got[1] {
		t.Fatalf("alice and bob both in cell %s; the tier spreads persons", got[0])
	}
	bobCell, aliceCell := ct.people["bob"], ct.people["alice"]
	t.Logf("directory: alice in cell %s, bob in cell %s", aliceCell, bobCell)

	// Bob's phone enrolls through the tier at his cell's address, as his
	// Enroll page would tell it, and bob's cell approves its code.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	phoneHome := filepath.Join(dir, "phone")
	pending, err := client.StartEnroll(ctx, client.EnrollOptions{URL: ct.url + "/c/" + bobCell, Name: "phone", Home: phoneHome})
	if err != nil {
		t.Fatalf("enroll through the tier: %v", err)
	}
	if !strings.HasPrefix(pending.VerificationURI, ct.url+"/") {
		t.Errorf("the code is to be approved at %s, want the tier's page", pending.VerificationURI)
	}
	ct.cellAdmin(bobCell, "device", "approve", "--account", "bob", pending.UserCode)
	pending.Interval = 100 * time.Millisecond
	phone, err := pending.Wait(ctx)
	if err != nil {
		t.Fatalf("the enrollment: %v", err)
	}
	if len(phone.Servers) != 1 || phone.Servers[0] != ct.cells[bobCell].nats {
		t.Fatalf("the phone was told NATS servers %v, want bob's cell's %s", phone.Servers, ct.cells[bobCell].nats)
	}
	t.Logf("bob's phone enrolled through %s and was told %v", phone.URL, phone.Servers)

	// It syncs in its cell: a put from the phone is what a second device
	// of bob's, issued by the cell, reads.
	mustLatch(t, nil, "client", "put", "--home", phoneHome, "note", "in cell "+bobCell)
	laptop := filepath.Join(dir, "laptop.creds")
	ct.cellAdmin(bobCell, "device", "issue", "--account", "bob", "--name", "laptop", "--out", laptop)
	nc, err := connectCreds(ct.cells[bobCell].nats, laptop)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(ctx, "records")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "note"); err != nil || string(e.Value()) != "in cell "+bobCell {
		t.Errorf("bob's laptop reads %v, %v; want the phone's put", e, err)
	}
	// The renewal goes through the tier too.
	mustLatch(t, nil, "client", "renew", "--home", phoneHome)

	// Bob's account is in his cell alone: the other cell has never heard
	// of it, and refuses his creds though the operator signed them both.
	if r := latch(t, map[string]string{"LATCH_DATA": home, "LATCH_SERVER": ct.cells[aliceCell].nats}, "account", "show", "bob"); r.err == nil {
		t.Errorf("cell %s knows bob:\n%s", aliceCell, r.stdout)
	}
	if nc, err := connectCreds(ct.cells[aliceCell].nats, laptop); err == nil {
		nc.Close()
		t.Errorf("bob's creds opened a connection in cell %s", aliceCell)
	} else {
		t.Logf("bob's creds in cell %s: %v", aliceCell, err)
	}

	// Releases reach every cell: published to each.
	build := filepath.Join(dir, "latch-client")
	if err := os.WriteFile(build, []byte("a client build"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range ct.order {
		ct.cellAdmin(c, "release", "publish", build, "--version", "1.2.0", "--os", "linux", "--arch", "amd64")
	}
	for _, c := range ct.order {
		if out := ct.cellAdmin(c, "release", "ls").stdout; !strings.Contains(out, "1.2.0") {
			t.Errorf("cell %s's releases:\n%s", c, out)
		}
	}
}
