package accounts_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/latchtest"
)

// TestEditLimits: a disk quota grows and shrinks the bucket's and the history's
// limits and the account's tier together; a quota below what the records
// hold refuses writes and loses nothing.
func TestEditLimits(t *testing.T) {
	t.Parallel()
	s := latchtest.MustStart(t, latchtest.Options{Dir: t.TempDir()})
	ctx := testCtx(t)
	small := accounts.DefaultLimits()
	small.Disk = 64 << 10
	p, err := s.Service.CreatePerson(ctx, accounts.NewPerson{Name: "alice", Limits: small})
	if err != nil {
		t.Fatal(err)
	}
	kv := mustRecords(t, s.MustConnect(t, s.MustIssueDevice(t, "alice", "laptop").CredsFile).Conn)
	for i := range 40 {
		mustPut(t, kv, fmt.Sprintf("k%d", i), strings.Repeat("x", 1024))
	}

	check := func(disk, memory int64) {
		t.Helper()
		got, err := s.Service.Person(ctx, "alice")
		if err != nil || got.Limits.Disk != disk || got.Limits.Memory != memory {
			t.Errorf("person's limits: %+v, %v; want disk %d, memory %d", got.Limits, err, disk, memory)
		}
		tier := accountClaims(t, s, p.Account).Limits.JetStreamTieredLimits["R1"]
		// At least the quota's; more when the records hold more.
		if want := 2*disk + accounts.DeleteReserve(disk); tier.DiskStorage < want || tier.MemoryStorage != memory {
			t.Errorf("tier: disk %d memory %d, want at least %d and %d", tier.DiskStorage, tier.MemoryStorage, want, memory)
		}
		if got := streamMaxBytes(t, kv); got != disk {
			t.Errorf("the bucket's limit: %d, want %d", got, disk)
		}
	}
	if _, err := s.Service.EditLimits(ctx, "alice", accounts.LimitsEdit{Disk: 1 << 20, Memory: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	check(1<<20, 2<<20)
	mustPut(t, kv, "more", strings.Repeat("y", 100<<10))

	// Below what the records hold: nothing goes, writes are refused.
	if _, err := s.Service.EditLimits(ctx, "alice", accounts.LimitsEdit{Disk: 32 << 10}); err != nil {
		t.Fatal(err)
	}
	check(32<<10, 2<<20)
	if _, err := kv.Put(ctx, "one-more", []byte("z")); err == nil || !strings.Contains(err.Error(), "maximum bytes") {
		t.Errorf("put over a shrunk quota: %v, want a refusal", err)
	}
	for i := range 40 {
		wantValue(t, kv, fmt.Sprintf("k%d", i), strings.Repeat("x", 1024))
	}
	if u := usage(t, s, "alice"); u.Records <= 32<<10 || u.Quota != 32<<10 {
		t.Errorf("usage after the shrink: %+v, want more than the quota held", u)
	}
	// Deletes still work.
	if _, err := s.Service.DeleteRecord(ctx, "alice", "more"); err != nil {
		t.Errorf("delete over a shrunk quota: %v", err)
	}

	for _, q := range []accounts.LimitsEdit{{}, {Disk: -1}, {Disk: accounts.MaxDisk + 1}, {Memory: -5}, {Conns: -1}, {Payload: 1 << 40}, {Consumers: 1 << 40}} {
		if _, err := s.Service.EditLimits(ctx, "alice", q); !errors.Is(err, accounts.ErrInvalid) {
			t.Errorf("quota %+v: %v, want invalid", q, err)
		}
	}
	check(32<<10, 2<<20)
	if _, err := s.Service.EditLimits(ctx, "nobody", accounts.LimitsEdit{Disk: 1 << 20}); !errors.Is(err, accounts.ErrNotFound) {
		t.Errorf("quota of nobody: %v, want not found", err)
	}
	if _, err := s.Service.DisablePerson(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Service.EditLimits(ctx, "alice", accounts.LimitsEdit{Disk: 1 << 20}); !errors.Is(err, accounts.ErrDisabled) || !strings.Contains(err.Error(), "enable it first") {
		t.Errorf("quota of a disabled person: %v, want refused, saying to enable first", err)
	}
}
