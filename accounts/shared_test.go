package accounts_test

import (
	"bytes"
	"sync"
	"testing"
)

// Every caller, also racing ones, gets the same shared secret, and it
// outlives the service.
func TestSharedSecret(t *testing.T) {
	s := startStack(t)
	ctx := testCtx(t)
	got := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := s.Service.SharedSecret(ctx, "web-session")
			if err != nil {
				t.Errorf("SharedSecret: %v", err)
			}
			got[i] = b
		}()
	}
	wg.Wait()
	for i, b := range got {
		if len(b) != 32 || !bytes.Equal(b, got[0]) {
			t.Fatalf("caller %d got %x, caller 0 got %x; want the same 32 bytes", i, b, got[0])
		}
	}
	other, err := s.Service.SharedSecret(ctx, "other")
	if err != nil || bytes.Equal(other, got[0]) {
		t.Errorf("another name: got %x (%v), want a secret of its own", other, err)
	}
}
