package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// jsDir holds the nats.js scripts and their package-lock.json.
const jsDir = "../../interop/js"

// nodeModules installs interop/js's pinned npm packages (npm ci) when they
// are missing, and returns the node binary. Node is on every machine; a
// machine without it skips, or fails under CI.
func nodeModules(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node is not installed")
		}
		t.Skip("node is not installed; the nats.js tests need it")
	}
	if _, err := os.Stat(filepath.Join(jsDir, "node_modules", "nats", "package.json")); err == nil {
		return node
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = jsDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in interop/js: %v\n%s", err, out)
	}
	return node
}

// jsResult is what interop/js/drive.mjs reports.
type jsResult struct {
	Get         string   `json:"get"`
	Updated     bool     `json:"updated"`
	StaleUpdate string   `json:"staleUpdate"`
	Deleted     bool     `json:"deleted"`
	Keys        []string `json:"keys"`
	History     []string `json:"history"`
	Watched     bool     `json:"watched"`
}

// A device's creds work unchanged with the official nats.js clients, v3
// (@nats-io/kv) and v2 (nats), with their default options: put, get,
// update with a revision, delete, keys, history and watch.
func TestNatsJSWithDeviceCreds(t *testing.T) {
	t.Parallel()
	node := nodeModules(t)
	s := mustServe(t, "")
	for person, script := range map[string]string{"alice": "kv3.mjs", "bob": "kv2.mjs"} {
		t.Run(script, func(t *testing.T) {
			// A person each: a bucket of their own, with no history yet.
			s.mustAdmin(t, "account", "add", person)
			creds := filepath.Join(t.TempDir(), "device.creds")
			s.mustAdmin(t, "device", "issue", "--account", person, "--name", strings.TrimSuffix(script, ".mjs"), "--out", creds)
			mustDriveJS(t, node, script, s.nats, creds)
		})
	}
}

// mustDriveJS runs interop/js's script (kv3.mjs or kv2.mjs) with URL,
// creds and args, and checks what it did with the device's records.
func mustDriveJS(t *testing.T, node, script, url, creds string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{script, url, creds}, args...)...)
	cmd.Dir = jsDir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, stderr.String())
	}
	var r jsResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("node %s printed %q: %v", script, out, err)
	}
	want := jsResult{Get: "one", Updated: true, StaleUpdate: "refused", Deleted: true,
		Keys: []string{"note"}, History: []string{"one", "two"}, Watched: true}
	if r.Get != want.Get || r.Updated != want.Updated || r.StaleUpdate != want.StaleUpdate || r.Deleted != want.Deleted ||
		!slices.Equal(r.Keys, want.Keys) || !slices.Equal(r.History, want.History) || r.Watched != want.Watched {
		t.Errorf("node %s: got %+v, want %+v", script, r, want)
	}
}
