package main

import (
	"debug/buildinfo"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The latch binary links the copy of nats-server in third_party/nats-server,
// with latch's patches, not the module as published: go.mod replaces it,
// and the binary's build information says so.
func TestLinksPatchedNATSServer(t *testing.T) {
	t.Parallel()
	bin := mustBuildLatch(t, t.TempDir(), "0.0.1")
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range bi.Deps {
		if d.Path != "github.com/nats-io/nats-server/v2" {
			continue
		}
		if d.Replace == nil || d.Replace.Path != "./third_party/nats-server" {
			t.Fatalf("nats-server %s is linked as published (replace %+v), not third_party/nats-server", d.Version, d.Replace)
		}
		b, err := os.ReadFile(filepath.Join(repoRoot, "third_party", "nats-server", "LATCH-PATCHED"))
		if err != nil || !strings.Contains(string(b), d.Version+",") {
			t.Errorf("third_party/nats-server is not %s as scripts/nats-server-patch made it: %q, %v", d.Version, b, err)
		}
		return
	}
	t.Fatal("the binary does not link nats-server")
}
