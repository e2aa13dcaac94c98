package views

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedFilesAreFresh fails when a .templ file was changed without
// `make generate`: it generates every view again in a scratch folder and
// compares the result with the committed *_templ.go files.
func TestGeneratedFilesAreFresh(t *testing.T) {
	out, err := exec.Command("go", "tool", "-n", "templ").Output()
	if err != nil {
		t.Fatalf("find the templ tool (go.mod's tool directive): %v", err)
	}
	templ := strings.TrimSpace(string(out))
	scratch := t.TempDir()
	if err := os.MkdirAll(filepath.Join(scratch, "views"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The module's go.mod beside them makes templ name files as it does here.
	copyFile(t, filepath.Join("..", "go.mod"), filepath.Join(scratch, "go.mod"))
	sources, _ := filepath.Glob("*.templ")
	if len(sources) == 0 {
		t.Fatal("no .templ files found")
	}
	for _, src := range sources {
		copyFile(t, src, filepath.Join(scratch, "views", src))
	}
	cmd := exec.Command(templ, "generate", "-path", "views")
	cmd.Dir = scratch
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("templ generate: %v\n%s", err, out)
	}
	for _, src := range sources {
		gen := strings.TrimSuffix(src, ".templ") + "_templ.go"
		want, err := os.ReadFile(filepath.Join(scratch, "views", gen))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(gen)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("views/%s is stale or missing; run `make generate` and commit the result", gen)
		}
	}
	generated, _ := filepath.Glob("*_templ.go")
	if len(generated) != len(sources) {
		t.Errorf("%d generated files for %d .templ files; remove the generated files of deleted views", len(generated), len(sources))
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
