package web

import (
	"os/exec"
	"strings"
	"testing"
)

// web sees NATS only through the interfaces it defines; it does not link
// nats-server (the server package wires the presence watcher to it).
func TestWebDoesNotLinkNatsServer(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/nats-io/nats-server") {
			t.Errorf("web depends on %s", dep)
		}
	}
}
