package main

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v2"
	"golang.org/x/mod/modfile"
)

// flyConfig is what of fly.toml the deployment depends on.
type flyConfig struct {
	App           string            `toml:"app"`
	PrimaryRegion string            `toml:"primary_region"`
	KillSignal    string            `toml:"kill_signal"`
	KillTimeout   string            `toml:"kill_timeout"`
	Env           map[string]string `toml:"env"`
	Build         struct {
		Dockerfile string `toml:"dockerfile"`
	} `toml:"build"`
	Deploy struct {
		Strategy       string `toml:"strategy"`
		MaxUnavailable int    `toml:"max_unavailable"`
	} `toml:"deploy"`
	Mounts []struct {
		Source      string `toml:"source"`
		Destination string `toml:"destination"`
	} `toml:"mounts"`
	HTTPService struct {
		InternalPort       int    `toml:"internal_port"`
		ForceHTTPS         bool   `toml:"force_https"`
		AutoStopMachines   string `toml:"auto_stop_machines"`
		MinMachinesRunning int    `toml:"min_machines_running"`
		Checks             []struct {
			Method string `toml:"method"`
			Path   string `toml:"path"`
		} `toml:"checks"`
	} `toml:"http_service"`
	Services []struct {
		InternalPort     int    `toml:"internal_port"`
		Protocol         string `toml:"protocol"`
		AutoStopMachines string `toml:"auto_stop_machines"`
		Ports            []struct {
			Port     int      `toml:"port"`
			Handlers []string `toml:"handlers"`
		} `toml:"ports"`
	} `toml:"services"`
}

func mustFlyConfig(t testing.TB) flyConfig {
	t.Helper()
	var f flyConfig
	md, err := toml.DecodeFile("../../fly.toml", &f)
	if err != nil {
		t.Fatalf("fly.toml: %v", err)
	}
	_ = md
	return f
}

// dockerfile is the Dockerfile's instructions, stage by stage.
type dockerfile struct {
	args   map[string]string // global ARGs, before the first FROM
	stages []dockerStage
}

type dockerStage struct {
	from, name string
	lines      []dockerLine // every instruction after FROM
}

type dockerLine struct{ op, rest string }

// find returns the stage's instructions of op.
func (s dockerStage) find(op string) []string {
	var out []string
	for _, l := range s.lines {
		if l.op == op {
			out = append(out, l.rest)
		}
	}
	return out
}

func mustDockerfile(t testing.TB) dockerfile {
	t.Helper()
	f, err := os.Open("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := dockerfile{args: map[string]string{}}
	sc := bufio.NewScanner(f)
	var cont string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || line == "" && cont == "" {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cont += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line, cont = cont+line, ""
		op, rest, _ := strings.Cut(line, " ")
		op, rest = strings.ToUpper(op), strings.TrimSpace(rest)
		switch {
		case op == "FROM":
			from, name, _ := strings.Cut(rest, " AS ")
			d.stages = append(d.stages, dockerStage{from: strings.TrimSpace(from), name: strings.TrimSpace(name)})
		case len(d.stages) == 0 && op == "ARG":
			k, v, _ := strings.Cut(rest, "=")
			d.args[k] = v
		case len(d.stages) > 0:
			d.stages[len(d.stages)-1].lines = append(d.stages[len(d.stages)-1].lines, dockerLine{op, rest})
		default:
			t.Fatalf("Dockerfile: %s before the first FROM", op)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(d.stages) < 2 {
		t.Fatalf("Dockerfile: %d stages, want a build stage and a runtime stage", len(d.stages))
	}
	return d
}

// execForm parses a JSON-array instruction (CMD, ENTRYPOINT).
func execForm(t testing.TB, op, rest string) []string {
	t.Helper()
	var out []string
	if err := json.Unmarshal([]byte(rest), &out); err != nil {
		t.Fatalf("Dockerfile %s %s: not the exec form (a JSON array): %v", op, rest, err)
	}
	return out
}

// argAfter is the value after flag in args, "" when absent.
func argAfter(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// runtimeCommand is the runtime stage's ENTRYPOINT and CMD, its ENV, and
// the user it gives the data folder to: how the image starts latch, on
// fly and on a laptop.
type runtimeCommand struct {
	cmd   []string // serve and its flags
	env   map[string]string
	runAs string
}

func mustRuntimeCommand(t testing.TB, d dockerfile) runtimeCommand {
	t.Helper()
	rt := d.stages[len(d.stages)-1]
	ep := rt.find("ENTRYPOINT")
	cmd := rt.find("CMD")
	if len(ep) != 1 || len(cmd) != 1 {
		t.Fatalf("Dockerfile runtime stage: ENTRYPOINT %v, CMD %v; want one of each", ep, cmd)
	}
	if e := execForm(t, "ENTRYPOINT", ep[0]); !slices.Equal(e, []string{"/latch"}) {
		t.Errorf("ENTRYPOINT %v, want [/latch]", e)
	}
	r := runtimeCommand{cmd: execForm(t, "CMD", cmd[0]), env: map[string]string{}}
	for _, e := range rt.find("ENV") {
		k, v, _ := strings.Cut(e, "=")
		r.env[k] = v
	}
	r.runAs = r.env["LATCH_RUN_AS"]
	return r
}

// fly.toml holds what a deployment in three regions depends on, and
// agrees with the Dockerfile and with latch's own defaults: a future edit
// that breaks the deployment fails here.
func TestFlyConfig(t *testing.T) {
	f := mustFlyConfig(t)
	d := mustDockerfile(t)
	rc := mustRuntimeCommand(t, d)

	if f.App == "" || f.PrimaryRegion == "" {
		t.Errorf("app %q, primary_region %q: want both", f.App, f.PrimaryRegion)
	}
	regions := strings.Split(f.Env["LATCH_REGIONS"], ",")
	if len(regions) != 3 || regions[0] != f.PrimaryRegion || regions[0] == regions[1] || regions[1] == regions[2] || regions[0] == regions[2] {
		t.Errorf("LATCH_REGIONS %q: want three regions, primary_region (%s) first", f.Env["LATCH_REGIONS"], f.PrimaryRegion)
	}
	if f.Build.Dockerfile != "Dockerfile" {
		t.Errorf("build.dockerfile %q, want the repository's Dockerfile", f.Build.Dockerfile)
	}

	// Stopping: SIGTERM, and time for the lame duck and JetStream's flush.
	if f.KillSignal != "SIGTERM" {
		t.Errorf("kill_signal %q, want SIGTERM (latch's lame duck)", f.KillSignal)
	}
	kill, err := time.ParseDuration(f.KillTimeout)
	if err != nil {
		t.Fatalf("kill_timeout %q: %v", f.KillTimeout, err)
	}
	lameDuck := serveFlagDefault(t, "lame-duck").(*cli.DurationFlag).Value
	if kill < lameDuck+10*time.Second {
		t.Errorf("kill_timeout %s: want at least the lame duck (%s) and 10 s to stop JetStream", kill, lameDuck)
	}

	if f.Deploy.Strategy != "rolling" || f.Deploy.MaxUnavailable != 1 {
		t.Errorf("deploy %+v: want rolling, one machine at a time", f.Deploy)
	}

	// The volume is where the image keeps its data.
	if len(f.Mounts) != 1 || f.Mounts[0].Destination != "/data" || f.Mounts[0].Source == "" {
		t.Errorf("mounts %+v: want one volume at /data", f.Mounts)
	}
	if got := argAfter(rc.cmd, "--data"); got != "/data" {
		t.Errorf("the image's --data %q, want /data (the mount)", got)
	}
	if !slices.Contains(d.stages[len(d.stages)-1].find("VOLUME"), "/data") {
		t.Error("the Dockerfile declares no VOLUME /data")
	}

	// The web: fly's https in front of --http, never stopped, the health
	// check on latch's /healthz.
	httpPort := portOf(t, argAfter(rc.cmd, "--http"))
	h := f.HTTPService
	if h.InternalPort != httpPort || !h.ForceHTTPS || h.AutoStopMachines != "off" || h.MinMachinesRunning != 3 {
		t.Errorf("http_service %+v: want internal_port %d (the image's --http), https forced, machines never stopped, 3 running", h, httpPort)
	}
	if len(h.Checks) != 1 || h.Checks[0].Path != "/healthz" {
		t.Errorf("http_service checks %+v: want latch's /healthz", h.Checks)
	}

	// NATS: 4222 behind fly's tls handler, to the image's --nats; nothing
	// public reaches the route port.
	natsPort := portOf(t, argAfter(rc.cmd, "--nats"))
	_, routePort, err := net.SplitHostPort(f.Env["LATCH_CLUSTER"])
	if err != nil || !strings.HasPrefix(f.Env["LATCH_CLUSTER"], "fly-local-6pn:") {
		t.Errorf("LATCH_CLUSTER %q: want fly-local-6pn:PORT, routes on the private network only", f.Env["LATCH_CLUSTER"])
	}
	var nats int
	for _, s := range f.Services {
		if strconv.Itoa(s.InternalPort) == routePort {
			t.Errorf("a service exposes the route port %s", routePort)
		}
		if s.InternalPort != natsPort {
			continue
		}
		nats++
		if s.Protocol != "tcp" || s.AutoStopMachines != "off" || len(s.Ports) != 1 || s.Ports[0].Port != 4222 ||
			!slices.Equal(s.Ports[0].Handlers, []string{"tls"}) {
			t.Errorf("the NATS service %+v: want tcp, public port 4222 with the tls handler only, never stopped", s)
		}
	}
	if nats != 1 {
		t.Errorf("%d services reach the image's NATS port %d, want 1", nats, natsPort)
	}
	// latch on fly tells devices <app>.fly.dev:4222 behind that handler.
	if !strings.Contains(serveFlagDefault(t, "client-advertise").(*cli.StringFlag).Usage, ".fly.dev:4222") {
		t.Error("--client-advertise's help does not name the fly default the NATS service serves")
	}

	// Every LATCH_ variable set is one latch reads.
	src := latchSource(t)
	for k := range f.Env {
		if !strings.HasPrefix(k, "LATCH_") || !strings.Contains(src, `"`+k+`"`) {
			t.Errorf("fly.toml [env] %s: latch reads no such variable", k)
		}
	}
}

// The Dockerfile builds with the Makefile's static target and the Go of
// go.mod, and runs that binary as the image's entrypoint, unprivileged.
func TestDockerfile(t *testing.T) {
	d := mustDockerfile(t)
	build, rt := d.stages[0], d.stages[len(d.stages)-1]

	goMod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(goMod)
	if goLine == nil || d.args["GO_VERSION"] != string(goLine[1]) {
		t.Errorf("Dockerfile GO_VERSION %q, go.mod's go %s: want the same", d.args["GO_VERSION"], goLine[1])
	}
	if build.from != "golang:${GO_VERSION}-bookworm" || build.name != "build" {
		t.Errorf("build stage FROM %q AS %q, want golang:${GO_VERSION}-bookworm AS build", build.from, build.name)
	}

	// Every local replacement in go.mod is in the build before the
	// modules are downloaded: go mod download needs it.
	mf, err := modfile.Parse("go.mod", goMod, nil)
	if err != nil {
		t.Fatal(err)
	}
	var copied []string
	for _, l := range build.lines {
		if l.op == "RUN" && strings.HasPrefix(l.rest, "go mod download") {
			for _, r := range mf.Replace {
				if strings.HasPrefix(r.New.Path, "./") && !slices.ContainsFunc(copied, func(c string) bool {
					return strings.HasPrefix(strings.TrimPrefix(r.New.Path, "./"), strings.TrimSuffix(strings.TrimPrefix(c, "./"), "/"))
				}) {
					t.Errorf("go.mod replaces %s with %s, which the build stage does not copy before go mod download", r.Old.Path, r.New.Path)
				}
			}
			break
		}
		if l.op == "COPY" {
			if f := strings.Fields(l.rest); len(f) >= 2 {
				copied = append(copied, f[:len(f)-1]...)
			}
		}
	}

	// The build is `make static`, whose recipe is the static build.
	var static string
	for _, r := range build.find("RUN") {
		if strings.HasPrefix(r, "make static ") {
			static = r
		}
	}
	if static == "" {
		t.Fatalf("the build stage does not run `make static`: %v", build.find("RUN"))
	}
	out := regexp.MustCompile(`STATIC=(\S+)`).FindStringSubmatch(static)
	if out == nil || !strings.Contains(static, `VERSION="${VERSION}"`) || !strings.Contains(static, `COMMIT="${COMMIT}"`) {
		t.Errorf("RUN %s: want STATIC=, VERSION and COMMIT from the build args", static)
	}
	recipe := makeRecipe(t, "static")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=$(VERSION)", "-X main.commit=$(COMMIT)", "-o $(STATIC)", "./cmd/latch"} {
		if !strings.Contains(recipe, want) {
			t.Errorf("the Makefile's static recipe %q lacks %q", recipe, want)
		}
	}

	// The runtime stage: no shell, the binary from the build as
	// /latch, the data folder given to the user latch drops to.
	if !strings.HasPrefix(rt.from, "gcr.io/distroless/static") {
		t.Errorf("runtime FROM %q, want distroless static (no shell, no packages)", rt.from)
	}
	copies := rt.find("COPY")
	if out != nil && !slices.Contains(copies, "--from=build "+out[1]+" /latch") {
		t.Errorf("runtime COPY %v: want --from=build %s /latch", copies, out[1])
	}
	rc := mustRuntimeCommand(t, d)
	if _, _, err := parseRunAs(rc.runAs); err != nil || rc.runAs == "0:0" {
		t.Errorf("LATCH_RUN_AS %q: want a uid:gid other than root's (%v)", rc.runAs, err)
	}
	var chowned bool
	for _, c := range copies {
		chowned = chowned || strings.HasPrefix(c, "--from=build --chown="+rc.runAs+" ") && strings.HasSuffix(c, " /data")
	}
	if !chowned {
		t.Errorf("runtime COPY %v: want /data made owned by %s (LATCH_RUN_AS)", copies, rc.runAs)
	}
	if rc.env["LATCH_DATA"] != argAfter(rc.cmd, "--data") {
		t.Errorf("ENV LATCH_DATA %q, CMD --data %q: want the same, for commands run in the container", rc.env["LATCH_DATA"], argAfter(rc.cmd, "--data"))
	}
	if rc.cmd[0] != "serve" || argAfter(rc.cmd, "--http") == "" || argAfter(rc.cmd, "--nats") == "" {
		t.Errorf("CMD %v: want serve with --http and --nats other machines reach", rc.cmd)
	}
	for _, flag := range []string{"--http", "--nats"} {
		host, _, err := net.SplitHostPort(argAfter(rc.cmd, flag))
		if err != nil || host != "0.0.0.0" {
			t.Errorf("CMD %s %q: want 0.0.0.0:PORT, reachable from outside the container", flag, argAfter(rc.cmd, flag))
		}
	}
}

// makeRecipe is the command of a one-line Makefile target.
func makeRecipe(t testing.TB, target string) string {
	t.Helper()
	b, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(target) + `:.*\n\t(.+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("the Makefile has no %s target", target)
	}
	return string(m[1])
}

func portOf(t testing.TB, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(p)
	if err != nil || perr != nil {
		t.Fatalf("%q: want host:port", addr)
	}
	return n
}

// serveFlagDefault is `latch serve`'s flag name.
func serveFlagDefault(t testing.TB, name string) cli.Flag {
	t.Helper()
	for _, f := range serveCommand(&env{}).Flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	t.Fatalf("latch serve has no --%s", name)
	return nil
}

// latchSource is the text of every non-test Go file of latch.
func latchSource(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir("../..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".git") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			src, err := os.ReadFile(path)
			b.Write(src)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
