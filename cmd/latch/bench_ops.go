package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/client"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"
)

// benchOps is what latch bench issue, revoke and sync measured.
// Durations are in nanoseconds in JSON.
type benchOps struct {
	benchMachine
	// Server is the running latch measured; empty for one of the bench's own.
	Server   string `json:"server,omitempty"`
	Bench    string `json:"bench"`
	Ops      int    `json:"ops"`
	Parallel int    `json:"parallel"`
	// Elapsed is the wall time of the measured operations, PerSecond
	// Ops over it (0 where the bench waits on purpose between them).
	Elapsed   time.Duration `json:"elapsed"`
	PerSecond float64       `json:"per_second,omitempty"`
	// CPUPerOp is the process's CPU time (server and bench together)
	// over the measured part, per operation.
	CPUPerOp  time.Duration  `json:"cpu_per_op"`
	Latencies []benchLatency `json:"latencies"`
}

// benchLatency is one latency measured for every operation.
type benchLatency struct {
	What string        `json:"what"`
	P50  time.Duration `json:"p50"`
	P99  time.Duration `json:"p99"`
	Max  time.Duration `json:"max"`
}

func latencyOf(what string, ds []time.Duration) benchLatency {
	slices.Sort(ds)
	l := benchLatency{What: what, P50: percentile(ds, 50), P99: percentile(ds, 99)}
	if len(ds) > 0 {
		l.Max = ds[len(ds)-1]
	}
	return l
}

func printOps(w io.Writer, asJSON bool, r benchOps) error {
	if asJSON {
		return printJSON(w, r)
	}
	rate := ""
	if r.PerSecond > 0 {
		rate = ", " + strconv.FormatFloat(r.PerSecond, 'f', 0, 64) + "/s"
	}
	by := ""
	if r.Parallel > 1 {
		by = " by " + strconv.Itoa(r.Parallel) + " callers"
	}
	whose := ""
	if r.Server != "" {
		whose = " (this process; the server's is its own)"
	}
	fmt.Fprintf(w, "%s: %d in %s%s%s; CPU %s each%s\n", r.Bench, r.Ops, r.Elapsed.Round(time.Millisecond), by, rate, ms(r.CPUPerOp), whose)
	return list(w, []string{"LATENCY", "P50", "P99", "MAX"}, r.Latencies, func(l benchLatency) []string {
		return []string{l.What, ms(l.P50), ms(l.P99), ms(l.Max)}
	})
}

func benchOpsCommands(e *env) []*cli.Command {
	return []*cli.Command{
		{
			Name:  "issue",
			Usage: "issue devices through the admin service, as latch device issue does",
			Description: `Starts latch on a data folder of its own, creates --persons persons, and
issues --devices devices to them in turn through the admin service, from
--parallel callers at once. Reports devices issued a second, the CPU time
per device, and the latency of each call.`,
			Flags: append(benchNodeFlags(),
				&cli.IntFlag{Name: "persons", Value: 4, Usage: "persons to issue the devices to"},
				&cli.IntFlag{Name: "devices", Value: 1000, Usage: "devices to issue"},
				&cli.IntFlag{Name: "parallel", Value: 8, Usage: "callers at once"},
			),
			Action: func(c *cli.Context) error {
				if _, err := args(c); err != nil {
					return err
				}
				persons, devices, parallel := c.Int("persons"), c.Int("devices"), c.Int("parallel")
				if persons < 1 || devices < 1 || parallel < 1 {
					return usagef("--persons, --devices and --parallel: at least 1")
				}
				return e.runOps(c, e.benchNodeOptionsOf(c), devices, "devices", func(ctx context.Context, n *benchNode) (benchOps, error) {
					return benchIssue(ctx, n, persons, devices, parallel)
				})
			},
		},
		{
			Name:  "revoke",
			Usage: "revoke connected devices, and measure until the server closes their connections",
			Description: `Starts latch on a data folder of its own, gives --persons persons a
connected device each (--devices in all), and revokes them one at a time
through the admin service, as latch device revoke does. Each is timed
from the call to the moment its connection is closed by the server.
An account's JWT can change once a second (its iat), so each revocation
is made once its account's last change is in a past second: the figures
are the revocation's, not that wait's.`,
			Flags: append(benchNodeFlags(),
				&cli.IntFlag{Name: "persons", Value: 50, Usage: "persons whose devices are revoked in turn"},
				&cli.IntFlag{Name: "devices", Value: 200, Usage: "devices to revoke"},
			),
			Action: func(c *cli.Context) error {
				if _, err := args(c); err != nil {
					return err
				}
				persons, devices := c.Int("persons"), c.Int("devices")
				if persons < 1 || devices < 1 {
					return usagef("--persons and --devices: at least 1")
				}
				return e.runOps(c, e.benchNodeOptionsOf(c), devices, "revocations", func(ctx context.Context, n *benchNode) (benchOps, error) {
					return benchRevoke(ctx, n, persons, devices)
				})
			},
		},
		{
			Name:  "enroll",
			Usage: "enroll devices as latch client enroll does, approved through the admin service",
			Description: `Starts latch on a data folder of its own and enrolls --devices devices
to --persons persons, --parallel at once: each makes its nkey and asks
the web API to enroll it (POST /api/enroll/start), an admin approves its
code (latch device approve), the device polls once for its JWT and
writes its creds (POST /api/enroll/poll), then connects with them and
reads its person's records. Each simulated device comes from an address
of its own (X-Forwarded-For, the server trusting it), so the per-address
limit on starting enrollments, there for real devices, does not pace the
bench. Reports enrollments a second, the CPU time per enrollment, and the
latency of each step and of the whole.`,
			Flags: append(benchNodeFlags(),
				&cli.IntFlag{Name: "persons", Value: 10, Usage: "persons to enroll the devices to"},
				&cli.IntFlag{Name: "devices", Value: 200, Usage: "devices to enroll"},
				&cli.IntFlag{Name: "parallel", Value: 4, Usage: "devices enrolling at once"},
			),
			Action: func(c *cli.Context) error {
				if _, err := args(c); err != nil {
					return err
				}
				persons, devices, parallel := c.Int("persons"), c.Int("devices"), c.Int("parallel")
				if persons < 1 || devices < 1 || parallel < 1 {
					return usagef("--persons, --devices and --parallel: at least 1")
				}
				o := e.benchNodeOptionsOf(c)
				o.trustProxy = true
				return e.runOps(c, o, devices, "devices", func(ctx context.Context, n *benchNode) (benchOps, error) {
					return benchEnroll(ctx, n, persons, devices, parallel)
				})
			},
		},
		{
			Name:  "sync",
			Usage: "put records from one device and measure until another device's watch has them",
			Description: `Starts latch on a data folder of its own, makes a person with two
devices connected with their own creds, and has the first put --puts
records of --size bytes (one after another, over --keys keys) while the
second watches the bucket. Reports puts a second, the CPU time per put,
the latency of each put and of each put until the watch delivered it.`,
			Flags: append(benchNodeFlags(),
				&cli.IntFlag{Name: "puts", Value: 10000, Usage: "records to put"},
				&cli.IntFlag{Name: "size", Value: 256, Usage: "bytes in each record"},
				&cli.IntFlag{Name: "keys", Value: 1000, Usage: "keys the puts go to in turn"},
			),
			Action: func(c *cli.Context) error {
				if _, err := args(c); err != nil {
					return err
				}
				puts, size, keys := c.Int("puts"), c.Int("size"), c.Int("keys")
				if puts < 1 || size < 0 || keys < 1 {
					return usagef("--puts and --keys: at least 1; --size: 0 or more")
				}
				return e.runOps(c, e.benchNodeOptionsOf(c), puts, "puts", func(ctx context.Context, n *benchNode) (benchOps, error) {
					return benchSync(ctx, n, puts, size, keys)
				})
			},
		},
	}
}

// runOps opens the bench's node, runs bench on it with a progress bar of
// ops operations, and prints what it measured.
func (e *env) runOps(c *cli.Context, o benchNodeOptions, ops int, unit string, bench func(context.Context, *benchNode) (benchOps, error)) error {
	n, err := openBenchNode(c.Context, o)
	if err != nil {
		return err
	}
	defer n.close()
	done := n.progress(e.stderr, ops, unit)
	r, err := bench(c.Context, n)
	done()
	if err != nil {
		return err
	}
	return printOps(e.stdout, c.Bool("json"), r)
}

// newOps begins the report of a bench of n.
func (n *benchNode) newOps(bench string, ops, parallel int) benchOps {
	return benchOps{benchMachine: thisMachine(), Server: n.server, Bench: bench, Ops: ops, Parallel: parallel}
}

// timed sets the wall time, rate and CPU per operation of operations
// that began at began, when the process's CPU clock read cpu.
func (r *benchOps) timed(began time.Time, cpu time.Duration) {
	r.Elapsed, r.CPUPerOp = time.Since(began), (benchCPU()-cpu)/time.Duration(r.Ops)
	r.PerSecond = float64(r.Ops) / r.Elapsed.Seconds()
}

// stepTimes keeps the time of each step of every operation, and of the
// whole of it: what the last name names.
type stepTimes struct {
	names []string
	d     [][]time.Duration // by name, then operation
}

func newStepTimes(ops int, names ...string) *stepTimes {
	st := &stepTimes{names: names, d: make([][]time.Duration, len(names))}
	for k := range st.d {
		st.d[k] = make([]time.Duration, ops)
	}
	return st
}

// record takes when operation i began and when each of its steps ended.
func (st *stepTimes) record(i int, marks ...time.Time) {
	for k := 1; k < len(marks); k++ {
		st.d[k-1][i] = marks[k].Sub(marks[k-1])
	}
	st.d[len(st.d)-1][i] = marks[len(marks)-1].Sub(marks[0])
}

func (st *stepTimes) latencies() []benchLatency {
	var out []benchLatency
	for k, what := range st.names {
		out = append(out, latencyOf(what, st.d[k]))
	}
	return out
}

// inParallel calls f(0) … f(ops-1) from parallel goroutines and returns
// the first error; after one, no more calls are begun.
func inParallel(ops, parallel int, f func(i int) error) error {
	next := make(chan int)
	errs := make(chan error, parallel)
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var err error
feed:
	for i := range ops {
		select {
		case next <- i:
		case err = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil && len(errs) > 0 {
		err = <-errs
	}
	return err
}

func benchIssue(ctx context.Context, n *benchNode, persons, devices, parallel int) (benchOps, error) {
	r := n.newOps("issue", devices, parallel)
	if err := n.addPersons(ctx, persons); err != nil {
		return r, err
	}
	lat := make([]time.Duration, devices)
	began, cpu := time.Now(), benchCPU()
	err := inParallel(devices, parallel, func(i int) error {
		t0 := time.Now()
		_, err := accounts.EndpointDeviceIssue.Call(ctx, n.admin, accounts.DeviceIssueRequest{
			Account: n.person(i % persons), Name: "d" + strconv.Itoa(i)})
		if err != nil {
			return fmt.Errorf("issue device %d: %w", i, err)
		}
		lat[i] = time.Since(t0)
		n.tick()
		return nil
	})
	if err != nil {
		return r, err
	}
	r.timed(began, cpu)
	r.Latencies = []benchLatency{latencyOf("the issue call", lat)}
	return r, nil
}

func benchRevoke(ctx context.Context, n *benchNode, persons, devices int) (benchOps, error) {
	r := n.newOps("revoke", devices, 1)
	persons = min(persons, devices)
	last := make([]time.Time, persons) // each account's JWT's last change
	for i := range persons {
		if err := n.addPerson(ctx, n.person(i)); err != nil {
			return r, fmt.Errorf("create a person: %w", err)
		}
		last[i] = time.Now()
	}
	// One connected device a person at a time: made, then revoked.
	type probe struct {
		person, pub string
		nc          *nats.Conn
		closed      chan time.Time
	}
	connect := func(i int) (probe, error) {
		p := probe{person: n.person(i % persons), closed: make(chan time.Time, 1)}
		creds, pub, err := n.issue(ctx, p.person, "d"+strconv.Itoa(i))
		if err != nil {
			return p, err
		}
		p.pub = pub
		p.nc, err = n.connect(creds, nats.NoReconnect(), nats.ClosedHandler(func(*nats.Conn) { p.closed <- time.Now() }))
		return p, err
	}
	var call, toClose []time.Duration
	var cpuSpent time.Duration
	for i := range devices {
		k := i % persons
		p, err := connect(i)
		if err != nil {
			return r, fmt.Errorf("a device to revoke: %w", err)
		}
		// Once the account's last JWT is in a past second.
		time.Sleep(time.Until(time.Unix(last[k].Unix()+1, 0).Add(time.Millisecond)))
		t0, cpu := time.Now(), benchCPU()
		if _, err := accounts.EndpointDeviceRevoke.Call(ctx, n.admin, accounts.DeviceRequest{Account: p.person, Device: p.pub}); err != nil {
			p.nc.Close()
			return r, fmt.Errorf("revoke: %w", err)
		}
		call = append(call, time.Since(t0))
		select {
		case at := <-p.closed:
			toClose = append(toClose, at.Sub(t0))
		case <-time.After(30 * time.Second):
			p.nc.Close()
			return r, fmt.Errorf("the connection of revoked device %s was still open after 30 s", p.pub)
		}
		cpuSpent += benchCPU() - cpu
		r.Elapsed += time.Since(t0)
		last[k] = time.Now()
		n.tick()
	}
	r.CPUPerOp = cpuSpent / time.Duration(devices)
	r.Latencies = []benchLatency{latencyOf("the revoke call", call), latencyOf("revoke to connection closed", toClose)}
	return r, nil
}

func benchSync(ctx context.Context, n *benchNode, puts, size, keys int) (benchOps, error) {
	r := n.newOps("sync", puts, 1)
	if err := n.addPerson(ctx, n.person(0)); err != nil {
		return r, err
	}
	open := func(name string) (*nats.Conn, jetstream.KeyValue, error) {
		creds, _, err := n.issue(ctx, n.person(0), name)
		if err != nil {
			return nil, nil, err
		}
		nc, err := n.connect(creds)
		if err != nil {
			return nil, nil, err
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return nil, nil, err
		}
		kv, err := js.KeyValue(ctx, accounts.RecordsBucket)
		if err != nil {
			nc.Close()
			return nil, nil, err
		}
		return nc, kv, nil
	}
	ncA, kvA, err := open("writer")
	if err != nil {
		return r, err
	}
	defer ncA.Close()
	ncB, kvB, err := open("watcher")
	if err != nil {
		return r, err
	}
	defer ncB.Close()
	w, err := kvB.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return r, err
	}
	defer w.Stop()
	value := make([]byte, size)
	put, toWatch := make([]time.Duration, 0, puts), make([]time.Duration, 0, puts)
	began, cpu := time.Now(), benchCPU()
	for i := range puts {
		t0 := time.Now()
		rev, err := kvA.Put(ctx, "bench."+strconv.Itoa(i%keys), value)
		if err != nil {
			return r, fmt.Errorf("put %d: %w", i, err)
		}
		put = append(put, time.Since(t0))
		for seen := false; !seen; {
			select {
			case e := <-w.Updates():
				seen = e != nil && e.Revision() >= rev
			case <-time.After(10 * time.Second):
				return r, errors.New("a put never reached the other device's watch")
			}
		}
		toWatch = append(toWatch, time.Since(t0))
		n.tick()
	}
	r.timed(began, cpu)
	r.Latencies = []benchLatency{latencyOf("the put", put), latencyOf("put to the other device's watch", toWatch)}
	return r, nil
}

// forwardedFor is a transport that says a request comes from addr, as a
// reverse proxy would. A server that does not trust the header (a running
// latch without --trust-proxy) takes the connection's address instead,
// and its per-address limits then pace the bench.
type forwardedFor struct {
	addr string
	next http.RoundTripper
}

func (f forwardedFor) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", f.addr)
	return f.next.RoundTrip(r)
}

// benchAddr is the i-th simulated client's address.
func benchAddr(i int) string { return fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255) }

func benchEnroll(ctx context.Context, n *benchNode, persons, devices, parallel int) (benchOps, error) {
	r := n.newOps("enroll", devices, parallel)
	if err := n.addPersons(ctx, persons); err != nil {
		return r, err
	}
	steps := newStepTimes(devices, "start (the device's key sent)", "the admin's approval", "the poll (JWT, creds written)",
		"first connect and records get", "the whole enrollment")
	base, err := n.webURL()
	if err != nil {
		return r, err
	}
	transport, err := n.transport()
	if err != nil {
		return r, err
	}
	enroll := func(i int) error {
		hc := &http.Client{Timeout: 30 * time.Second, Transport: forwardedFor{benchAddr(i), transport}}
		t0 := time.Now()
		p, err := client.StartEnroll(ctx, client.EnrollOptions{URL: base, Name: "d" + strconv.Itoa(i), Platform: "bench",
			Home: filepath.Join(n.credsDir, "enroll", strconv.Itoa(i)), HTTPClient: hc})
		if err != nil {
			return err
		}
		t1 := time.Now()
		if _, err := accounts.EndpointDeviceApprove.Call(ctx, n.admin, accounts.DeviceApproveRequest{
			Account: n.person(i % persons), Code: p.UserCode}); err != nil {
			return fmt.Errorf("approve: %w", err)
		}
		t2 := time.Now()
		p.Interval = time.Millisecond // approved already: the first poll has the JWT
		d, err := p.Wait(ctx)
		if err != nil {
			return err
		}
		t3 := time.Now()
		if _, err := n.coldConnect(ctx, d.CredsPath); err != nil {
			return fmt.Errorf("connect with the new creds: %w", err)
		}
		steps.record(i, t0, t1, t2, t3, time.Now())
		n.tick()
		return nil
	}
	began, cpu := time.Now(), benchCPU()
	err = inParallel(devices, parallel, func(i int) error {
		if err := enroll(i); err != nil {
			return fmt.Errorf("enroll device %d: %w", i, err)
		}
		return nil
	})
	if err != nil {
		return r, err
	}
	r.timed(began, cpu)
	r.Latencies = steps.latencies()
	return r, nil
}
