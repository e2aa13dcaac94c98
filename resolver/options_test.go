package resolver

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// A start refused for a missing JetStream key leaves nothing running:
// the resolver's folder store (and its expiry goroutine) was made, and
// left open, before the key was checked.
func TestOptionsWithoutKeyLeakNothing(t *testing.T) {
	okp, _ := nkeys.CreateOperator()
	opub, _ := okp.PublicKey()
	tok, err := jwt.NewOperatorClaims(opub).Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", OperatorJWT: tok}
	before := runtime.NumGoroutine()
	for range 20 {
		if _, err := options(cfg); err == nil || !strings.Contains(err.Error(), "no JetStream encryption key") {
			t.Fatalf("options without a key: %v", err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > before+2 {
		t.Errorf("%d goroutines after 20 refused starts, %d before: something was left running", after, before)
	}
}
