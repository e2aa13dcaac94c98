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
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// walkTestServer runs a server in operator mode with a memory resolver,
// and returns it with the operator's key to sign accounts with.
func walkTestServer(t *testing.T) (*Server, *MemAccResolver, nkeys.KeyPair) {
	t.Helper()
	okp, _ := nkeys.CreateOperator()
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	sysKP, _ := nkeys.CreateAccount()
	sysPub, _ := sysKP.PublicKey()
	oc.SystemAccount = sysPub
	ojwt, err := oc.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	op, err := jwt.DecodeOperatorClaims(ojwt)
	if err != nil {
		t.Fatal(err)
	}
	res := &MemAccResolver{}
	sysJWT, err := jwt.NewAccountClaims(sysPub).Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	res.Store(sysPub, sysJWT)
	opts := &Options{
		Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		TrustedOperators: []*jwt.OperatorClaims{op},
		SystemAccount:    sysPub,
		AccountResolver:  res,
	}
	s, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("the server did not start")
	}
	t.Cleanup(s.Shutdown)
	return s, res, okp
}

// walkTestAccount stores a new account's JWT, edited by edit, and
// returns its public key.
func walkTestAccount(t *testing.T, res *MemAccResolver, okp nkeys.KeyPair, edit func(*jwt.AccountClaims)) string {
	t.Helper()
	akp, _ := nkeys.CreateAccount()
	apub, _ := akp.PublicKey()
	ac := jwt.NewAccountClaims(apub)
	skp, _ := nkeys.CreateAccount()
	spub, _ := skp.PublicKey()
	ac.SigningKeys.Add(spub)
	if edit != nil {
		edit(ac)
	}
	tok, err := ac.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	res.Store(apub, tok)
	return apub
}

// Building an account that exports nothing does not walk the accounts
// already loaded: it completes while another loaded account is locked.
// Before, the stream and service export walks of
// updateAccountClaimsWithRefresh locked every loaded account on every
// account's first build, so each build cost O(loaded accounts).
func TestAccountBuildWithoutExportsDoesNotWalkLoadedAccounts(t *testing.T) {
	s, res, okp := walkTestServer(t)
	var loaded []*Account
	for range 50 {
		acc, err := s.LookupAccount(walkTestAccount(t, res, okp, nil))
		if err != nil {
			t.Fatal(err)
		}
		loaded = append(loaded, acc)
	}
	fresh := walkTestAccount(t, res, okp, nil)

	held := loaded[len(loaded)/2]
	held.mu.Lock()
	built := make(chan error, 1)
	go func() {
		_, err := s.LookupAccount(fresh)
		built <- err
	}()
	select {
	case err := <-built:
		held.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		held.mu.Unlock()
		<-built
		t.Fatal("building an account that exports nothing waited for another loaded account's lock: it walked the loaded accounts")
	}
}

// An account that gains an export still has the loaded accounts'
// imports of it checked again, and one that loses it too.
func TestAccountExportChangeStillChecksImports(t *testing.T) {
	s, res, okp := walkTestServer(t)
	exporterKP, _ := nkeys.CreateAccount()
	exporter, _ := exporterKP.PublicKey()
	none := jwt.NewAccountClaims(exporter)
	tok, err := none.Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	res.Store(exporter, tok)
	importer := walkTestAccount(t, res, okp, func(ac *jwt.AccountClaims) {
		ac.Imports.Add(&jwt.Import{Name: "foo", Subject: "foo", Account: exporter, Type: jwt.Stream})
		ac.Imports.Add(&jwt.Import{Name: "svc", Subject: "svc", Account: exporter, Type: jwt.Service})
	})
	exp, err := s.LookupAccount(exporter)
	if err != nil {
		t.Fatal(err)
	}
	imp, err := s.LookupAccount(importer)
	if err != nil {
		t.Fatal(err)
	}
	state := func() (streamValid, serviceValid bool) {
		imp.mu.RLock()
		defer imp.mu.RUnlock()
		for _, im := range imp.imports.streams {
			if im.acc.Name == exporter && !im.invalid {
				streamValid = true
			}
		}
		for _, sis := range imp.imports.services {
			for _, si := range sis {
				if si.acc.Name == exporter && !si.invalid {
					serviceValid = true
				}
			}
		}
		return streamValid, serviceValid
	}
	if st, sv := state(); st || sv {
		t.Fatalf("imports of an account that exports nothing are valid: stream %v, service %v", st, sv)
	}

	with := jwt.NewAccountClaims(exporter)
	with.Exports.Add(&jwt.Export{Name: "foo", Subject: "foo", Type: jwt.Stream},
		&jwt.Export{Name: "svc", Subject: "svc", Type: jwt.Service})
	s.UpdateAccountClaims(exp, with)
	if st, sv := state(); !st || !sv {
		t.Fatalf("after the exporter gained its exports: stream import valid %v, service import valid %v; want both", st, sv)
	}

	s.UpdateAccountClaims(exp, jwt.NewAccountClaims(exporter))
	if st, sv := state(); st || sv {
		t.Fatalf("after the exporter lost its exports: stream import valid %v, service import valid %v; want neither", st, sv)
	}
}
