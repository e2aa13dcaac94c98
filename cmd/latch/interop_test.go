package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/keys"
	"github.com/latch-dev/latch/operator"
	"github.com/nats-io/jwt/v2"
)

const natsCLIMissing = "nats CLI not installed; .ci/run installs it with go install github.com/nats-io/natscli/nats@v0.5.0"

// natsCLI finds the public nats CLI.
func natsCLI(t *testing.T) string {
	t.Helper()
	return goTool(t, "nats", natsCLIMissing)
}

// goTool finds a command installed with go install: on PATH, else where
// `go install` puts it. Without it the test is skipped, or fails under CI,
// saying missing.
func goTool(t *testing.T, name, missing string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	var dirs []string
	if gp := os.Getenv("GOPATH"); gp != "" {
		dirs = append(dirs, filepath.Join(gp, "bin"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && (runtime.GOOS == "windows" || fi.Mode().Perm()&0o111 != 0) {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal(missing)
	}
	t.Skip(missing)
	return ""
}

// natsRunner runs the nats CLI against one server with a HOME of its own,
// so no context or config of the user's leaks in.
type natsRunner struct {
	bin, url, home string
}

// run runs `nats --server URL --creds CREDS args…` and returns what it
// printed, stdout and stderr together.
func (n natsRunner) run(t *testing.T, creds string, args ...string) (string, error) {
	t.Helper()
	return n.runWait(t, creds, 10*time.Second, args...)
}

// runWait is run with the CLI's own --timeout, how long it waits for an
// answer.
func (n natsRunner) runWait(t *testing.T, creds string, wait time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	full := append([]string{"--server", n.url, "--creds", creds, "--timeout", wait.String()}, args...)
	cmd := exec.CommandContext(ctx, n.bin, full...)
	cmd.Env = []string{"HOME=" + n.home, "XDG_CONFIG_HOME=" + filepath.Join(n.home, ".config"), "NO_COLOR=1"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("nats %s did not finish within a minute:\n%s", strings.Join(args, " "), out.String())
	}
	return out.String(), err
}

// credsUser is the user public key of a creds file.
func credsUser(t testing.TB, file string) string {
	t.Helper()
	c, err := keys.ReadCreds(file)
	if err != nil {
		t.Fatal(err)
	}
	uc, err := jwt.DecodeUserClaims(c.JWT)
	if err != nil {
		t.Fatal(err)
	}
	return uc.Subject
}

func (n natsRunner) mustRun(t *testing.T, creds string, args ...string) string {
	t.Helper()
	out, err := n.run(t, creds, args...)
	if err != nil {
		t.Fatalf("nats %s with %s: %v\n%s", strings.Join(args, " "), filepath.Base(creds), err, out)
	}
	return out
}

// mustFail runs a command that the device's permissions must refuse. The
// CLI waits for an answer that never comes, so it is told to wait little;
// the server's permissions violation arrives long before.
func (n natsRunner) mustFail(t *testing.T, creds string, args ...string) {
	t.Helper()
	out, err := n.runWait(t, creds, time.Second, args...)
	if err == nil {
		t.Errorf("nats %s with %s worked, want it refused:\n%s", strings.Join(args, " "), filepath.Base(creds), out)
	} else if !strings.Contains(strings.ToLower(out), "permissions violation") {
		t.Errorf("nats %s failed without a permissions violation:\n%s", strings.Join(args, " "), out)
	}
}

// TestNatsCLIInterop uses a device's creds file, as `latch device issue`
// writes it, with the public nats CLI: everything the device template
// allows works unchanged, what it does not is refused. The admin and
// system creds work with it too.
func TestNatsCLIInterop(t *testing.T) {
	t.Parallel()
	n := natsRunner{bin: natsCLI(t), home: t.TempDir()}
	s := mustServe(t, "")
	n.url = s.nats
	alice := strings.TrimSpace(s.mustAdmin(t, "account", "add", "alice").stdout)
	s.mustAdmin(t, "account", "add", "bob")
	dir := t.TempDir()
	laptop, bobPhone := filepath.Join(dir, "laptop.creds"), filepath.Join(dir, "bob-phone.creds")
	laptopKey := strings.TrimSpace(s.mustAdmin(t, "device", "issue", "--account", "alice", "--name", "laptop", "--out", laptop).stdout)
	s.mustAdmin(t, "device", "issue", "--account", "bob", "--name", "phone", "--out", bobPhone)

	// Records: put and get with the CLI, read back with nats.go.
	n.mustRun(t, laptop, "kv", "put", "records", "note1", "hello")
	if out := n.mustRun(t, laptop, "kv", "get", "records", "note1", "--raw"); out != "hello" {
		t.Errorf("nats kv get --raw: got %q, want hello", out)
	}
	if out := n.mustRun(t, laptop, "kv", "get", "records", "note1"); !strings.Contains(out, "hello") {
		t.Errorf("nats kv get: got\n%s\nwant it to show hello", out)
	}
	if got := getRecord(t, mustWatch(t, s.nats, laptop).Conn, "note1"); got != "hello" {
		t.Errorf("nats.go reads what the CLI put: got %q, want hello", got)
	}
	if out := n.mustRun(t, laptop, "kv", "ls"); !strings.Contains(out, "records") {
		t.Errorf("nats kv ls: got\n%s\nwant the records bucket", out)
	}
	if out := n.mustRun(t, laptop, "kv", "ls", "records"); strings.TrimSpace(out) != "note1" {
		t.Errorf("nats kv ls records: got %q, want note1", out)
	}
	if out := n.mustRun(t, laptop, "kv", "history", "records", "note1"); !strings.Contains(out, "hello") {
		t.Errorf("nats kv history: got\n%s\nwant the put of hello", out)
	}
	if out := n.mustRun(t, laptop, "kv", "info", "records"); !strings.Contains(out, "KV_records") {
		t.Errorf("nats kv info: got\n%s\nwant the bucket's stream KV_records", out)
	}

	// Who the device is.
	out := n.mustRun(t, laptop, "account", "info")
	for _, want := range []string{
		`(?m)^\s*User: laptop \(` + laptopKey + `\)$`,
		`(?m)^\s*Account: alice \(` + alice + `\)$`,
		`(?m)^\s*System Account: false$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("nats account info: got\n%s\nwant a line matching %s", out, want)
		}
	}

	// What the template leaves out is refused, and changes nothing.
	n.mustFail(t, laptop, "kv", "add", "other")
	n.mustFail(t, laptop, "kv", "rm", "records", "-f")
	n.mustFail(t, laptop, "pub", "latch.device.UOTHER.x", "hi")
	if out := n.mustRun(t, laptop, "kv", "get", "records", "note1", "--raw"); out != "hello" {
		t.Errorf("after refused commands, nats kv get --raw: got %q, want hello", out)
	}

	// The device's own channel: the CLI publishes, a nats.go client of the
	// same device receives.
	sub, err := mustWatch(t, s.nats, laptop).SubscribeSync("latch.device." + laptopKey + ".>")
	if err != nil {
		t.Fatal(err)
	}
	n.mustRun(t, laptop, "pub", "latch.device."+laptopKey+".hello", "hi")
	if msg, err := sub.NextMsg(30 * time.Second); err != nil || string(msg.Data) != "hi" {
		t.Errorf("own channel: got %v, %v; want hi", msg, err)
	}

	// Another person's device sees its own, empty bucket.
	if out, err := n.run(t, bobPhone, "kv", "get", "records", "note1", "--raw"); err == nil || strings.Contains(out, "hello") {
		t.Errorf("bob's device read alice's record: %v\n%s", err, out)
	}

	// The admin creds reach the admin service with plain nats commands,
	// the system creds the server's own requests.
	admin, sys := filepath.Join(s.data, "admin.creds"), filepath.Join(s.data, "sys.creds")
	// Admin creds receive replies on their own inbox prefix only.
	inbox := "--inbox-prefix=" + operator.AdminInboxPrefix(credsUser(t, admin))
	if out := n.mustRun(t, admin, inbox, "micro", "ls"); !strings.Contains(out, "latch-admin") {
		t.Errorf("nats micro ls: got\n%s\nwant the latch-admin service", out)
	}
	if out := n.mustRun(t, admin, inbox, "req", "latch.admin.v1.account.ls", "{}"); !strings.Contains(out, alice) {
		t.Errorf("nats req latch.admin.v1.account.ls: got\n%s\nwant alice's account", out)
	}
	if out := n.mustRun(t, sys, "server", "ls", "1"); !strings.Contains(out, "latch") {
		t.Errorf("nats server ls with sys.creds: got\n%s\nwant the server named latch", out)
	}
}
