package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/latch-dev/latch/operator"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestMain lets the test binary be latch itself in a process of its own:
// a test that needs a latch it can kill -9 runs os.Args[0] with
// LATCH_TEST_AS_LATCH=1.
func TestMain(m *testing.M) {
	if os.Getenv("LATCH_TEST_AS_LATCH") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// node is `latch serve` in a process of its own.
type node struct {
	cmd  *exec.Cmd
	nats string
	http string
	logs *syncBuffer
}

var readyLine = regexp.MustCompile(`msg="latch is ready" nats=(\S+) http=(\S+)`)

// startNode runs `latch serve` with args in a process and waits until it
// says it is ready.
func startNode(t *testing.T, args ...string) *node {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--nats", "127.0.0.1:0", "--http", "127.0.0.1:0", "--monitor", ""}, args...)...)
	cmd.Env = append(os.Environ(), "LATCH_TEST_AS_LATCH=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n := &node{cmd: cmd, logs: &syncBuffer{}}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	ready := make(chan [2]string, 1)
	ended := make(chan struct{}) // standard error closed: the process is gone
	go func() {
		defer close(ended)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			n.logs.Write(append(sc.Bytes(), '\n'))
			if m := readyLine.FindStringSubmatch(sc.Text()); m != nil {
				ready <- [2]string{m[1], m[2]}
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	select {
	case a := <-ready:
		n.nats, n.http = a[0], a[1]
	case <-ended:
		t.Fatalf("latch serve %v ended before it was ready:\n%s", args, n.logs.String())
	case <-time.After(90 * time.Second):
		t.Fatalf("latch serve %v is not ready after 90 s", args)
	}
	return n
}

// processCluster is three `latch serve` processes of one deployment, in
// regions r1, r2, r3, and an admin client of node 1.
type processCluster struct {
	dir   string
	first *operator.Tree
	nodes []*node
	admin *accounts.AdminClient
}

func startProcessCluster(t *testing.T) *processCluster {
	t.Helper()
	dir := t.TempDir()
	first, err := operator.Init(filepath.Join(dir, "n1"), "acme")
	if err != nil {
		t.Fatal(err)
	}
	id, err := first.Identity(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	b, err := id.Encode()
	if err != nil {
		t.Fatal(err)
	}
	idFile := filepath.Join(dir, "acme.identity")
	if err := os.WriteFile(idFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	routes := latchtest.RouteAddrs(t, 3)
	nodes := make([]*node, 3)
	started := make(chan int, 3)
	for i := range nodes {
		go func() {
			defer func() { started <- i }()
			nodes[i] = startNode(t, "--data", filepath.Join(dir, fmt.Sprintf("n%d", i+1)), "--identity", idFile,
				"--server-name", fmt.Sprintf("n%d", i+1), "--region", fmt.Sprintf("r%d", i+1),
				"--cluster", routes[i], "--routes", strings.Join(routes, ","))
		}()
	}
	for range nodes {
		<-started
	}
	if t.Failed() {
		t.FailNow()
	}
	nc, err := nats.Connect(nodes[0].nats, nats.UserCredentials(filepath.Join(first.Dir, operator.AdminCredsFile)),
		nats.CustomInboxPrefix(operator.AdminInboxPrefix(first.FirstAdmin)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return &processCluster{dir: dir, first: first, nodes: nodes, admin: accounts.NewAdminClient(nc)}
}

// device issues a device of person through node 1 and writes its creds.
func (c *processCluster) device(t *testing.T, person, name string) string {
	t.Helper()
	r, err := accounts.EndpointDeviceIssue.Call(context.Background(), c.admin, accounts.DeviceIssueRequest{Account: person, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(c.dir, name+".creds")
	if err := os.WriteFile(creds, []byte(r.Creds), 0o600); err != nil {
		t.Fatal(err)
	}
	return creds
}

// A node killed outright (kill -9: no shutdown, no disconnects sent) has
// its devices shown offline on the other nodes once it has been silent
// for two heartbeats: 20 to 22 s after the kill. The test asks through
// the admin service, whose device list can be held up to its one-minute
// limit right after a node dies (a request waiting on a stream that is
// electing its leader holds the endpoint), so it allows 150 s, and logs
// how long it took.
func TestClusterNodeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three latch processes; not with -short")
	}
	t.Parallel()
	c := startProcessCluster(t)
	nodes, admin := c.nodes, c.admin
	ctx := context.Background()
	if _, err := accounts.EndpointAccountAdd.Call(ctx, admin, accounts.AccountAddRequest{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	creds := c.device(t, "alice", "phone")
	// On node 3, and staying off the others when node 3 is gone.
	phone, err := nats.Connect(nodes[2].nats, nats.UserCredentials(creds), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	var lastErr error
	conns := func() int {
		// Right after a node dies a request may wait on a stream that is
		// electing its leader: ask again rather than wait.
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		ds, err := accounts.EndpointDeviceList.Call(ctx, admin, accounts.DeviceRequest{Account: "alice"})
		if err != nil || len(ds) != 1 {
			lastErr = err
			return -1
		}
		return ds[0].Conns
	}
	for deadline := time.Now().Add(30 * time.Second); conns() != 1; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the phone on node 3 is not shown online on node 1")
		}
	}
	killed := time.Now()
	if err := nodes[2].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for conns() != 0 {
		if time.Since(killed) > 150*time.Second {
			for _, l := range strings.Split(nodes[0].logs.String(), "\n") {
				if strings.Contains(l, "presence") {
					t.Log(l)
				}
			}
			t.Fatalf("the phone of the killed node is still shown online on node 1 after %s (%d, %v)", time.Since(killed).Round(time.Second), conns(), lastErr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("shown offline %s after node 3 was killed", time.Since(killed).Round(100*time.Millisecond))
}

// SIGKILL of the node that leads a person's records while two devices
// write to them with acknowledgements: no acknowledged write is lost, and
// the devices carry on through the other nodes.
func TestClusterRecordsLeaderKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three latch processes; not with -short")
	}
	t.Parallel()
	c := startProcessCluster(t)
	ctx := context.Background()
	if _, err := accounts.EndpointAccountAdd.Call(ctx, c.admin, accounts.AccountAddRequest{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	// Which node leads alice's records, as the first device sees it.
	probe, err := nats.Connect(c.nodes[0].nats, nats.UserCredentials(c.device(t, "alice", "probe")))
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	pjs, err := jetstream.New(probe)
	if err != nil {
		t.Fatal(err)
	}
	st, err := pjs.Stream(ctx, "KV_"+accounts.RecordsBucket)
	if err != nil {
		t.Fatal(err)
	}
	leader := st.CachedInfo().Cluster.Leader
	var victim int
	fmt.Sscanf(leader, "n%d", &victim)
	if victim < 1 || victim > 3 {
		t.Fatalf("the records' leader is %q", leader)
	}
	victim--
	// The two writers are on the nodes that stay.
	var others []int
	for i := range c.nodes {
		if i != victim {
			others = append(others, i)
		}
	}
	type writer struct {
		acked []string // keys whose put was acknowledged
		n     atomic.Int64
		err   error
	}
	writers := make([]*writer, 2)
	// Every device is issued now: node 1, where the admin client is, may
	// be the one killed.
	readerCreds := c.device(t, "alice", "reader")
	stop := make(chan struct{})
	done := make(chan struct{}, 2)
	for w := range writers {
		writers[w] = &writer{}
		nc, err := nats.Connect(c.nodes[others[w]].nats, nats.UserCredentials(c.device(t, "alice", fmt.Sprintf("writer%d", w))),
			nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		kv, err := js.KeyValue(ctx, accounts.RecordsBucket)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%05d", w, i)
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := kv.Put(pctx, key, []byte(key))
				cancel()
				if err == nil {
					writers[w].acked = append(writers[w].acked, key)
					writers[w].n.Add(1)
				} else {
					writers[w].err = err // not acknowledged: it may or may not be there
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(2 * time.Second)
	before := writers[0].n.Load() + writers[1].n.Load()
	if err := c.nodes[victim].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	// The writers carry on once the others have elected a new leader (a
	// few seconds; longer on a loaded machine).
	for writers[0].n.Load()+writers[1].n.Load() < before+20 && time.Since(killed) < time.Minute {
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	<-done
	<-done
	after := writers[0].n.Load() + writers[1].n.Load()
	t.Logf("killed %s, the leader of alice's records: %d puts acknowledged before, %d in all, %s after the kill (last error: %v, %v)",
		leader, before, after, time.Since(killed).Round(100*time.Millisecond), writers[0].err, writers[1].err)
	if after < before+20 {
		t.Errorf("%d puts were acknowledged in the minute after %s was killed: the devices did not carry on", after-before, leader)
	}
	// Every acknowledged put is there, read from a node that stayed.
	nc, err := nats.Connect(c.nodes[others[0]].nats, nats.UserCredentials(readerCreds))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, accounts.RecordsBucket)
	if err != nil {
		t.Fatal(err)
	}
	lost := 0
	for _, w := range writers {
		for _, key := range w.acked {
			if e, err := kv.Get(ctx, key); err != nil || string(e.Value()) != key {
				lost++
				if lost <= 5 {
					t.Errorf("acknowledged put %s is lost: %v", key, err)
				}
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d acknowledged puts lost", lost)
	}
}
