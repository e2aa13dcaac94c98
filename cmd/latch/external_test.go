package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/latch-dev/latch/operator"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// stockServer is a nats-server process built from the module in go.mod.
type stockServer struct {
	name, url string
	resolver  string // its resolver folder
	cmd       *exec.Cmd
	logs      *syncBuffer
}

// buildNATSServer builds nats-server as published, of the version go.mod
// requires, into a temporary folder: go install of module@version ignores
// go.mod's replace, so it is the stock server users run, not latch's
// patched copy.
func buildNATSServer(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/nats-io/nats-server/v2").Output()
	if err != nil {
		t.Fatalf("go list nats-server: %v", err)
	}
	version := strings.TrimSpace(string(out))
	dir := t.TempDir()
	cmd := exec.Command("go", "install", "github.com/nats-io/nats-server/v2@"+version)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install nats-server@%s: %v\n%s", version, err, out)
	}
	return filepath.Join(dir, "nats-server")
}

var clientURLLine = regexp.MustCompile(`Listening for client connections on (\S+)`)

// startStockCluster runs three nats-server processes as one cluster with
// JetStream, each configured with `latch operator config` of data (in a
// file the server's own config includes), and waits until each listens.
func startStockCluster(t *testing.T, bin, data string) []*stockServer {
	t.Helper()
	dir := t.TempDir()
	routes := latchtest.RouteAddrs(t, 3)
	var routeURLs []string
	for _, r := range routes {
		routeURLs = append(routeURLs, "nats://"+r)
	}
	servers := make([]*stockServer, 3)
	for i := range servers {
		name := fmt.Sprintf("s%d", i+1)
		sd := filepath.Join(dir, name)
		if err := os.MkdirAll(sd, 0o700); err != nil {
			t.Fatal(err)
		}
		s := &stockServer{name: name, resolver: filepath.Join(sd, "resolver"), logs: &syncBuffer{}}
		latchConf := mustLatch(t, nil, "operator", "config", "--data", data, "--resolver-dir", s.resolver).stdout
		if err := os.WriteFile(filepath.Join(sd, "latch.conf"), []byte(latchConf), 0o600); err != nil {
			t.Fatal(err)
		}
		conf := fmt.Sprintf(`server_name: %s
listen: "127.0.0.1:-1"
server_tags: ["region:r%d"]
jetstream { store_dir: %q, unique_tag: "region:" }
cluster {
  name: acme
  listen: %q
  routes: [%s]
}
include ./latch.conf
`, name, i+1, filepath.Join(sd, "jetstream"), routes[i], strings.Join(routeURLs, ", "))
		confFile := filepath.Join(sd, "nats-server.conf")
		if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		s.cmd = exec.Command(bin, "-c", confFile)
		stderr, err := s.cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			s.cmd.Process.Signal(syscall.SIGTERM)
			s.cmd.Wait()
		})
		listening := make(chan string, 1)
		go func() {
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				s.logs.Write(append(sc.Bytes(), '\n'))
				if m := clientURLLine.FindStringSubmatch(sc.Text()); m != nil {
					listening <- m[1]
				}
			}
			io.Copy(io.Discard, stderr)
		}()
		select {
		case s.url = <-listening:
		case <-time.After(30 * time.Second):
			t.Fatalf("nats-server %s does not listen after 30 s:\n%s", name, s.logs)
		}
		servers[i] = s
	}
	return servers
}

// TestExternalCluster runs latch against three stock nats-server processes
// configured from `latch operator config`: latch runs no server of its
// own, and what it does with an embedded one it does there — persons and
// devices on any server, revocations in force on every one, records in
// three replicas, deletions, drift found and repaired, a server lost.
func TestExternalCluster(t *testing.T) {
	t.Parallel()
	bin := buildNATSServer(t)
	data := filepath.Join(t.TempDir(), "latch")
	mustLatch(t, nil, "init", "--data", data, "--name", "acme")
	stock := startStockCluster(t, bin, data)
	var urls []string
	for _, s := range stock {
		urls = append(urls, s.url)
	}

	// Flags of the embedded server make no sense here and are refused.
	r := latch(t, nil, "serve", "--data", data, "--nats-external", strings.Join(urls, ","), "--nats", "127.0.0.1:0")
	if exitCode(r.err) != 2 || !strings.Contains(fmt.Sprint(r.err), "--nats is the embedded server's") {
		t.Errorf("serve --nats-external --nats: exit %d, %v; want 2 and why", exitCode(r.err), r.err)
	}

	// Another deployment's latch is refused by the servers, and says what
	// to check rather than wait.
	other := filepath.Join(t.TempDir(), "other")
	mustLatch(t, nil, "init", "--data", other)
	r = latchWithin(t, 60*time.Second, nil, "serve", "--data", other, "--nats-external", strings.Join(urls, ","), "--http", "127.0.0.1:0")
	if r.err == nil || !strings.Contains(r.err.Error(), "refuse latch's system user") || !strings.Contains(r.err.Error(), "latch operator config") {
		t.Errorf("serve --nats-external with another operator's folder: %v; want a refusal that says what to check", r.err)
	}

	s := launchServe(t, data, nil, nil, "--nats-external", strings.Join(urls, ","), "--server-name", "latch1")
	s.waitHealthy(t, 90*time.Second)
	s.env["LATCH_SERVER"] = strings.Join(urls, ",")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("latch serve's log:\n%s", s.logs)
			for _, st := range stock {
				t.Logf("%s's log:\n%s", st.name, st.logs)
			}
		}
	})
	if !strings.Contains(s.logs.String(), "nats is ready") || strings.Contains(s.logs.String(), "Listening for client connections") {
		t.Fatalf("latch serve --nats-external should use the external servers and start none:\n%s", s.logs)
	}

	// A person made through latch; a device on s3, another on s2.
	alice := strings.TrimSpace(s.mustAdmin(t, "account", "add", "alice").stdout)
	dir := t.TempDir()
	laptopCreds, phoneCreds := filepath.Join(dir, "laptop.creds"), filepath.Join(dir, "phone.creds")
	s.mustAdmin(t, "device", "issue", "--account", "alice", "--name", "laptop", "--out", laptopCreds)
	s.mustAdmin(t, "device", "issue", "--account", "alice", "--name", "phone", "--out", phoneCreds)
	laptop := mustWatch(t, stock[2].url, laptopCreds).Conn
	phone := mustWatch(t, stock[1].url, phoneCreds)
	putRecord(t, laptop, "note1", "from the laptop")
	latchtest.Eventually(t, "the phone reads the laptop's record", func() error {
		if got := tryGetRecord(phone.Conn, "note1"); got != "from the laptop" {
			return fmt.Errorf("got %q", got)
		}
		return nil
	})
	// Presence from the servers' events: the laptop on s3 is online.
	latchtest.Eventually(t, "the laptop shown online", func() error { return wantConns(t, s, "laptop", 1) })
	// Three replicas, one per region, of the person's records.
	js, err := jetstream.New(laptop)
	if err != nil {
		t.Fatal(err)
	}
	info, err := js.Stream(context.Background(), "KV_records")
	if err != nil {
		t.Fatal(err)
	}
	if si := info.CachedInfo(); si.Config.Replicas != 3 || si.Cluster == nil || len(si.Cluster.Replicas) != 2 {
		t.Errorf("records: %d replicas (cluster %+v), want 3", si.Config.Replicas, si.Cluster)
	}

	// The phone revoked through latch: its connection on s2 closes, and
	// no server lets it in again.
	s.mustAdmin(t, "device", "revoke", "--account", "alice", "phone")
	phone.waitClosed(t, "the revoked phone on s2")
	for _, st := range stock {
		mustBeRefused(t, st.url, phoneCreds, "the revoked phone on "+st.name, authViolation)
	}

	// A JWT pushed behind latch's back (as with nsc) is drift, which
	// status shows and repair undoes.
	op, err := operator.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := op.Signer()
	if err != nil {
		t.Fatal(err)
	}
	sysJWT, sysSeed, err := op.MintUser(op.SystemAccount, "test")
	if err != nil {
		t.Fatal(err)
	}
	sys, err := nats.Connect(stock[1].url, nats.UserJWTAndSeed(sysJWT, string(sysSeed)))
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	current, err := sys.Request("$SYS.REQ.ACCOUNT."+alice+".CLAIMS.LOOKUP", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	foreign := latchtest.ForeignJWT(t, signer, string(current.Data), "by-hand")
	if _, err := sys.Request("$SYS.REQ.CLAIMS.UPDATE", []byte(foreign), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	var st accounts.ClusterStatus
	latchtest.Eventually(t, "cluster status shows the drift", func() error {
		r := s.admin(t, "cluster", "status", "--json")
		st = accounts.ClusterStatus{}
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			return fmt.Errorf("%v: %s %v", err, r.stdout, r.err)
		}
		if d := st.Drifted(); len(d) == 0 || d[0].Account != alice {
			return fmt.Errorf("drift %+v", d)
		}
		return nil
	})
	if len(st.Nodes) != 1 || st.Nodes[0].Name != "latch1" || len(st.Nodes[0].Servers) != 3 {
		t.Errorf("cluster status: nodes %+v; want latch1 alone, using three NATS servers", st.Nodes)
	}
	s.mustAdmin(t, "cluster", "repair")
	latchtest.Eventually(t, "no drift after repair", func() error {
		r := s.admin(t, "cluster", "status")
		if r.err != nil {
			return fmt.Errorf("%v: %s", r.err, r.stdout)
		}
		return nil
	})

	// latch restarted: it asks every server for the connections open
	// meanwhile, and the laptop is still shown online.
	s.stop()
	s = launchServe(t, data, nil, nil, "--nats-external", strings.Join(urls, ","), "--server-name", "latch1")
	s.waitHealthy(t, 90*time.Second)
	s.env["LATCH_SERVER"] = strings.Join(urls, ",")
	if err := wantConns(t, s, "laptop", 1); err != nil {
		t.Errorf("after latch's restart: %v", err)
	}

	// A person deleted: gone from every server's resolver.
	bob := strings.TrimSpace(s.mustAdmin(t, "account", "add", "bob").stdout)
	latchtest.Eventually(t, "bob on every server", func() error { return onEvery(stock, bob, true) })
	s.mustAdmin(t, "account", "delete", "bob", "--yes")
	latchtest.Eventually(t, "bob gone from every server", func() error { return onEvery(stock, bob, false) })

	// s3 killed under a device connected to it: the device goes on
	// through another server, and latch goes on issuing devices once the
	// streams s3 led have new leaders. (A request that reached s3, or a
	// stream between leaders, gets no answer: clients ask again.)
	laptop2, err := nats.Connect(strings.Join([]string{stock[2].url, stock[0].url, stock[1].url}, ","),
		nats.UserCredentials(laptopCreds), nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer laptop2.Close()
	stock[2].cmd.Process.Signal(syscall.SIGKILL)
	stock[2].cmd.Wait()
	killed := time.Now()
	latchtest.Eventually(t, "a write from the laptop after s3 died", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		js, err := jetstream.New(laptop2)
		if err != nil {
			return err
		}
		kv, err := js.KeyValue(ctx, "records")
		if err == nil {
			_, err = kv.Put(ctx, "note2", []byte("after s3 died"))
		}
		return err
	})
	tabletCreds := filepath.Join(dir, "tablet.creds")
	s.mustAdmin(t, "device", "issue", "--account", "alice", "--name", "tablet", "--out", tabletCreds)
	t.Logf("a device issued %v after s3 was killed", time.Since(killed).Round(time.Millisecond))
	tablet := mustWatch(t, stock[0].url, tabletCreds)
	latchtest.Eventually(t, "the tablet reads the laptop's record", func() error {
		if got := tryGetRecord(tablet.Conn, "note2"); got != "after s3 died" {
			return fmt.Errorf("got %q", got)
		}
		return nil
	})
}

// wantConns checks that latch counts n connections of alice's device.
func wantConns(t *testing.T, s *served, device string, n int) error {
	var devices []accounts.Device
	decodeJSON(t, s.mustAdmin(t, "device", "ls", "--account", "alice", "--json"), &devices)
	for _, d := range devices {
		if d.Name == device {
			if d.Conns != n {
				return fmt.Errorf("%s has %d connections, want %d", device, d.Conns, n)
			}
			return nil
		}
	}
	return fmt.Errorf("no device %s in %+v", device, devices)
}

// onEvery checks that every live server's resolver folder holds (or not)
// the JWT of account.
func onEvery(servers []*stockServer, account string, want bool) error {
	for _, s := range servers {
		_, err := os.Stat(filepath.Join(s.resolver, account+".jwt"))
		if (err == nil) != want {
			return fmt.Errorf("%s holds %s: %v, want %v", s.name, account, err == nil, want)
		}
	}
	return nil
}

// tryGetRecord reads a record, "" when it cannot.
func tryGetRecord(nc *nats.Conn, key string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		return ""
	}
	kv, err := js.KeyValue(ctx, "records")
	if err != nil {
		return ""
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		return ""
	}
	return string(e.Value())
}
