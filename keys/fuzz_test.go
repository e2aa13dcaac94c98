package keys

import (
	"bytes"
	"testing"
)

// Creds parsing takes any file: no panic, and what it accepts formats
// back to creds that parse the same.
func FuzzParseCreds(f *testing.F) {
	f.Add([]byte("-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.AAAA\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\nSUAAAA\n------END USER NKEY SEED------\n"))
	f.Add([]byte(""))
	f.Add([]byte("-----BEGIN NATS USER JWT-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCreds(b)
		if err != nil {
			return
		}
		out, err := FormatCreds(c.JWT, c.Seed)
		if err != nil {
			return
		}
		again, err := ParseCreds(out)
		if err != nil || again.JWT != c.JWT || !bytes.Equal(again.Seed, c.Seed) {
			t.Fatalf("creds that parsed do not parse the same after formatting: %v", err)
		}
	})
}
