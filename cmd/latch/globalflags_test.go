package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// Global flags work before the command, after it, and with "=" or a
// space, as the help's `latch [global options] command` promises (issue
// 8: `latch --server URL account ls` answered `no command "URL"`).
func TestGlobalFlagsAnywhere(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "")
	creds := filepath.Join(s.data, "admin.creds")
	for _, args := range [][]string{
		{"--server", s.nats, "--creds", creds, "account", "add", "p0", "--disk", "1MiB"},
		{"--server=" + s.nats, "--creds=" + creds, "account", "add", "p1"},
		{"--data", s.data, "--server", s.nats, "account", "add", "p2", "--json"},
		{"account", "add", "p3", "--server", s.nats, "--data", s.data},
		{"--data", s.data, "account", "add", "--server", s.nats, "p4"},
	} {
		r := latch(t, nil, args...)
		if r.err != nil {
			t.Errorf("latch %s: %v", strings.Join(args, " "), r.err)
			continue
		}
		if !strings.Contains(r.stdout, "A") {
			t.Errorf("latch %s printed %q, want the new account's key", strings.Join(args, " "), r.stdout)
		}
	}
	ls := mustLatch(t, nil, "--data", s.data, "--server", s.nats, "account", "ls").stdout
	for _, name := range []string{"p0", "p1", "p2", "p3", "p4"} {
		if !strings.Contains(ls, name) {
			t.Errorf("account ls lacks %s:\n%s", name, ls)
		}
	}
	if show := mustLatch(t, nil, "--server", s.nats, "--creds", creds, "account", "show", "p0").stdout; fieldOf(show, "disk quota") != "1MiB" {
		t.Errorf("the --disk given after a global flag before the command: account show says %q", fieldOf(show, "disk quota"))
	}
	// A flag the top level does not know is still an error, with exit 2.
	r := latch(t, nil, "--bogus", "x", "account", "ls")
	if r.err == nil || exitCode(r.err) != 2 {
		t.Errorf("latch --bogus x account ls: %v, want a usage error", r.err)
	}
}
