package main

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
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

	// latch bench plot draws the run: a line a panel, a point a
	// checkpoint, in SVG that parses.
	run := filepath.Join(dir, "run.json")
	if err := os.WriteFile(run, []byte(r.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	svg := filepath.Join(dir, "curve.svg")
	mustLatch(t, nil, "bench", "plot", run, run, "--labels", "one,two", "--out", svg)
	b, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		XMLName   xml.Name   `xml:"svg"`
		Polylines []struct{} `xml:"polyline"`
		Circles   []struct{} `xml:"circle"`
		Texts     []string   `xml:"text"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("the plot is not SVG: %v\n%s", err, b)
	}
	if len(doc.Polylines) != 2*len(plotPanels) || len(doc.Circles) != 2*2*len(plotPanels) || !slices.Contains(doc.Texts, "two") {
		t.Errorf("the plot has %d lines, %d points, texts %q; want %d, %d, the labels",
			len(doc.Polylines), len(doc.Circles), doc.Texts, 2*len(plotPanels), 2*2*len(plotPanels))
	}
	if r := latch(t, nil, "bench", "plot", svg); exitCode(r.err) != 2 {
		t.Errorf("plotting an SVG: %v, want exit 2", r.err)
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
