package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/resolver"
	"github.com/latch-dev/latch/web"
	"github.com/nats-io/nats.go"
)

// ownConns are latch's long-lived connections to its embedded server, for
// /healthz and for the stop when one is closed for good.
type ownConns struct {
	mu       sync.Mutex
	conns    []namedConn
	lost     chan error
	stopping atomic.Bool
}

type namedConn struct {
	name string
	nc   *nats.Conn
}

func (o *ownConns) add(name string, nc *nats.Conn) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.conns = append(o.conns, namedConn{name, nc})
}

// closed reports a connection nats.go gave up on (unless latch is
// stopping, when it closes them itself).
func (o *ownConns) closed(name string, err error) {
	if o.stopping.Load() {
		return
	}
	select {
	case o.lost <- fmt.Errorf("latch's own NATS connection to %s was closed (%v); start latch again", name, err):
	default:
	}
}

// healthy is nil while every connection is up, and says which is not.
func (o *ownConns) healthy() error {
	if o == nil {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, c := range o.conns {
		if st := c.nc.Status(); st != nats.CONNECTED {
			return fmt.Errorf("latch's own NATS connection to %s is %s", c.name, strings.ToLower(st.String()))
		}
	}
	return nil
}

// recordLastSeen writes, when a device goes offline, when it was last seen.
func recordLastSeen(ctx context.Context, p *resolver.Presence, svc *accounts.Service, log *slog.Logger) {
	events, cancel := p.Subscribe("")
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			if ev.Online {
				continue
			}
			if err := svc.SetLastSeen(ctx, ev.Account, ev.User, ev.Time); err != nil && !errors.Is(err, accounts.ErrNotFound) {
				log.Warn("record last seen", "account", ev.Account, "device", ev.User, "err", err)
			}
		}
	}
}

// connections counts a device's connections from presence and closes them
// on the NATS servers.
type connections struct {
	presence *resolver.Presence
	server   natsNode
}

func (c connections) Conns(account, user string) int { return c.presence.Conns(account, user) }

func (c connections) Disconnect(account, user string) (int, error) {
	return c.server.Disconnect(account, user)
}

// serverStatus is what the admin page shows of the embedded server and,
// asked of every node, of the deployment.
type serverStatus struct {
	ns  natsNode
	svc *accounts.Service
}

func (s serverStatus) Status(ctx context.Context) (web.ServerStatus, error) {
	st := s.ns.Stats()
	out := web.ServerStatus{
		Name: st.Name, Version: st.Version, Uptime: st.Uptime, Connections: st.Connections,
		JetStream: st.JetStream, StorageUsed: st.StorageUsed, MemoryUsed: st.MemoryUsed, ClientURL: s.ns.ClientURL(),
	}
	n, err := s.ns.StoredAccounts()
	if err != nil {
		out.ResolverError = err.Error()
	}
	out.Accounts = n
	if cs, err := s.svc.ClusterStatus(ctx, 2*time.Second); err == nil {
		out.Nodes, out.Drift = cs.Nodes, cs.Drifted()
	}
	return out, nil
}

// warnPlain warns of each address that takes plain text from other
// machines: anyone on the way reads the creds' signatures, the records and
// the web sessions.
// Behind a proxy that ends TLS the plain text goes no further than the
// proxy: NATS with NATSBehindTLSProxy, the web with TrustProxy and an
// https public URL.
func warnPlain(log *slog.Logger, cfg Config) {
	for _, a := range []struct {
		flag, addr string
		proxied    bool
	}{
		{"--nats", cfg.NATS, cfg.NATSBehindTLSProxy},
		{"--http", cfg.HTTP, cfg.TrustProxy && strings.HasPrefix(cfg.PublicURL, "https://")},
		{"--monitor", cfg.Monitor, false},
	} {
		host, _, err := net.SplitHostPort(a.addr)
		if a.addr == "" || err != nil || loopback(host) || a.proxied {
			continue
		}
		log.Warn("serving plain text on an address other machines reach; give --tls-cert and --tls-key, or bind to 127.0.0.1 behind a TLS proxy (docs/operations.md)",
			"flag", a.flag, "address", a.addr)
	}
}

// loopback reports whether host is this machine only.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// webPresence gives web the presence watcher's events in web's own type,
// so that web does not link nats-server.
type webPresence struct{ *resolver.Presence }

func (p webPresence) Subscribe(account string) (<-chan web.PresenceEvent, func()) {
	in, cancel := p.Presence.Subscribe(account)
	out := make(chan web.PresenceEvent, cap(in))
	go func() {
		defer close(out)
		for ev := range in {
			// A subscriber that is behind loses events, as the watcher's
			// own do; nothing waits on one that has gone.
			select {
			case out <- web.PresenceEvent{Account: ev.Account, User: ev.User, Online: ev.Online}:
			default:
			}
		}
	}()
	return out, cancel
}
