package accounts

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// NodeStatusSubject is where every node of a deployment answers for itself
// (a plain subscription of each node's LATCH connection, not a queue
// group): asked once, all the nodes that are up answer.
const NodeStatusSubject = "latch.node.status"

// NodeStatus is one node as it sees itself.
type NodeStatus struct {
	Name    string `json:"name"`
	Region  string `json:"region,omitempty"`
	Version string `json:"version,omitempty"`
	// Up is false for a node of the cluster that did not answer.
	Up bool `json:"up"`
	// JetStream is "ok" or what is wrong with this node's JetStream.
	JetStream string `json:"jetstream"`
	// Current says whether its JetStream is caught up with the meta leader.
	Current    bool   `json:"current"`
	MetaLeader string `json:"meta_leader,omitempty"`
	// Peers are the servers of the cluster this node knows of.
	Peers []string `json:"peers,omitempty"`
	// Servers are the NATS servers of an external cluster the node uses,
	// each with its state: "current", "behind" or "offline".
	Servers []string `json:"servers,omitempty"`
	// Lagging are the replicas behind their leader, of latch's own
	// streams this node leads.
	Lagging []StreamLag `json:"lagging,omitempty"`
	// Drift are the accounts whose JWT on this node is not latch's record.
	Drift []Drift `json:"drift,omitempty"`
	// Error is what kept the node from saying more.
	Error string `json:"error,omitempty"`
}

// StreamLag is a replica of a stream behind its leader.
type StreamLag struct {
	Account string `json:"account"`
	Stream  string `json:"stream"`
	Replica string `json:"replica"`
	Lag     uint64 `json:"lag"`
	Current bool   `json:"current"`
	Offline bool   `json:"offline"`
}

// ClusterStatus is every node of the deployment.
type ClusterStatus struct {
	Nodes      []NodeStatus `json:"nodes"`
	MetaLeader string       `json:"meta_leader,omitempty"`
}

// Drifted is every drift every node reported.
func (c ClusterStatus) Drifted() []Drift {
	var all []Drift
	for _, n := range c.Nodes {
		all = append(all, n.Drift...)
	}
	return all
}

// ClusterStatus asks every node for its status: the nodes that answer
// within wait, and those of the cluster they name that did not, as down.
func (s *Service) ClusterStatus(ctx context.Context, wait time.Duration) (ClusterStatus, error) {
	nc := s.cfg.App
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return ClusterStatus{}, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(NodeStatusSubject, inbox, nil); err != nil {
		return ClusterStatus{}, err
	}
	var st ClusterStatus
	seen, known := map[string]bool{}, map[string]bool{}
	deadline := time.Now().Add(wait)
	for {
		// Once every node known of has answered, there is no one to
		// wait for.
		if len(seen) > 0 && len(known) > 0 && len(seen) >= len(known) {
			break
		}
		m, err := sub.NextMsg(min(time.Until(deadline), wait))
		if err != nil {
			break
		}
		var n NodeStatus
		if json.Unmarshal(m.Data, &n) != nil || n.Name == "" || seen[n.Name] {
			continue
		}
		n.Up, seen[n.Name] = true, true
		for _, p := range n.Peers {
			known[p] = true
		}
		if n.MetaLeader != "" {
			st.MetaLeader = n.MetaLeader
		}
		st.Nodes = append(st.Nodes, n)
		if ctx.Err() != nil {
			break
		}
	}
	if len(st.Nodes) == 0 {
		return st, fmt.Errorf("no latch node answered on %s", NodeStatusSubject)
	}
	for p := range known {
		if !seen[p] {
			st.Nodes = append(st.Nodes, NodeStatus{Name: p, Error: "did not answer"})
		}
	}
	slices.SortFunc(st.Nodes, func(a, b NodeStatus) int { return strings.Compare(a.Name, b.Name) })
	return st, nil
}

// ClusterRepairReply names the accounts whose record was made the JWT in
// force again.
type ClusterRepairReply struct {
	Repaired []string `json:"repaired"`
}

// Lagging lists the replicas that are behind, of latch's own streams
// (LATCH's buckets and audit trail) that this node leads: each stream is
// reported once in a cluster, by its leader. On external servers
// (Config.External) every one of latch's streams is reported. (Persons' streams are left
// out: reading every account's streams from the embedded server races
// with account updates inside nats-server 2.15.2.)
func (s *Service) Lagging(ctx context.Context) ([]StreamLag, error) {
	var out []StreamLag
	lister := s.js.ListStreams(ctx)
	for info := range lister.Info() {
		if info.Cluster == nil || (info.Cluster.Leader != s.cfg.Node && !s.cfg.External) {
			continue
		}
		for _, r := range info.Cluster.Replicas {
			if r.Lag > 0 || !r.Current || r.Offline {
				out = append(out, StreamLag{Account: s.cfg.AppAccount, Stream: info.Config.Name, Replica: r.Name, Lag: r.Lag, Current: r.Current, Offline: r.Offline})
			}
		}
	}
	return out, lister.Err()
}
