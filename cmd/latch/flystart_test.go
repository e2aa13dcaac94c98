//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/client"
	"github.com/latch-dev/latch/internal/latchtest"
)

// flyNet is three network namespaces on a bridge, each a stand-in for a
// fly machine: its own address (FLY_PRIVATE_IP), its own ports, and an
// /etc/hosts that answers the names fly's DNS does: fly-local-6pn (the
// machine's private address), <app>.internal (every machine),
// <region>.<app>.internal (the machines of a region; one here) and
// <machine>.vm.<app>.internal.
type flyNet struct {
	app, bridge string
	prefix      string // 10.213.N.
	ns          []string
	machines    []string
}

// nobody is the uid and gid the machines' latch runs as.
const nobody = 65534

func mustFlyNet(t *testing.T, app string, regions []string) *flyNet {
	t.Helper()
	latchtest.NeedRoot(t, "it makes network namespaces")
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Fatalf("the fly start-up test needs iproute2 (.ci/run installs it): %v", err)
	}
	id := os.Getpid() % 10000
	f := &flyNet{app: app, bridge: fmt.Sprintf("lfb%d", id), prefix: fmt.Sprintf("10.213.%d.", 20+id%200)}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		for i, ns := range f.ns {
			exec.Command(ip, "netns", "del", ns).Run()
			exec.Command(ip, "link", "del", fmt.Sprintf("lfv%d-%d", i+1, id)).Run()
			os.RemoveAll(filepath.Join("/etc/netns", ns))
		}
		exec.Command(ip, "link", "del", f.bridge).Run()
	})
	run("link", "add", f.bridge, "type", "bridge")
	run("addr", "add", f.prefix+"254/24", "dev", f.bridge)
	run("link", "set", f.bridge, "up")
	for i := 1; i <= len(regions); i++ {
		f.ns = append(f.ns, fmt.Sprintf("lfn%d-%d", i, id))
		f.machines = append(f.machines, fmt.Sprintf("m%d%d", i, id))
	}
	for i, ns := range f.ns {
		host, peer := fmt.Sprintf("lfv%d-%d", i+1, id), fmt.Sprintf("lfp%d-%d", i+1, id)
		run("netns", "add", ns)
		run("link", "add", host, "type", "veth", "peer", "name", peer)
		run("link", "set", peer, "netns", ns)
		run("link", "set", host, "master", f.bridge, "up")
		run("-n", ns, "addr", "add", f.addr(i)+"/24", "dev", peer)
		run("-n", ns, "link", "set", peer, "up")
		run("-n", ns, "link", "set", "lo", "up")
		// ip netns exec mounts /etc/netns/<ns>/hosts on /etc/hosts.
		hosts := fmt.Sprintf("127.0.0.1 localhost\n%s fly-local-6pn\n", f.addr(i))
		for j, m := range f.machines {
			hosts += fmt.Sprintf("%s %s.internal\n%s %s.vm.%s.internal\n%s %s.%s.internal\n",
				f.addr(j), app, f.addr(j), m, app, f.addr(j), regions[j], app)
		}
		if err := os.MkdirAll(filepath.Join("/etc/netns", ns), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("/etc/netns", ns, "hosts"), []byte(hosts), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// addr is machine i's private address.
func (f *flyNet) addr(i int) string { return f.prefix + strconv.Itoa(i+1) }

// flyMachine is latch started in one of flyNet's machines.
type flyMachine struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	data string
	done chan error
}

// The linux/amd64 binary, built as the image builds it (make static),
// started as fly starts a machine: the image's command, with only the
// FLY_* variables, fly.toml's [env], the image's ENV and the LATCH_IDENTITY
// secret; one machine as root with a root-owned volume as fly mounts it
// (latch gives it to LATCH_RUN_AS and drops root), the others as the
// unprivileged user from the start, each on an empty data folder. The
// three become ready as one cluster in three regions, tell devices the
// public TLS-first name, keep the setup link out of their logs, and stop
// cleanly on SIGTERM within fly.toml's kill_timeout.
func TestFlyStartUp(t *testing.T) {
	t.Parallel()
	fly := mustFlyConfig(t)
	regions := strings.Split(fly.Env["LATCH_REGIONS"], ",")
	net := mustFlyNet(t, "latchfly", regions)
	rc := mustRuntimeCommand(t, mustDockerfile(t))

	base, err := os.MkdirTemp("", "latchfly-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "latch")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	mk := exec.CommandContext(ctx, "make", "-s", "static", "STATIC="+bin, "VERSION=1.2.3", "COMMIT=flytest")
	mk.Dir = repoRoot
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make static: %v\n%s", err, out)
	}

	laptop := filepath.Join(t.TempDir(), "acme")
	mustLatch(t, nil, "init", "--name", "acme", "--data", laptop)
	identity := mustLatch(t, nil, "identity", "export", "--data", laptop).stdout

	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux): %v", err)
	}
	timeout, _ := time.ParseDuration(fly.KillTimeout)
	if rc.runAs != fmt.Sprintf("%d:%d", 65532, 65532) {
		t.Fatalf("the image's LATCH_RUN_AS %q: the test expects 65532:65532", rc.runAs)
	}
	machines := make([]*flyMachine, 3)
	for i := range machines {
		m := &flyMachine{logs: &syncBuffer{}, done: make(chan error, 1), data: filepath.Join(base, "volume"+strconv.Itoa(i+1))}
		if err := os.Mkdir(m.data, 0o755); err != nil {
			t.Fatal(err)
		}
		args := slices.Clone(rc.cmd)
		args[slices.Index(args, "--data")+1] = m.data // the volume's mount point
		environ := []string{
			"FLY_APP_NAME=" + net.app, "FLY_MACHINE_ID=" + net.machines[i], "FLY_ALLOC_ID=" + net.machines[i],
			"FLY_REGION=" + regions[i], "FLY_PRIVATE_IP=" + net.addr(i), "PRIMARY_REGION=" + fly.PrimaryRegion,
			"FLY_PROCESS_GROUP=app", "FLY_VM_MEMORY_MB=512", "LATCH_IDENTITY=" + identity,
		}
		for k, v := range fly.Env {
			environ = append(environ, k+"="+v)
		}
		cmdline := append([]string{"netns", "exec", net.ns[i]}, append([]string{bin}, args...)...)
		if i == 0 {
			// As the image starts: root, with LATCH_RUN_AS, on a new ext4
			// volume as fly mounts it (root's, with lost+found).
			if err := os.Mkdir(filepath.Join(m.data, "lost+found"), 0o700); err != nil {
				t.Fatal(err)
			}
			environ = append(environ, "LATCH_RUN_AS="+rc.runAs)
		} else {
			if err := os.Chown(m.data, nobody, nobody); err != nil {
				t.Fatal(err)
			}
			cmdline = append([]string{"netns", "exec", net.ns[i], setpriv,
				"--reuid=" + strconv.Itoa(nobody), "--regid=" + strconv.Itoa(nobody), "--clear-groups", "--"},
				append([]string{bin}, args...)...)
		}
		m.cmd = exec.Command("/usr/sbin/ip", cmdline...)
		if p, err := exec.LookPath("ip"); err == nil {
			m.cmd.Path = p
		}
		m.cmd.Env = environ
		m.cmd.Stdout, m.cmd.Stderr = m.logs, m.logs
		if err := m.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { m.done <- m.cmd.Wait() }()
		machines[i] = m
		t.Cleanup(func() {
			select {
			case <-m.done:
			default:
				m.cmd.Process.Kill()
				<-m.done
			}
			if t.Failed() {
				t.Logf("machine %d's log:\n%s", i+1, m.logs)
			}
		})
	}
	web := &http.Client{Timeout: 5 * time.Second}
	var wg sync.WaitGroup
	for i, m := range machines {
		wg.Go(func() {
			url := fmt.Sprintf("http://%s:%d/healthz", net.addr(i), portOf(t, argAfter(rc.cmd, "--http")))
			deadline := time.Now().Add(3 * time.Minute)
			for {
				resp, err := web.Get(url)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						return
					}
				}
				select {
				case err := <-m.done:
					m.done <- err
					t.Errorf("machine %d stopped while starting: %v", i+1, err)
					return
				case <-time.After(250 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Errorf("machine %d not ready after 3 min (%s)", i+1, url)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// Every latch runs unprivileged; the root-started one gave its volume
	// away first.
	for i, m := range machines {
		want := nobody
		if i == 0 {
			want = 65532
		}
		if uid := procUID(t, m.cmd.Process.Pid); uid != want {
			t.Errorf("machine %d runs as uid %d, want %d", i+1, uid, want)
		}
	}
	filepath.WalkDir(machines[0].data, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.Sys().(*syscall.Stat_t).Uid != 65532 {
			t.Errorf("%s is owned by uid %d, want 65532 (LATCH_RUN_AS)", path, fi.Sys().(*syscall.Stat_t).Uid)
			return filepath.SkipAll
		}
		return nil
	})

	// One cluster in three regions, the names fly gives.
	admin := map[string]string{"LATCH_DATA": laptop, "LATCH_SERVER": fmt.Sprintf("nats://%s:%d", net.addr(1), portOf(t, argAfter(rc.cmd, "--nats")))}
	var status accounts.ClusterStatus
	decodeJSON(t, mustLatch(t, admin, "cluster", "status", "--json"), &status)
	var got []string
	for _, n := range status.Nodes {
		got = append(got, n.Name+"@"+n.Region)
	}
	slices.Sort(got)
	var want []string
	for i, m := range net.machines {
		want = append(want, m+"@"+regions[i])
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("cluster status nodes %v, want %v", got, want)
	}

	// Each node's setup link is in a 0600 file of its volume, not in the
	// log; latch setup-link prints it, as fly ssh console -C "/latch
	// setup-link" does with the image's LATCH_DATA.
	var link string
	for i, m := range machines {
		file := filepath.Join(m.data, setupLinkFile)
		b, err := os.ReadFile(file)
		if err != nil {
			t.Errorf("machine %d: %v", i+1, err)
			continue
		}
		link = strings.TrimSpace(string(b))
		if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("machine %d's %s: %v, mode %v; want 0600", i+1, setupLinkFile, err, fi.Mode().Perm())
		}
		show := exec.Command(bin, "setup-link")
		show.Env = []string{"LATCH_DATA=" + m.data}
		if out, err := show.Output(); err != nil || strings.TrimSpace(string(out)) != link {
			t.Errorf("latch setup-link on machine %d's volume: %q, %v; want %q", i+1, out, err, link)
		}
	}
	if !strings.HasPrefix(link, "https://"+net.app+".fly.dev/") {
		t.Errorf("the setup link %q, want one on https://%s.fly.dev", link, net.app)
	}
	for i, m := range machines {
		if logs := m.logs.String(); strings.Contains(logs, "/setup/") || !strings.Contains(logs, setupLinkFile) {
			t.Errorf("machine %d's log shows a setup link, or does not say where it is:\n%s", i+1, logs)
		}
	}

	// A device that enrolls is told the public name, TLS first.
	mustLatch(t, admin, "account", "add", "alice")
	ectx, ecancel := context.WithTimeout(context.Background(), time.Minute)
	defer ecancel()
	p, err := client.StartEnroll(ectx, client.EnrollOptions{URL: fmt.Sprintf("http://%s:%d", net.addr(2), portOf(t, argAfter(rc.cmd, "--http"))),
		Name: "phone", Home: filepath.Join(t.TempDir(), "home")})
	if err != nil {
		t.Fatal(err)
	}
	mustLatch(t, admin, "device", "approve", "--account", "alice", p.UserCode)
	d, err := p.Wait(ectx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.Servers, []string{"tls://" + net.app + ".fly.dev:4222"}) || !d.TLSFirst {
		t.Errorf("the device was told %v, TLS first %v; want [tls://%s.fly.dev:4222], TLS first", d.Servers, d.TLSFirst, net.app)
	}

	// fly stops a machine with kill_signal, and kills it after kill_timeout.
	for i, m := range machines {
		began := time.Now()
		if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-m.done:
			m.done <- err
			if err != nil {
				t.Errorf("machine %d on SIGTERM: %v", i+1, err)
			}
			t.Logf("machine %d stopped %s after SIGTERM", i+1, time.Since(began).Round(100*time.Millisecond))
		case <-time.After(timeout):
			t.Errorf("machine %d still running %s (kill_timeout) after SIGTERM", i+1, timeout)
		}
	}
	for i, m := range machines {
		if logs := m.logs.String(); !strings.Contains(logs, "latch is ready") {
			t.Errorf("machine %d's log does not say it was ready:\n%s", i+1, logs)
		}
	}
}

// procUID is the real uid process pid runs as.
func procUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range bytes.Lines(b) {
		if f := strings.Fields(string(line)); len(f) > 1 && f[0] == "Uid:" {
			uid, _ := strconv.Atoi(f[1])
			return uid
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return -1
}
