package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/latch-dev/latch/client"
	"github.com/nats-io/nats.go/jetstream"
)

// TestClientEnroll enrolls a device end to end through the command line:
// `latch client enroll` against `latch serve`, approved by an admin with
// `latch device approve`.
func TestClientEnroll(t *testing.T) {
	t.Parallel()
	s := mustServe(t, "")
	acct := strings.TrimSpace(s.mustAdmin(t, "account", "add", "alice").stdout)
	home := filepath.Join(t.TempDir(), "home")

	out, errb := &syncBuffer{}, &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		args := []string{"latch", "client", "enroll", "--url", s.http, "--name", "laptop", "--home", home}
		done <- run(context.Background(), args, func(string) string { return "" }, out, errb)
	}()

	codeRE := regexp.MustCompile(`(?m)^    ([BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4})$`)
	var code string
	deadline := time.Now().Add(30 * time.Second)
	// Until it has printed all it prints before waiting.
	for code == "" {
		if m := codeRE.FindStringSubmatch(out.String()); m != nil && strings.Contains(out.String(), "Waiting for approval") {
			code = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("latch client enroll ended before printing a code: %v\n%s%s", err, out, errb)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no code printed within 30s:\n%s%s", out, errb)
		}
		time.Sleep(20 * time.Millisecond)
	}
	printed := out.String()
	// The link, drawn for a phone too (block characters of a QR code).
	for _, want := range []string{"/enroll?code=" + code, "/enroll and enter the code", "scan this with your phone", "█▀", "key fingerprint: ", "Waiting for approval"} {
		if !strings.Contains(printed, want) {
			t.Errorf("output lacks %q:\n%s", want, printed)
		}
	}

	// Typed as a person might: lower case, no dash.
	r := s.mustAdmin(t, "device", "approve", "--account", "alice", strings.ToLower(strings.ReplaceAll(code, "-", "")))
	pub := strings.TrimSpace(r.stdout)
	if !strings.Contains(r.stderr, client.Fingerprint(pub)) {
		t.Errorf("device approve does not print the fingerprint the device shows: %q", r.stderr)
	}
	if !strings.Contains(printed, "key fingerprint: "+client.Fingerprint(pub)) {
		t.Errorf("the printed fingerprint is not that of the approved key %s:\n%s", pub, printed)
	}

	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("latch client enroll: %v\n%s%s", err, out, errb)
		}
	case <-time.After(time.Minute):
		t.Fatalf("latch client enroll did not finish within a minute of the approval:\n%s%s", out, errb)
	}
	creds := filepath.Join(home, client.CredsFile)
	// The person's name and the fingerprint the page showed, not bare keys.
	want := "enrolled as laptop (" + client.Fingerprint(pub) + ") in alice's account (" + acct + "); creds in " + creds + "\n"
	if !strings.HasSuffix(out.String(), want) {
		t.Errorf("output ends:\n%s\nwant it to end %q", out, want)
	}
	if fi, err := os.Stat(creds); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("creds file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}

	d, err := client.Open(home)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := d.Connect()
	if err != nil {
		t.Fatalf("connect with the enrolled creds: %v", err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(context.Background(), "records")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), "note", []byte("from the cli")); err != nil {
		t.Fatalf("put a record: %v", err)
	}

	// Enrolling into the same home again is refused, with a way out.
	r = latch(t, nil, "client", "enroll", "--url", s.http, "--name", "laptop", "--home", home)
	if r.err == nil || !strings.Contains(r.err.Error(), "--force") {
		t.Errorf("enroll into an enrolled home: %v, want a refusal naming --force", r.err)
	}
}

func TestClientEnrollMisuse(t *testing.T) {
	t.Parallel()
	var u usageError
	r := latch(t, nil, "client", "enroll", "--home", t.TempDir())
	if !errors.As(r.err, &u) || !strings.Contains(r.err.Error(), "--url") {
		t.Errorf("without --url: %v, want a usage error naming --url", r.err)
	}
	r = latch(t, nil, "client", "enroll", "--url", "http://127.0.0.1:1", "--home", t.TempDir(), "extra")
	if !errors.As(r.err, &u) {
		t.Errorf("with an argument: %v, want a usage error", r.err)
	}
}
