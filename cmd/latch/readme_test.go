package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/client"
)

// readmeLine is a command of the README's code blocks.
type readmeLine struct {
	text    string // as written, without its comment
	comment string
	n       int // line number in README.md
}

// readmeCommands are the `latch`, `nats` and `echo … | latch` lines of the
// README's code blocks, in order.
func readmeCommands(t *testing.T) []readmeLine {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	comment := regexp.MustCompile(`\s+#\s.*$`)
	var out []readmeLine
	in := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		if strings.HasPrefix(l, "```") {
			in = !in
			continue
		}
		if !in {
			continue
		}
		text := strings.TrimSpace(comment.ReplaceAllString(l, ""))
		if !strings.HasPrefix(text, "latch ") && !strings.HasPrefix(text, "nats ") && !strings.HasPrefix(text, "echo ") {
			continue
		}
		out = append(out, readmeLine{text: text, comment: strings.TrimSpace(strings.TrimPrefix(l, comment.ReplaceAllString(l, ""))), n: n})
	}
	return out
}

// words splits a command line as a shell would, for what the README
// holds: words, 'single quotes', a pipe from echo and a redirect.
func words(s string) []string {
	var out []string
	var cur strings.Builder
	quoted, in := false, false
	for _, r := range s {
		switch {
		case r == '\'':
			quoted, in = !quoted, true
		case r == ' ' && !quoted:
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// TestReadmeTour runs the README's commands in the order it gives them,
// against a real server, as a new user would: each works (or, where the
// README says so, is refused), so the README cannot drift from the
// product. What a person does in a browser, and what the README leaves
// for the reader to fill in, is done here and said where.
func TestReadmeTour(t *testing.T) {
	n := natsRunner{bin: natsCLI(t), home: t.TempDir()}
	lines := readmeCommands(t)
	if len(lines) < 40 {
		t.Fatalf("found %d commands in README.md; the parser missed some", len(lines))
	}
	dir := t.TempDir()
	t.Chdir(dir) // the README writes laptop.creds, server.conf … where it runs
	data := filepath.Join(dir, "latch-data")
	home := filepath.Join(dir, "client-home")

	var s *served
	env := func() map[string]string {
		e := map[string]string{"LATCH_DATA": data, client.HomeEnv: home}
		if s != nil {
			e["LATCH_SERVER"] = s.nats
		}
		return e
	}
	// The README's init comes after its first client commands; a reader
	// starts the server first (README "Set up": make run).
	mustLatch(t, nil, "init", "--name", "acme", "--data", data)
	s = mustServe(t, data)
	// The person whose laptop enrolls: in the README they signed up in the
	// browser (the browser test does that); here the CLI makes them.
	s.mustAdmin(t, "account", "add", "ada")

	var signingKey string
	var lastWrite time.Time
	for _, l := range lines {
		text := l.text
		want := "works"
		// "# refused: …", "# … refused (exit 1) if …"
		if strings.HasPrefix(l.comment, "# refused") || strings.Contains(l.comment, "refused (exit 1)") {
			want = "refused"
		}
		// What the README leaves to the reader, filled in.
		text = strings.ReplaceAll(text, "http://localhost:8080", s.http)
		text = strings.ReplaceAll(text, " [PREFIX] [--json]", "")
		text = strings.ReplaceAll(text, " [PREFIX]", "")
		switch {
		case strings.HasPrefix(text, "latch serve"), strings.HasPrefix(text, "latch init"):
			continue // done above, on free ports
		case strings.HasPrefix(text, "latch invite revoke"):
			var invs []accounts.Invite
			decodeJSON(t, s.mustAdmin(t, "invite", "ls", "--json"), &invs)
			text = "latch invite revoke " + invs[len(invs)-1].ID
		case strings.HasPrefix(text, "latch account delete"):
			text += " --yes" // as a script does (the README says so)
		case strings.Contains(text, "--at 2h"):
			// Two hours ago is before this server existed: a second ago is
			// within the history.
			time.Sleep(time.Until(lastWrite.Add(1100 * time.Millisecond)))
			text = strings.Replace(text, "--at 2h", "--at 1s", 1)
		case strings.HasPrefix(text, "latch operator signing-key add"):
			signingKey = mustOperatorInfo(t, data).SigningKey
		case strings.HasPrefix(text, "latch operator signing-key rm KEY"):
			// "once nothing is signed with it": after a restart re-signs.
			s.stop()
			s = mustServe(t, data)
			text = strings.Replace(text, "KEY", signingKey, 1)
			t.Logf("README.md:%d: %s", l.n, text)
			waitFor(t, 30*time.Second, "the old signing key to sign nothing", func() bool {
				return latch(t, env(), "operator", "signing-key", "rm", signingKey, "--data", data).err == nil
			})
			continue
		}
		t.Logf("README.md:%d: %s", l.n, text)
		w := words(text)
		var r result
		switch {
		case w[0] == "nats":
			r = readmeNats(t, n, s, w[1:])
		case w[0] == "echo":
			i := slices.Index(w, "|")
			if i < 0 || w[1] != "-n" || w[i+1] != "latch" || w[i+2] != "client" {
				t.Fatalf("README.md:%d: a pipe the test does not know: %s", l.n, text)
			}
			r = clientIn(t, env(), []byte(w[2]), w[i+3:]...)
		case len(w) > 2 && w[1] == "client" && w[2] == "enroll":
			r = readmeEnroll(t, s, env(), w[1:])
		case len(w) > 2 && w[1] == "client" && w[2] == "watch":
			r = readmeWatch(t, env(), w[1:])
		default:
			args := w[1:]
			var redirect string
			if i := slices.Index(args, ">"); i >= 0 {
				redirect, args = args[i+1], args[:i]
			}
			r = latch(t, env(), args...)
			if redirect != "" && r.err == nil {
				if err := os.WriteFile(redirect, []byte(r.stdout), 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		switch {
		case want == "works" && r.err != nil:
			t.Fatalf("README.md:%d: %s\nfailed: %v\n%s%s", l.n, text, r.err, r.stdout, r.stderr)
		case want == "refused" && r.err == nil:
			t.Fatalf("README.md:%d: %s\nworked; the README says it is refused\n%s", l.n, text, r.stdout)
		}
		if strings.Contains(text, " put ") {
			lastWrite = time.Now()
		}
	}
	// What the tour left behind is as the README says.
	for _, f := range []string{"laptop.creds", "carol.creds", "server.conf"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("after the tour, %s: %v", f, err)
		}
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", d, what)
		}
	}
}

// readmeNats runs a nats CLI line of the README against the server; a
// watch runs a few seconds and must have printed what the bucket holds.
func readmeNats(t *testing.T, n natsRunner, s *served, args []string) result {
	t.Helper()
	creds := ""
	if i := slices.Index(args, "--creds"); i >= 0 {
		creds, args = args[i+1], append(append([]string{}, args[:i]...), args[i+2:]...)
	}
	if slices.Index(args, "watch") >= 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, n.bin, append([]string{"--server", s.nats, "--creds", creds}, args...)...)
		cmd.Env = []string{"HOME=" + n.home, "NO_COLOR=1"}
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), "note1") {
			return result{stdout: string(out), err: fmt.Errorf("the watch printed nothing of note1")}
		}
		return result{stdout: string(out)}
	}
	n.url = s.nats
	out, err := n.runWait(t, creds, 2*time.Second, args...)
	return result{stdout: out, err: err}
}

// readmeEnroll runs `latch client enroll` and approves the code it prints,
// as the person would in the browser, with `latch device approve`.
func readmeEnroll(t *testing.T, s *served, env map[string]string, args []string) result {
	t.Helper()
	var out, errb syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(context.Background(), append([]string{"latch"}, args...), func(k string) string { return env[k] }, &out, &errb)
	}()
	code := regexp.MustCompile(`\b[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}\b`)
	waitFor(t, 30*time.Second, "the enrollment code", func() bool { return code.MatchString(out.String()) })
	s.mustAdmin(t, "device", "approve", "--account", "ada", code.FindString(out.String()))
	select {
	case err := <-done:
		return result{stdout: out.String(), stderr: errb.String(), err: err}
	case <-time.After(30 * time.Second):
		t.Fatalf("client enroll did not finish after the approval:\n%s", out.String())
		return result{}
	}
}

// readmeWatch runs `latch client watch` for a moment: it must print the
// changes so far.
func readmeWatch(t *testing.T, env map[string]string, args []string) result {
	t.Helper()
	w := startWatch(t, env, args[2:]...)
	lines := w.waitLines(t, 1)
	w.stop(t)
	b, _ := json.Marshal(lines)
	return result{stdout: string(b)}
}
