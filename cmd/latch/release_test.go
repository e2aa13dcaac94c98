package main

import (
	"debug/elf"
	"debug/macho"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const goreleaserMissing = "goreleaser not installed; .ci/run installs it with go install github.com/goreleaser/goreleaser/v2@v2.15.1"

// repoRoot is where go.mod and .goreleaser.yaml are: go test runs this
// package's tests in cmd/latch.
const repoRoot = "../.."

// A dev build says what it is; a release says its tag and commit.
func TestVersion(t *testing.T) {
	t.Parallel()
	for _, flag := range []string{"--version", "-v"} {
		r := mustLatch(t, nil, flag)
		if want := "latch version " + version + " (commit " + commit + ")\n"; r.stdout != want {
			t.Errorf("latch %s: got %q, want %q", flag, r.stdout, want)
		}
	}
	if version != "0.1.0-dev" || commit != "unknown" {
		t.Errorf("an unstamped build is version %q commit %q, want 0.1.0-dev and unknown", version, commit)
	}
}

// goreleaser validates .goreleaser.yaml: a config it refuses stops a
// release only once a tag is pushed, so CI finds out first.
func TestReleaseConfigChecks(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(goreleaser(t), "check")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("goreleaser check: %v\n%s", err, out)
	}
}

// The release binaries are stamped with their version and commit, for
// every target docs/release.md promises.
func TestReleaseConfigStampsVersion(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(repoRoot, ".goreleaser.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Builds []struct {
			Main    string   `yaml:"main"`
			Env     []string `yaml:"env"`
			Ldflags []string `yaml:"ldflags"`
			Targets []string `yaml:"targets"`
		} `yaml:"builds"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf(".goreleaser.yaml: %v", err)
	}
	if len(cfg.Builds) != 1 {
		t.Fatalf(".goreleaser.yaml has %d builds, want 1", len(cfg.Builds))
	}
	build := cfg.Builds[0]
	if build.Main != "./cmd/latch" {
		t.Errorf("build main: got %q, want ./cmd/latch", build.Main)
	}
	if !slices.Contains(build.Env, "CGO_ENABLED=0") {
		t.Errorf("build env %q lacks CGO_ENABLED=0", build.Env)
	}
	// main.version and main.commit are the variables TestVersion prints.
	ldflags := strings.Join(build.Ldflags, " ")
	for _, want := range []string{"-X main.version={{.Version}}", "-X main.commit={{.ShortCommit}}"} {
		if !strings.Contains(ldflags, want) {
			t.Errorf("ldflags %q lack %q", ldflags, want)
		}
	}
	for _, want := range []string{"linux_amd64_v1", "linux_arm64", "linux_arm_7", "darwin_amd64_v1", "darwin_arm64", "windows_amd64_v1", "windows_arm64", "android_arm64"} {
		if !slices.Contains(build.Targets, want) {
			t.Errorf("targets %q lack %s", build.Targets, want)
		}
	}
}

// latch builds for the arm64 machines people run it on (a Linux server, a
// Mac) without cgo, as goreleaser builds it. With a warm build cache this
// is a link per target.
func TestReleaseCrossBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP: cross-compiling takes a while; run without -short")
	}
	t.Parallel()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("SKIP: no go command on PATH")
	}
	for _, c := range []struct {
		goos, goarch string
		isArm64      func(path string) (bool, error)
	}{
		{"linux", "arm64", func(p string) (bool, error) {
			f, err := elf.Open(p)
			if err != nil {
				return false, err
			}
			defer f.Close()
			return f.Machine == elf.EM_AARCH64, nil
		}},
		{"darwin", "arm64", func(p string) (bool, error) {
			f, err := macho.Open(p)
			if err != nil {
				return false, err
			}
			defer f.Close()
			return f.Cpu == macho.CpuArm64, nil
		}},
	} {
		// One at a time: a cold build cache compiles everything, and the
		// cluster tests beside it are better off with a core to spare.
		t.Run(c.goos+"_"+c.goarch, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "latch")
			// -trimpath as goreleaser builds, so the two share the build cache.
			cmd := exec.Command(gobin, "build", "-trimpath", "-o", out, "./cmd/latch")
			cmd.Dir = repoRoot
			cmd.Env = append(os.Environ(), "GOOS="+c.goos, "GOARCH="+c.goarch, "CGO_ENABLED=0")
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("GOOS=%s GOARCH=%s go build: %v\n%s", c.goos, c.goarch, err, b)
			}
			ok, err := c.isArm64(out)
			if err != nil {
				t.Fatalf("read %s: %v", out, err)
			}
			if !ok {
				t.Errorf("%s is not an %s/%s binary", out, c.goos, c.goarch)
			}
		})
	}
}

// goreleaser finds the goreleaser command.
func goreleaser(t *testing.T) string {
	t.Helper()
	return goTool(t, "goreleaser", goreleaserMissing)
}
