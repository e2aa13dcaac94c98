package main

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// latch bench accounts, small: it makes the persons on a server of its
// own and reports every checkpoint with each figure measured.
func TestBenchAccounts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := mustLatch(t, nil, "bench", "accounts", "--persons", "30", "--checkpoints", "10,30", "--cold", "3", "--json", "--dir", dir+"/data")
	var res benchResult
	decodeJSON(t, r, &res)
	if len(res.Checkpoints) != 2 || res.Checkpoints[0].Persons != 10 || res.Checkpoints[1].Persons != 30 {
		t.Fatalf("checkpoints %+v, want 10 and 30", res.Checkpoints)
	}
	for _, cp := range res.Checkpoints {
		if cp.CreateP50 <= 0 || cp.CreateP99 < cp.CreateP50 || cp.Restart <= 0 || cp.ColdSamples != 3 || cp.ColdP50 <= 0 ||
			cp.ColdP99 < cp.ColdP50 || cp.RestartNATS <= 0 || cp.RestartNATS > cp.Restart || cp.Checks <= 0 || cp.RSS <= 0 || cp.Heap <= 0 || cp.Goroutines <= 0 || cp.DiskPerPerson <= 0 || cp.CPUPerPerson <= 0 {
			t.Errorf("checkpoint %+v: a figure is missing", cp)
		}
	}
	if res.BaseRSS <= 0 || !res.RecordsHistory {
		t.Errorf("base RSS %d, records history %v", res.BaseRSS, res.RecordsHistory)
	}
	if r := latch(t, nil, "bench", "accounts", "--persons", "10", "--checkpoints", "20"); r.err == nil {
		t.Error("a checkpoint past --persons was taken")
	}

	// latch bench plot draws the run: SVG that parses, a line a panel.
	// (A point whose figure is not above zero is left out: in a small
	// run the RSS may fall below the empty server's after a collection.)
	run := filepath.Join(dir, "run.json")
	if err := os.WriteFile(run, []byte(r.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	svg := filepath.Join(dir, "curve.svg")
	mustLatch(t, nil, "bench", "plot", run, "--out", svg)
	if doc := readPlot(t, svg); len(doc.Polylines) != len(plotPanels) {
		t.Errorf("the plot of a run has %d lines, want %d", len(doc.Polylines), len(plotPanels))
	}
	if r := latch(t, nil, "bench", "plot", svg); exitCode(r.err) != 2 {
		t.Errorf("plotting an SVG: %v, want exit 2", r.err)
	}
}

type plotDoc struct {
	XMLName   xml.Name   `xml:"svg"`
	Polylines []struct{} `xml:"polyline"`
	Circles   []struct{} `xml:"circle"`
	Texts     []string   `xml:"text"`
}

func readPlot(t *testing.T, file string) plotDoc {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc plotDoc
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("the plot is not SVG: %v\n%s", err, b)
	}
	return doc
}

// Two runs of two checkpoints each: a line a run in every panel, a point
// a checkpoint, the labels in the legend, memory per person above the
// empty server's (a run whose RSS never rose above it has no such point).
func TestBenchPlot(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, res benchResult) string {
		b, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	cp := func(persons int, rss int64) benchCheckpoint {
		return benchCheckpoint{Persons: persons, CreateP50: 5 * time.Millisecond, Restart: time.Duration(persons) * time.Millisecond,
			ColdP99: 2 * time.Millisecond, RSS: rss}
	}
	one := write("one.json", benchResult{BaseRSS: 100 << 20, Checkpoints: []benchCheckpoint{cp(1000, 300<<20), cp(10000, 2100<<20)}})
	two := write("two.json", benchResult{BaseRSS: 100 << 20, Checkpoints: []benchCheckpoint{cp(1000, 90<<20), cp(100000, 20000<<20)}})
	svg := filepath.Join(dir, "curve.svg")
	mustLatch(t, nil, "bench", "plot", one, two, "--labels", "with,without", "--out", svg)
	doc := readPlot(t, svg)
	if len(doc.Polylines) != 2*len(plotPanels) || len(doc.Circles) != 2*2*len(plotPanels)-1 ||
		!slices.Contains(doc.Texts, "with") || !slices.Contains(doc.Texts, "without") || !slices.Contains(doc.Texts, "100k") {
		t.Errorf("the plot has %d lines, %d points, texts %q; want %d, %d, the labels and a 100k tick",
			len(doc.Polylines), len(doc.Circles), doc.Texts, 2*len(plotPanels), 2*2*len(plotPanels)-1)
	}
	if r := latch(t, nil, "bench", "plot", one, two, "--labels", "only-one"); exitCode(r.err) != 2 {
		t.Errorf("one label for two runs: %v, want exit 2", r.err)
	}
}

// latch bench issue, revoke, enroll, web and sync, small: each runs on a server of its
// own and reports its rate, CPU and latencies.
func TestBenchOps(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args      []string
		latencies int
		rate      bool
	}{
		{[]string{"issue", "--persons", "2", "--devices", "20", "--parallel", "3"}, 1, true},
		{[]string{"revoke", "--persons", "3", "--devices", "4"}, 2, false},
		{[]string{"enroll", "--persons", "2", "--devices", "6", "--parallel", "2"}, 5, true},
		{[]string{"web", "--persons", "4", "--parallel", "2"}, 5, true},
		{[]string{"sync", "--puts", "50", "--keys", "7", "--records-history=false"}, 2, true},
	} {
		t.Run(tc.args[0], func(t *testing.T) {
			t.Parallel()
			var r benchOps
			decodeJSON(t, mustLatch(t, nil, append(append([]string{"bench"}, tc.args...), "--json")...), &r)
			if r.Bench != tc.args[0] || r.Ops <= 0 || r.Elapsed <= 0 || r.CPUPerOp <= 0 || (r.PerSecond > 0) != tc.rate || len(r.Latencies) != tc.latencies {
				t.Errorf("%+v: a figure is missing", r)
			}
			for _, l := range r.Latencies {
				if l.P50 <= 0 || l.P99 < l.P50 || l.Max < l.P99 {
					t.Errorf("latency %+v", l)
				}
			}
		})
	}
	if r := latch(t, nil, "bench", "issue", "--devices", "0"); exitCode(r.err) != 2 {
		t.Errorf("--devices 0: %v, want exit 2", r.err)
	}
}

// With --server, the benches measure a running latch through an admin's
// creds: their persons are made there under a name of the run's own and
// deleted at the end; a restart is not attempted. Without the flag,
// $LATCH_SERVER alone does not send them there.
func TestBenchAgainstARunningLatch(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "")
	s.mustAdmin(t, "account", "add", "alice")
	// --url is the public URL, where passkeys are bound.
	remote := []string{"--server", s.nats, "--creds", filepath.Join(s.data, "admin.creds"),
		"--url", strings.Replace(s.http, "127.0.0.1", "localhost", 1), "--json"}

	var res benchResult
	decodeJSON(t, mustLatch(t, nil, append([]string{"bench", "accounts", "--persons", "6", "--checkpoints", "3,6", "--cold", "2"}, remote...)...), &res)
	if res.Server != s.nats || len(res.Checkpoints) != 2 {
		t.Fatalf("%+v: want two checkpoints of %s", res, s.nats)
	}
	for _, cp := range res.Checkpoints {
		if cp.CreateP50 <= 0 || cp.ColdSamples != 2 || cp.ColdP50 <= 0 || cp.Restart != 0 || cp.RSS != 0 {
			t.Errorf("checkpoint %+v: want creates and first connects, no restart and no process figures", cp)
		}
	}
	for _, bench := range [][]string{
		{"issue", "--persons", "2", "--devices", "5"},
		{"revoke", "--persons", "2", "--devices", "2"},
		{"sync", "--puts", "20"},
		{"enroll", "--persons", "1", "--devices", "3", "--parallel", "1"},
		{"web", "--persons", "3", "--parallel", "1"},
	} {
		var r benchOps
		decodeJSON(t, mustLatch(t, nil, append(append([]string{"bench"}, bench...), remote...)...), &r)
		if r.Server != s.nats || r.Ops <= 0 || len(r.Latencies) == 0 {
			t.Errorf("bench %s: %+v", bench[0], r)
		}
	}
	// Everything the benches made is gone; alice is not.
	var ps []struct {
		Name string `json:"name"`
	}
	decodeJSON(t, s.mustAdmin(t, "account", "ls", "--json"), &ps)
	if len(ps) != 1 || ps[0].Name != "alice" {
		t.Errorf("persons left: %+v, want alice alone", ps)
	}
	var local benchOps
	decodeJSON(t, mustLatch(t, map[string]string{"LATCH_SERVER": s.nats}, "bench", "issue", "--persons", "1", "--devices", "1", "--json"), &local)
	if local.Server != "" {
		t.Errorf("$LATCH_SERVER sent the bench to %s", local.Server)
	}
	if r := latch(t, nil, "bench", "web", "--server", s.nats, "--creds", filepath.Join(s.data, "admin.creds")); exitCode(r.err) != 2 || !strings.Contains(r.err.Error(), "--url") {
		t.Errorf("bench web on a running latch without --url: %v", r.err)
	}
}
