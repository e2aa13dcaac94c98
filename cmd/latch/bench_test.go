package main

import (
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
			cp.ColdP99 < cp.ColdP50 || cp.RSS <= 0 || cp.Heap <= 0 || cp.Goroutines <= 0 || cp.DiskPerPerson <= 0 || cp.CPUPerPerson <= 0 {
			t.Errorf("checkpoint %+v: a figure is missing", cp)
		}
	}
	if r := latch(t, nil, "bench", "accounts", "--persons", "10", "--checkpoints", "20"); r.err == nil {
		t.Error("a checkpoint past --persons was taken")
	}
}
