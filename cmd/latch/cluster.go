package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/latch-dev/latch/accounts"
	"github.com/urfave/cli/v2"
)

func clusterCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "cluster",
		Usage: "the nodes of the deployment (through the running server's admin service)",
		Subcommands: []*cli.Command{
			{
				Name:  "status",
				Usage: "every node: region, up, JetStream current, the meta leader, replicas behind, and drift",
				Description: `Drift is an account whose JWT on a node is not latch's record of it and
not simply older: a JWT someone else pushed (nsc push, say). latch leaves
it in force until ` + "`latch cluster repair`" + `. A node that does not answer
within a few seconds is shown down. Without --json, exits 1 when a node
is down or not current, a replica is behind, or there is drift.`,
				Flags: withGlobals(jsonFlag()),
				Action: adminCall(e, nil, accounts.EndpointClusterStatus, noRequest,
					func(c *cli.Context, st accounts.ClusterStatus) error {
						if err := list(e.stdout, []string{"NODE", "REGION", "UP", "JETSTREAM", "CURRENT", "LEADER", "BEHIND", "DRIFT"}, st.Nodes,
							func(n accounts.NodeStatus) []string {
								leader := ""
								if n.Name == st.MetaLeader {
									leader = "*"
								}
								return []string{n.Name, dash(n.Region), yesNo(n.Up), dash(n.JetStream), yesNo(n.Current), leader,
									strconv.Itoa(len(n.Lagging)), strconv.Itoa(len(n.Drift))}
							}); err != nil {
							return err
						}
						for _, n := range st.Nodes {
							if len(n.Servers) > 0 {
								fmt.Fprintf(e.stdout, "%s uses the NATS servers: %s\n", n.Name, strings.Join(n.Servers, ", "))
							}
							for _, l := range n.Lagging {
								fmt.Fprintf(e.stdout, "behind: stream %s of %s: replica on %s is %d behind (current %v)\n", l.Stream, l.Account, l.Replica, l.Lag, l.Current)
							}
							for _, d := range n.Drift {
								fmt.Fprintf(e.stdout, "drift: %s (%s) on %s: a JWT issued %s by %s; latch's record was issued %s\n",
									dash(d.AccountName), d.Account, d.Node, when(d.Found), d.FoundIssuer, when(d.Recorded))
							}
							if n.Error != "" {
								fmt.Fprintf(e.stdout, "%s: %s\n", n.Name, n.Error)
							}
						}
						return clusterHealth(st)
					}),
			},
			{
				Name:  "repair",
				Usage: "make latch's record the JWT in force again of every drifted account (signed anew, on every node); prints them",
				Flags: withGlobals(jsonFlag()),
				Action: adminCall(e, nil, accounts.EndpointClusterRepair, noRequest,
					func(_ *cli.Context, r accounts.ClusterRepairReply) error {
						for _, a := range r.Repaired {
							fmt.Fprintln(e.stdout, a)
						}
						fmt.Fprintf(e.stderr, "repaired %d accounts\n", len(r.Repaired))
						return nil
					}),
			},
			{
				Name:  "rebalance",
				Usage: "give every person's records as many replicas as the nodes run with (--replicas), after that number changed",
				Description: `A node that starts with another --replicas than latch's own streams have
moves them, and then every person's records in the background; this does
the persons' now (a move cut short by a restart is finished this way) and
says how many moved. JetStream copies each stream to its new replicas while it
keeps serving: nothing is lost or stopped. Audited (records.replicas).`,
				Flags: withGlobals(jsonFlag()),
				Action: adminCall(e, nil, accounts.EndpointClusterRebalance, noRequest,
					func(_ *cli.Context, r accounts.RebalanceResult) error {
						for name, why := range r.Failed {
							fmt.Fprintf(e.stdout, "not moved: %s: %s\n", name, why)
						}
						fmt.Fprintf(e.stderr, "moved the records of %d persons\n", r.Moved)
						if len(r.Failed) > 0 {
							return fmt.Errorf("the records of %d persons were not moved; run it again", len(r.Failed))
						}
						return nil
					}),
			},
		},
	}
}

// clusterHealth is an error naming what is wrong with the cluster, or nil.
func clusterHealth(st accounts.ClusterStatus) error {
	var bad []string
	for _, n := range st.Nodes {
		switch {
		case !n.Up:
			bad = append(bad, n.Name+" is down")
		case n.JetStream != "ok" || !n.Current:
			bad = append(bad, n.Name+" is not current")
		}
		if len(n.Lagging) > 0 {
			bad = append(bad, fmt.Sprintf("%d replicas are behind on streams %s leads", len(n.Lagging), n.Name))
		}
		if len(n.Drift) > 0 {
			bad = append(bad, fmt.Sprintf("%s has drift in %d accounts (`latch cluster repair`)", n.Name, len(n.Drift)))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s", strings.Join(bad, "; "))
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
