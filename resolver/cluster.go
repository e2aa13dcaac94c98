package resolver

import (
	"slices"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Peer is a server of the cluster as the JetStream meta group sees it.
type Peer struct {
	Name    string        `json:"name"`
	Current bool          `json:"current"` // caught up with the meta leader
	Offline bool          `json:"offline"` // not heard from lately
	Active  time.Duration `json:"active"`  // since it was last heard from
}

// Meta is the JetStream meta group as this server sees it: its leader and
// every server in it, this one among them. A server alone has no meta
// group: Meta then names it leader and only peer.
type Meta struct {
	Leader string `json:"leader"`
	Peers  []Peer `json:"peers"`
}

// Meta reads the JetStream meta group.
func (s *Server) Meta() Meta {
	jsz, err := s.ns.Jsz(&server.JSzOptions{})
	if err != nil || jsz.Meta == nil {
		return Meta{Leader: s.ns.Name(), Peers: []Peer{{Name: s.ns.Name(), Current: true}}}
	}
	m := Meta{Leader: jsz.Meta.Leader, Peers: []Peer{{Name: s.ns.Name(), Current: s.ns.JetStreamIsCurrent()}}}
	for _, p := range jsz.Meta.Replicas {
		m.Peers = append(m.Peers, Peer{Name: p.Name, Current: p.Current, Offline: p.Offline, Active: p.Active})
	}
	slices.SortFunc(m.Peers, func(a, b Peer) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return m
}

// StreamLag is a replica of a stream that is behind its leader.
type StreamLag struct {
	Account string `json:"account"`
	Stream  string `json:"stream"`
	Replica string `json:"replica"` // the server whose replica lags
	Lag     uint64 `json:"lag"`     // operations behind
	Current bool   `json:"current"`
	Offline bool   `json:"offline"`
}

// Lagging lists the replicas that are behind, of the streams this server
// leads: each stream is reported once in a cluster, by its leader.
func (s *Server) Lagging() ([]StreamLag, error) {
	jsz, err := s.ns.Jsz(&server.JSzOptions{Accounts: true, Streams: true, StreamLeaderOnly: true, Limit: 1 << 20})
	if err != nil {
		return nil, err
	}
	var out []StreamLag
	for _, a := range jsz.AccountDetails {
		for _, st := range a.Streams {
			if st.Cluster == nil {
				continue
			}
			for _, r := range st.Cluster.Replicas {
				if r.Lag > 0 || !r.Current || r.Offline {
					out = append(out, StreamLag{Account: a.Id, Stream: st.Name, Replica: r.Name, Lag: r.Lag, Current: r.Current, Offline: r.Offline})
				}
			}
		}
	}
	return out, nil
}
