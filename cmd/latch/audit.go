package main

import (
	"fmt"

	"github.com/latch-dev/latch/accounts"
	"github.com/urfave/cli/v2"
)

func auditCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "audit",
		Usage: "show the last entries of the audit trail",
		Flags: withGlobals(
			&cli.IntFlag{Name: "last", Value: 50, Usage: fmt.Sprintf("how many entries, 1 to %d", accounts.MaxAuditLast)},
			jsonFlag(),
		),
		// Checked before anything connects.
		Before: func(c *cli.Context) error {
			if n := c.Int("last"); n < 1 || n > accounts.MaxAuditLast {
				return usagef("--last %d: give 1 to %d entries", n, accounts.MaxAuditLast)
			}
			return nil
		},
		Action: adminCall(e, nil, accounts.EndpointAuditList,
			func(c *cli.Context, _ []string) (accounts.AuditRequest, error) {
				return accounts.AuditRequest{Last: c.Int("last")}, nil
			},
			func(_ *cli.Context, es []accounts.AuditEvent) error {
				return list(e.stdout, []string{"TIME", "ACTOR", "ACTION", "ACCOUNT", "DEVICE", "KEY", "DETAIL"}, es, func(ev accounts.AuditEvent) []string {
					return []string{when(ev.Time), ev.Actor, string(ev.Action), dash(ev.AccountName), dash(ev.DeviceName), dash(ev.Device), dash(ev.Detail)}
				})
			}),
	}
}
