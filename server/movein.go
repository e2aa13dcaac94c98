package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/operator"
	"github.com/latch-dev/latch/resolver"
	"github.com/nats-io/nats.go"
)

// A node that ran alone and is started as a node of a cluster brings its
// JetStream data in: nats-server in a cluster would delete every stream
// its meta group does not know as an orphan, so the node's store is first
// set aside, in <data>/standalone, and a server of its own reads it there
// while the node, in the cluster, restores each stream from it
// (internal/jsmove). Once every stream is in, the folder is renamed
// standalone-moved-<time>, kept until the operator deletes it.
const (
	standaloneDir  = "standalone"
	standaloneTemp = "standalone.tmp"
)

// setAside moves the JetStream store of data into data/standalone, with a
// copy of the resolver folder the server reading it needs. Each step can
// be cut short and taken again: the folder is made apart and renamed into
// place last.
func setAside(data string) error {
	tmp := filepath.Join(data, standaloneTemp)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(tmp, "resolver")); errors.Is(err, fs.ErrNotExist) {
		if err := os.CopyFS(filepath.Join(tmp, "resolver.tmp"), os.DirFS(filepath.Join(data, "resolver"))); err != nil {
			return fmt.Errorf("copy the resolver folder: %w", err)
		}
		if err := os.Rename(filepath.Join(tmp, "resolver.tmp"), filepath.Join(tmp, "resolver")); err != nil {
			return err
		}
	}
	if _, err := os.Stat(filepath.Join(data, "jetstream")); err == nil {
		if err := os.Rename(filepath.Join(data, "jetstream"), filepath.Join(tmp, "jetstream")); err != nil {
			return err
		}
	}
	return os.Rename(tmp, filepath.Join(data, standaloneDir))
}

// movingIn reports whether data holds a store set aside to move in, after
// finishing a setAside cut short.
func movingIn(data string) (bool, error) {
	if _, err := os.Stat(filepath.Join(data, standaloneTemp)); err == nil {
		if err := setAside(data); err != nil {
			return false, err
		}
	}
	_, err := os.Stat(filepath.Join(data, standaloneDir))
	return err == nil, nil
}

// standaloneStreams lists the streams of a store by account: the store
// keeps each in <account>/streams/<name>.
func standaloneStreams(store string) (map[string][]string, error) {
	dirs, err := filepath.Glob(filepath.Join(store, "*", "streams", "*"))
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, d := range dirs {
		account := filepath.Base(filepath.Dir(filepath.Dir(d)))
		out[account] = append(out[account], filepath.Base(d))
	}
	for _, names := range out {
		sort.Strings(names)
	}
	return out, nil
}

// mover is the server that reads the store set aside.
type mover struct {
	ns       *resolver.Server
	stopOnce sync.Once
	data     string
	streams  map[string][]string
}

// startMover starts a server alone on the store set aside, with the
// deployment's operator and keys, listening on loopback only.
func (s *Server) startMover(ctx context.Context, jsKey string) (*mover, error) {
	dir := filepath.Join(s.cfg.Data, standaloneDir)
	streams, err := standaloneStreams(filepath.Join(dir, "jetstream"))
	if err != nil {
		return nil, err
	}
	ns, err := resolver.Launch(resolver.Config{
		Name: s.cfg.Name + "-standalone", DataDir: dir, Listen: "127.0.0.1:0",
		OperatorJWT: s.op.OperatorJWT, SystemAccount: s.op.SystemAccount.PublicKey, Preload: s.op.Preload(),
		JetStreamKey: jsKey, MaxStore: s.cfg.MaxStore, MaxMemory: s.cfg.MaxMemory,
		StallTimeout: s.cfg.StartStall, Log: s.log.With("component", "move-in"),
	})
	if err != nil {
		return nil, fmt.Errorf("read the JetStream data of when the node ran alone: %w", err)
	}
	m := &mover{ns: ns, data: s.cfg.Data, streams: streams}
	if err := ns.WaitReady(ctx); err != nil {
		m.stop()
		return nil, fmt.Errorf("read the JetStream data of when the node ran alone: %w", err)
	}
	return m, nil
}

func (m *mover) stop() {
	m.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m.ns.Shutdown(ctx)
	})
}

// dial connects to the server alone as a user.
func (m *mover) dial(userJWT string, seed []byte) (*nats.Conn, error) {
	return m.ns.Connect(nats.UserJWTAndSeed(userJWT, string(seed)), nats.Name("latch-move-in"))
}

// moveOwn moves the streams of latch's own accounts (LATCH's buckets and
// audit trail), before the account service opens them: one replica each,
// which the service then gives the deployment's number.
func (m *mover) moveOwn(ctx context.Context, op *operator.Tree, dst func(userJWT string, seed []byte) (*nats.Conn, error)) (int, error) {
	n := 0
	for _, a := range []operator.AccountJWT{op.SystemAccount, op.AppAccount, op.AdminAccount} {
		names := m.streams[a.PublicKey]
		delete(m.streams, a.PublicKey)
		// The secrets bucket last: the nodes that joined open latch's
		// buckets once it says the first node has made them.
		secrets := "KV_" + accounts.SecretsBucket
		if i := slices.Index(names, secrets); i >= 0 {
			names = append(slices.Delete(names, i, i+1), secrets)
		}
		if len(names) == 0 {
			continue
		}
		tok, seed, err := op.MintUser(a, "latch-move-in")
		if err != nil {
			return n, err
		}
		src, err := m.dial(tok, seed)
		if err != nil {
			return n, err
		}
		defer src.Close()
		to, err := dst(tok, seed)
		if err != nil {
			return n, err
		}
		defer to.Close()
		for _, name := range names {
			if _, _, err := accounts.MoveStream(ctx, src, to, name, 1); err != nil {
				return n, fmt.Errorf("move %s's stream %s into the cluster: %w", a.Name, name, err)
			}
			n++
		}
	}
	return n, nil
}

// finish stops the server alone and keeps its folder aside, renamed, as
// the operator's backup of the move.
func (m *mover) finish() (string, error) {
	m.stop()
	kept := filepath.Join(m.data, "standalone-moved-"+time.Now().UTC().Format("20060102T150405Z"))
	return kept, os.Rename(filepath.Join(m.data, standaloneDir), kept)
}

// movePersons moves every person's streams in, and then puts the folder
// aside. A person whose streams could not move stops the start: the data
// stays set aside, and the next start tries again.
func (s *Server) movePersons(ctx context.Context, m *mover, svc *accounts.Service) error {
	res, err := svc.MoveIn(ctx, m.dial, m.streams)
	if err != nil {
		return fmt.Errorf("move persons' records into the cluster: %w", err)
	}
	if len(res.Failed) > 0 {
		var why []string
		for who, err := range res.Failed {
			why = append(why, who+": "+err)
		}
		sort.Strings(why)
		return fmt.Errorf("move persons' records into the cluster: %s (the data stays in %s; the next start tries again)",
			strings.Join(why, "; "), filepath.Join(s.cfg.Data, standaloneDir))
	}
	if len(res.NoPerson) > 0 {
		s.log.Warn("streams of accounts of no person were not moved into the cluster; they stay in the old copy", "accounts", strings.Join(res.NoPerson, ","))
	}
	kept, err := m.finish()
	if err != nil {
		return err
	}
	s.log.Info("moved the node's JetStream data of when it ran alone into the cluster; delete the old copy once satisfied",
		"streams", res.Moved, "already_moved", res.Already, "messages", res.Messages, "kept", kept)
	return nil
}
