package server

import (
	"os"
	"path/filepath"
	"testing"
)

// Setting a store aside cut short at any step is finished at the next
// start, and nothing is lost.
func TestSetAsideResumes(t *testing.T) {
	for _, stop := range []string{"after the resolver copy", "after the store moved"} {
		t.Run(stop, func(t *testing.T) {
			data := t.TempDir()
			for _, f := range []string{"resolver/A.jwt", "jetstream/A/streams/records/msgs"} {
				p := filepath.Join(data, f)
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(f), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			// The steps of setAside, up to the stop.
			tmp := filepath.Join(data, standaloneTemp)
			if err := os.CopyFS(filepath.Join(tmp, "resolver"), os.DirFS(filepath.Join(data, "resolver"))); err != nil {
				t.Fatal(err)
			}
			if stop == "after the store moved" {
				if err := os.Rename(filepath.Join(data, "jetstream"), filepath.Join(tmp, "jetstream")); err != nil {
					t.Fatal(err)
				}
			}
			moving, err := movingIn(data)
			if err != nil || !moving {
				t.Fatalf("movingIn: %v, %v; want a move under way", moving, err)
			}
			for _, f := range []string{"resolver/A.jwt", "jetstream/A/streams/records/msgs"} {
				if b, err := os.ReadFile(filepath.Join(data, standaloneDir, f)); err != nil || string(b) != f {
					t.Errorf("%s set aside: %q, %v", f, b, err)
				}
			}
			if _, err := os.Stat(filepath.Join(data, "jetstream")); !os.IsNotExist(err) {
				t.Errorf("the store is still in place: %v", err)
			}
			streams, err := standaloneStreams(filepath.Join(data, standaloneDir, "jetstream"))
			if err != nil || len(streams["A"]) != 1 || streams["A"][0] != "records" {
				t.Errorf("streams set aside: %v, %v", streams, err)
			}
		})
	}
}
