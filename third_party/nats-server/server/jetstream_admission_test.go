// Copyright 2026 The NATS Authors
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

package server

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// A single server admits an account's JetStream limits against running
// totals of the limits already reserved, kept as accounts are enabled,
// updated and disabled: it refuses exactly what summing every account
// refused, without summing them on each admission.
func TestJetStreamAdmissionRunningTotals(t *testing.T) {
	const mib = 1 << 20
	opts := &Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, JetStream: true,
		JetStreamMaxMemory: 100 * mib, JetStreamMaxStore: 1000 * mib, StoreDir: t.TempDir()}
	s, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("the server did not start")
	}
	defer s.Shutdown()
	js := s.getJetStream()

	// The totals are the sum the walk makes over every account.
	checkTotals := func(when string) {
		t.Helper()
		js.mu.RLock()
		defer js.mu.RUnlock()
		var mem, store int64
		for _, jsa := range js.accounts {
			jsa.usageMu.RLock()
			for _, l := range jsa.limits {
				mem += max(l.MaxMemory, 0)
				store += max(l.MaxStore, 0)
			}
			jsa.usageMu.RUnlock()
		}
		if js.limitsMem != mem || js.limitsStore != store {
			t.Fatalf("%s: running totals memory %d, store %d; the accounts sum to %d and %d", when, js.limitsMem, js.limitsStore, mem, store)
		}
	}
	checkTotals("at start")
	limits := func(store int64) map[string]JetStreamAccountLimits {
		return map[string]JetStreamAccountLimits{_EMPTY_: {MaxMemory: mib, MaxStore: store, MaxStreams: -1, MaxConsumers: -1}}
	}
	enable := func(i int, store int64) (*Account, error) {
		acc, err := s.RegisterAccount(fmt.Sprintf("A%d", i))
		if err != nil {
			t.Fatal(err)
		}
		return acc, acc.EnableJetStream(limits(store), nil)
	}
	accs := map[int]*Account{}

	// Far from the limits, admission does not look at the other accounts:
	// it goes ahead while one of them is locked.
	first, err := enable(100, mib)
	if err != nil {
		t.Fatal(err)
	}
	held := first.js
	held.usageMu.Lock()
	admitted := make(chan error, 1)
	go func() {
		_, err := enable(101, mib)
		admitted <- err
	}()
	select {
	case err := <-admitted:
		held.usageMu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		held.usageMu.Unlock()
		<-admitted
		t.Fatal("admission waited for another account's lock: it summed every account")
	}
	for _, name := range []string{"A100", "A101"} {
		acc, _ := s.LookupAccount(name)
		if err := acc.DisableJetStream(); err != nil {
			t.Fatal(err)
		}
	}
	checkTotals("after the first two")

	for i := range 10 {
		acc, err := enable(i, 99*mib)
		if err != nil {
			t.Fatalf("account %d: %v", i, err)
		}
		accs[i] = acc
		checkTotals(fmt.Sprintf("after account %d", i))
	}
	// 990 MiB reserved of 1000: 20 more do not fit, 10 do.
	if _, err := enable(10, 20*mib); !errors.Is(err, NewJSStorageResourcesExceededError()) {
		t.Fatalf("an account past the store limit: %v, want storage resources exceeded", err)
	}
	checkTotals("after a refusal")
	if acc, err := enable(11, 10*mib); err != nil {
		t.Fatalf("an account that fits: %v", err)
	} else {
		accs[11] = acc
	}
	checkTotals("after the account that fits")

	// Raising a limit past what is left is refused; lowering one frees it.
	if err := accs[0].UpdateJetStreamLimits(limits(100 * mib)); !errors.Is(err, NewJSStorageResourcesExceededError()) {
		t.Fatalf("raising past the limit: %v, want storage resources exceeded", err)
	}
	checkTotals("after a refused raise")
	if err := accs[0].UpdateJetStreamLimits(limits(49 * mib)); err != nil {
		t.Fatal(err)
	}
	checkTotals("after lowering one")
	if acc, err := enable(12, 50*mib); err != nil {
		t.Fatalf("an account in the room freed: %v", err)
	} else {
		accs[12] = acc
	}

	// Disabling frees an account's limits.
	if _, err := enable(13, 99*mib); err == nil {
		t.Fatal("an account past the limit was admitted")
	}
	if err := accs[1].DisableJetStream(); err != nil {
		t.Fatal(err)
	}
	checkTotals("after a disable")
	if _, err := enable(14, 99*mib); err != nil {
		t.Fatalf("an account in the room a disable freed: %v", err)
	}
	checkTotals("at the end")
}
