package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"
)

func benchCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure what a node does as it grows, for sizing a deployment",
		Subcommands: append([]*cli.Command{
			{
				Name:  "accounts",
				Usage: "create persons on a fresh server in a temporary folder, and measure at each checkpoint",
				Description: `Starts latch on an empty data folder of its own (removed at the end
unless --keep) and creates --persons persons, one NATS account each with
its records bucket, through the admin service. At each checkpoint it
reports: the time to create a person (p50, p99 of those since the last
checkpoint); a restart to ready (the server closed and opened again on
the same folder), and the part of it nats-server took (JetStream's
recovery); the cold connect and first records get of a device
(p50, p99 over --cold persons not touched since the restart: the first
build of their account on the server), measured once latch's checks of
every account that follow a start are done (their time is reported too); the process's RSS, Go heap,
goroutine stacks and goroutines; disk per person; and the CPU time of the whole process per
person created. The server runs in this process, so the figures are the
server's and the bench's together; the heap is what is live after a
collection. On a terminal, a line shows progress; each checkpoint is
written to stderr as it is measured; at the end, a table, or JSON with
--json.

With --server (and an admin's --creds) it measures a running latch
instead: it makes persons named bench-<run>-N there and deletes them at
the end unless --keep. It cannot restart that server or see into its
process, so it reports the time to make a person, the CPU time of this
process alone, and each device's first connect and get since its person
was made; restart, memory, goroutines and disk are left out (0 in JSON).`,
				Flags: append([]cli.Flag{
					&cli.IntFlag{Name: "persons", Value: 1000, Usage: "how many persons to create"},
					&cli.StringFlag{Name: "checkpoints", Usage: "comma-separated person counts to measure at (default: the end, and a tenth, a quarter and half of the way)"},
					&cli.IntFlag{Name: "cold", Value: 50, Usage: "cold connects to measure at each checkpoint"},
					&cli.StringFlag{Name: "profile", Usage: "write goroutine and heap profiles (pprof) into this folder at each checkpoint, and a CPU profile of the whole run"},
				}, benchNodeFlags()...),
				Action: func(c *cli.Context) error {
					if _, err := args(c); err != nil {
						return err
					}
					o := benchOptions{persons: c.Int("persons"), cold: c.Int("cold"), profile: c.String("profile"), node: e.benchNodeOptionsOf(c)}
					if o.persons < 1 || o.persons > 1_000_000 || o.cold < 1 {
						return usagef("--persons: 1 to 1000000; --cold: at least 1")
					}
					var err error
					if o.checkpoints, err = parseCheckpoints(c.String("checkpoints"), o.persons); err != nil {
						return usagef("--checkpoints: %v", err)
					}
					res, err := benchAccounts(c.Context, e, o)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return printJSON(e.stdout, res)
					}
					return list(e.stdout, []string{"PERSONS", "CREATE P50", "CREATE P99", "CPU/PERSON", "RESTART", "COLD P50", "COLD P99", "RSS", "HEAP", "STACKS", "GOROUTINES", "DISK/PERSON"},
						res.Checkpoints, func(r benchCheckpoint) []string {
							return []string{strconv.Itoa(r.Persons), ms(r.CreateP50), ms(r.CreateP99), ms(r.CPUPerPerson), orDash(r.Restart, secs),
								ms(r.ColdP50), ms(r.ColdP99), orDash(r.RSS, mib), orDash(r.Heap, mib), orDash(r.Stacks, mib),
								orDash(r.Goroutines, strconv.Itoa), orDash(r.DiskPerPerson, kib)}
						})
				},
			},
		}, append(benchOpsCommands(e), benchWebCommand(e), benchPlotCommand(e))...),
	}
}

type benchOptions struct {
	persons, cold int
	checkpoints   []int
	profile       string
	node          benchNodeOptions
}

// benchCheckpoint is what latch bench accounts measured at a number of
// persons. Durations are in nanoseconds in JSON, sizes in bytes.
type benchCheckpoint struct {
	Persons      int           `json:"persons"`
	CreateP50    time.Duration `json:"create_p50"`
	CreateP99    time.Duration `json:"create_p99"`
	CPUPerPerson time.Duration `json:"cpu_per_person"`
	Restart      time.Duration `json:"restart"`
	// RestartNATS is the part of Restart before nats-server was ready:
	// JetStream's recovery of every stream; the rest is latch's own start.
	RestartNATS time.Duration `json:"restart_nats"`
	// Checks is how long latch's checks of every account after the
	// restart took (Refresh: signing keys, device templates, buckets),
	// done while serving; the cold connects are measured after them.
	Checks        time.Duration `json:"checks"`
	ColdP50       time.Duration `json:"cold_p50"`
	ColdP99       time.Duration `json:"cold_p99"`
	ColdSamples   int           `json:"cold_samples"`
	RSS           int64         `json:"rss"`
	Heap          int64         `json:"heap"`
	Stacks        int64         `json:"stacks"`
	Goroutines    int           `json:"goroutines"`
	DiskPerPerson int64         `json:"disk_per_person"`
}

type benchResult struct {
	benchMachine
	// Server is the running latch measured; empty for one of the bench's own.
	Server string `json:"server,omitempty"`
	// BaseRSS is the process's resident memory with the server started
	// and no person made yet.
	BaseRSS int64 `json:"base_rss"`
	// RecordsHistory says whether each person had a records history.
	RecordsHistory bool              `json:"records_history"`
	Checkpoints    []benchCheckpoint `json:"checkpoints"`
}

func parseCheckpoints(s string, persons int) ([]int, error) {
	if s == "" {
		var out []int
		for _, n := range []int{persons / 10, persons / 4, persons / 2, persons} {
			if n > 0 && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
		return out, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > persons {
			return nil, fmt.Errorf("%q: want person counts from 1 to --persons (%d)", f, persons)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// benchDevice is a device issued at creation, kept for a cold connect.
type benchDevice struct {
	person, creds string
}

func benchAccounts(ctx context.Context, e *env, o benchOptions) (benchResult, error) {
	res := benchResult{benchMachine: thisMachine(), RecordsHistory: !o.node.noHistory, Server: o.node.server}
	n, err := openBenchNode(ctx, o.node)
	if err != nil {
		return res, err
	}
	defer n.close()
	if !n.remote {
		runtime.GC()
		res.BaseRSS = rss()
	}
	if o.profile != "" {
		stop, err := cpuProfile(o.profile)
		if err != nil {
			return res, err
		}
		defer stop()
	}

	// The persons measured cold at each checkpoint are drawn from all
	// made so far; each gets its device when it is made, so that nothing
	// touches its account between the restart and the measurement.
	perCheckpoint := o.cold
	var devices []benchDevice
	sampled := map[int]bool{}
	prev := 0
	for _, cp := range o.checkpoints {
		for _, i := range rand.Perm(cp - prev)[:min(perCheckpoint, cp-prev)] {
			sampled[prev+i+1] = true
		}
		prev = cp
	}
	bar := newProgress(e.stderr, int64(o.persons), "persons")
	var creates []time.Duration
	cpuBefore := benchCPU()
	next := 0
	for i := 1; i <= o.persons; i++ {
		name := n.person(i)
		began := time.Now()
		if err := n.addPerson(ctx, name); err != nil {
			bar.done()
			return res, fmt.Errorf("create person %d: %w", i, err)
		}
		creates = append(creates, time.Since(began))
		if sampled[i] {
			path, _, err := n.issue(ctx, name, "bench")
			if err != nil {
				bar.done()
				return res, fmt.Errorf("issue a device of person %d: %w", i, err)
			}
			devices = append(devices, benchDevice{person: name, creds: path})
		}
		bar.add(1)
		if next >= len(o.checkpoints) || i != o.checkpoints[next] {
			continue
		}
		next++
		cp := benchCheckpoint{Persons: i}
		slices.Sort(creates)
		cp.CreateP50, cp.CreateP99 = percentile(creates, 50), percentile(creates, 99)
		cp.CPUPerPerson = (benchCPU() - cpuBefore) / time.Duration(len(creates))
		creates = creates[:0]

		// A restart, then cold devices: each one's account is built on the
		// server for the first time since. A running latch is not
		// restarted: its devices connect for the first time.
		if !n.remote {
			if cp.Restart, err = n.restart(ctx); err != nil {
				bar.done()
				return res, fmt.Errorf("restart at %d persons: %w", i, err)
			}
			cp.RestartNATS = time.Duration(n.nready.took.Load())
			// The cold connects are of a settled server: after latch's
			// checks of every account that follow a start.
			for deadline := time.Now().Add(30 * time.Minute); n.nready.checked.Load() == 0 && time.Now().Before(deadline); {
				time.Sleep(100 * time.Millisecond)
			}
			cp.Checks = time.Duration(n.nready.checked.Load())
		}
		rand.Shuffle(len(devices), func(a, b int) { devices[a], devices[b] = devices[b], devices[a] })
		var colds []time.Duration
		for _, d := range devices[:min(o.cold, len(devices))] {
			took, err := n.coldConnect(ctx, d.creds)
			if err != nil {
				bar.done()
				return res, fmt.Errorf("cold connect of %s at %d persons: %w", d.person, i, err)
			}
			colds = append(colds, took)
		}
		// The devices used are warm now: the next checkpoint takes others.
		devices = devices[min(o.cold, len(devices)):]
		slices.Sort(colds)
		cp.ColdSamples = len(colds)
		cp.ColdP50, cp.ColdP99 = percentile(colds, 50), percentile(colds, 99)
		if !n.remote {
			var mem runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&mem)
			cp.Heap, cp.Stacks, cp.RSS, cp.Goroutines = int64(mem.HeapAlloc), int64(mem.StackInuse), rss(), runtime.NumGoroutine()
			cp.DiskPerPerson = dirSize(n.dir) / int64(i)
		}
		if o.profile != "" {
			if err := writeProfiles(o.profile, i); err != nil {
				return res, err
			}
		}
		res.Checkpoints = append(res.Checkpoints, cp)
		// Each checkpoint as it comes, so a long run that is stopped or
		// runs out of memory still says what it measured.
		if n.remote {
			bar.say("%d persons: create p50 %s p99 %s, CPU %s a person (this process); first connect p50 %s p99 %s",
				i, ms(cp.CreateP50), ms(cp.CreateP99), ms(cp.CPUPerPerson), ms(cp.ColdP50), ms(cp.ColdP99))
		} else {
			bar.say("%d persons: create p50 %s p99 %s, CPU %s a person; restart %s (nats-server %s), then account checks %s; cold p50 %s p99 %s; RSS %s (%s a person above the empty server's), heap %s, stacks %s, %d goroutines, %s disk a person",
				i, ms(cp.CreateP50), ms(cp.CreateP99), ms(cp.CPUPerPerson), secs(cp.Restart), secs(cp.RestartNATS), secs(cp.Checks), ms(cp.ColdP50), ms(cp.ColdP99),
				mib(cp.RSS), kib((cp.RSS-res.BaseRSS)/int64(i)), mib(cp.Heap), mib(cp.Stacks), cp.Goroutines, kib(cp.DiskPerPerson))
		}
		cpuBefore = benchCPU()
	}
	bar.done()
	return res, nil
}

// coldConnect connects with a device's creds and reads a record: the
// account's first build on the server, and its bucket's first use.
func (n *benchNode) coldConnect(ctx context.Context, creds string) (time.Duration, error) {
	began := time.Now()
	nc, err := n.connect(creds, nats.NoReconnect())
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	kv, err := js.KeyValue(ctx, accounts.RecordsBucket)
	if err != nil {
		return 0, err
	}
	if _, err := kv.Get(ctx, "bench"); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, err
	}
	return time.Since(began), nil
}

func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, (len(sorted)*p+99)/100-1)]
}

// cpuProfile profiles the CPU into dir/cpu.pprof until stop is called.
func cpuProfile(dir string) (stop func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(dir, "cpu.pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// writeProfiles writes goroutine and heap profiles for a checkpoint.
func writeProfiles(dir string, persons int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	runtime.GC()
	for _, name := range []string{"goroutine", "heap"} {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", name, persons)))
		if err != nil {
			return err
		}
		err = pprof.Lookup(name).WriteTo(f, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// orDash formats a figure, or "-" for one not measured (zero).
func orDash[T int | int64 | time.Duration](v T, f func(T) string) string {
	if v == 0 {
		return "-"
	}
	return f(v)
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + " ms"
}
func secs(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
}
func mib(n int64) string { return strconv.FormatFloat(float64(n)/(1<<20), 'f', 0, 64) + " MiB" }
func kib(n int64) string { return strconv.FormatFloat(float64(n)/(1<<10), 'f', 0, 64) + " KiB" }
