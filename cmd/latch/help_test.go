package main

import (
	"strings"
	"testing"
)

// The help says what each command takes, and nothing that does nothing
// there (issue 8).
func TestHelpSaysWhatWorks(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args          []string
		want, notWant []string
	}{
		// Commands that reach no server take no --server or --creds.
		{[]string{"init"}, []string{"--data"}, []string{"--server", "--creds"}},
		{[]string{"serve"}, []string{"--data"}, []string{"--server value", "--creds"}},
		{[]string{"operator", "config"}, []string{"--data"}, []string{"--server", "--creds"}},
		{[]string{"operator", "signing-key", "rm"}, []string{"--data"}, []string{"--server", "--creds"}},
		// Admin commands do.
		{[]string{"account", "add"}, []string{"--server", "--creds", "--data"}, nil},
		// Groups name the command they need, and list no help command.
		{[]string{"account"}, []string{"latch account command [command options]"}, []string{"help, h"}},
		{[]string{"operator", "signing-key"}, []string{"latch operator signing-key command"}, []string{"help, h"}},
		{[]string{"client"}, []string{"latch client command"}, []string{"help, h"}},
		// One story of where a device's key is made.
		{[]string{"device", "issue"}, []string{"a key the server makes", "The server makes the device's nkey"}, []string{"made here"}},
		{[]string{"client", "put"}, []string{"--if-revision"}, []string{"(default: 0)"}},
		{[]string{"audit"}, []string{"1 to 10000"}, nil},
	} {
		r := latch(t, nil, append(c.args, "--help")...)
		if r.err != nil {
			t.Errorf("latch %s --help: %v", strings.Join(c.args, " "), r.err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("latch %s --help lacks %q:\n%s", strings.Join(c.args, " "), w, r.stdout)
			}
		}
		for _, w := range c.notWant {
			if strings.Contains(r.stdout, w) {
				t.Errorf("latch %s --help shows %q:\n%s", strings.Join(c.args, " "), w, r.stdout)
			}
		}
	}
	// The words are the product's: enroll, never enrol.
	for _, args := range [][]string{{"--help"}, {"client", "--help"}, {"client", "enroll", "--help"}, {"device", "approve", "--help"}} {
		if out := latch(t, nil, args...).stdout; strings.Contains(out, "enrol ") || strings.Contains(out, "enrolment") {
			t.Errorf("latch %s says enrol:\n%s", strings.Join(args, " "), out)
		}
	}
	// A count the audit trail cannot give is a usage error, not everything.
	for _, n := range []string{"0", "-1", "100000"} {
		if r := latch(t, nil, "audit", "--last", n); exitCode(r.err) != 2 || !strings.Contains(r.err.Error(), "--last") {
			t.Errorf("audit --last %s: %v (exit %d), want a usage error naming --last", n, r.err, exitCode(r.err))
		}
	}
}
