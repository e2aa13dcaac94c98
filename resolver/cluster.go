package resolver

import (
	"slices"
	"strings"
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
	slices.SortFunc(m.Peers, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	return m
}
