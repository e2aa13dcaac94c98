package accounts_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/latchtest"
	"github.com/nats-io/jwt/v2"
)

// Two account services over the same buckets (two nodes) revoking devices
// of one person at once: every revocation is in the JWT that is in force,
// and none of the revoked devices can connect. Each service commits its
// JWT to the record with compare-and-set; a loser applies its changes
// again to the winner's JWT.
func TestConcurrentWritersKeepEveryRevocation(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	s.MustCreatePerson(t, "alice")
	other := s.OtherService(t)
	const n = 12
	devs := make([]string, n)
	for i := range devs {
		devs[i] = s.MustIssueDevice(t, "alice", fmt.Sprintf("d%d", i)).PublicKey
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, d := range devs {
		svc := s.Service
		if i%2 == 1 {
			svc = other
		}
		wg.Go(func() {
			if _, err := svc.RevokeDevice(ctx, "alice", d); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("revoke: %v", err)
	}
	p, err := s.Service.Person(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Server.StoredJWT(p.Account)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := jwt.DecodeAccountClaims(tok)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range devs {
		if _, ok := ac.Revocations[d]; !ok {
			t.Errorf("device d%d (%s) is not revoked in the JWT the server enforces", i, d)
		}
	}
	d, err := s.Service.Account(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if d.Revocations != n {
		t.Errorf("the record's JWT revokes %d devices, want %d", d.Revocations, n)
	}
}

// A node that missed a change (it holds an older JWT) gets latch's record
// pushed again; a JWT pushed behind latch's back (newer than the record)
// is drift: reported and audited, left alone, and repaired on request.
func TestCatchUpAndDrift(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	ctx := testCtx(t)
	p := s.MustCreatePerson(t, "alice")
	old, err := s.Server.StoredJWT(p.Account)
	if err != nil {
		t.Fatal(err)
	}
	d := s.MustIssueDevice(t, "alice", "laptop")
	if _, err := s.Service.RevokeDevice(ctx, "alice", d.PublicKey); err != nil {
		t.Fatal(err)
	}
	recorded, err := s.Server.StoredJWT(p.Account)
	if err != nil {
		t.Fatal(err)
	}
	// As if this node had been down for the revocation.
	if err := s.Claims.Push(ctx, old); err != nil {
		t.Fatal(err)
	}
	res, err := s.Service.CatchUp(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Pushed != 1 || len(res.Drift) != 0 {
		t.Errorf("catch-up of a missed revocation: %+v, want 1 pushed and no drift", res)
	}
	if got, _ := s.Server.StoredJWT(p.Account); got != recorded {
		t.Error("after the catch-up the node does not hold the record's JWT")
	}

	// A newer JWT from someone else (as `nsc push` would send).
	signer, err := s.Operator.Signer()
	if err != nil {
		t.Fatal(err)
	}
	foreign := latchtest.ForeignJWT(t, signer, recorded, "pushed-by-hand")
	if err := s.Claims.Push(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	res, err = s.Service.CatchUp(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Pushed != 0 || len(res.Drift) != 1 || res.Drift[0].Account != p.Account || res.Drift[0].AccountName != "alice" {
		t.Fatalf("catch-up with a JWT pushed by hand: %+v, want alice's account as drift", res)
	}
	if got, _ := s.Server.StoredJWT(p.Account); got != foreign {
		t.Error("the catch-up overwrote the drifted JWT; it must be left for repair")
	}
	if !auditHas(t, s.Service, accounts.ActionAccountDrift, p.Account) {
		t.Error("no account.drift entry in the audit trail")
	}
	repaired, err := s.Service.Repair(ctx, res.Drift)
	if err != nil {
		t.Fatal(err)
	}
	if len(repaired) != 1 || repaired[0] != p.Account {
		t.Errorf("repair: %v, want alice's account", repaired)
	}
	// The record, signed anew later than the JWT found, is in force.
	got, _ := s.Server.StoredJWT(p.Account)
	ac, err := jwt.DecodeAccountClaims(got)
	if err != nil {
		t.Fatal(err)
	}
	if ac.Tags.Contains("pushed-by-hand") || len(ac.Revocations) != 1 {
		t.Errorf("after the repair the node holds tags %v and %d revocations, want latch's record (no tag, 1 revocation)", ac.Tags, len(ac.Revocations))
	}
	if res, err := s.Service.CatchUp(ctx); err != nil || len(res.Drift) != 0 {
		t.Errorf("catch-up after the repair: %+v, %v; want no drift", res, err)
	}
	if !auditHas(t, s.Service, accounts.ActionAccountRepair, p.Account) {
		t.Error("no account.repair entry in the audit trail")
	}
}

func auditHas(t *testing.T, s interface {
	Audit(context.Context, int) ([]accounts.AuditEvent, error)
}, action accounts.Action, account string) bool {
	t.Helper()
	es, err := s.Audit(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Action == action && e.Account == account {
			return true
		}
	}
	return false
}
