package main

import (
	"fmt"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/keys"
	"github.com/nats-io/nkeys"
	"github.com/urfave/cli/v2"
)

func adminCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "admin",
		Usage: "the admins' own creds: one per person who runs admin commands (through the running server's admin service)",
		Subcommands: []*cli.Command{{
			Name:  "creds",
			Usage: "issue, list and revoke admin creds",
			Description: `Admin creds are users of LATCH_ADMIN, an account that can call latch's admin
service and nothing else. ` + "`latch init`" + ` makes the first, <data>/admin.creds,
named "admin". Give each person who runs admin commands their own, so that
each can be revoked alone and the audit trail names who did what: the
admin service learns the caller's key from the NATS server, not from
anything the caller sends.`,
			Subcommands: []*cli.Command{
				{
					Name:  "issue",
					Usage: "make admin creds with a key made here; writes them to a new file (mode 0600) and prints their public key (U…)",
					Description: `The key is made on this machine and its seed goes only into --out: the
server sees the public key and signs a user JWT of LATCH_ADMIN for it.
NAME: 1 to 32 of a-z, 0-9, '-' and '_'. The file is never overwritten.`,
					Before: func(c *cli.Context) error {
						if err := requireFlags(c, "name", "out"); err != nil {
							return err
						}
						if err := accounts.ValidatePersonName(c.String("name")); err != nil {
							return invalidArg("--name", err)
						}
						return nil
					},
					Flags: withGlobals(
						&cli.StringFlag{Name: "name", Usage: "whose creds these are (required)"},
						&cli.StringFlag{Name: "out", Usage: "write the creds to this new file, mode 0600 (required)"},
						jsonFlag(),
					),
					Action: e.adminAction(nil, func(c *cli.Context, ac *accounts.AdminClient, _ []string) error {
						out := c.String("out")
						if err := checkNewFile(out); err != nil {
							return err
						}
						kp, err := nkeys.CreateUser()
						if err != nil {
							return err
						}
						pub, _ := kp.PublicKey()
						seed, _ := kp.Seed()
						r, err := accounts.EndpointAdminCredsIssue.Call(c.Context, ac, accounts.AdminCredsRequest{Name: c.String("name"), PublicKey: pub})
						if err != nil {
							return err
						}
						creds, err := keys.FormatCreds(r.JWT, seed)
						if err == nil {
							err = keys.WriteFileNew(out, creds)
						}
						if err != nil {
							return fmt.Errorf("admin creds %s were issued but could not be written: %v; revoke them with `latch admin creds revoke %s`", r.Name, err, r.Name)
						}
						if c.Bool("json") {
							return printJSON(e.stdout, r.AdminCreds)
						}
						fmt.Fprintln(e.stdout, r.PublicKey)
						fmt.Fprintf(e.stderr, "wrote admin creds %q to %s; give them to that admin alone\n", r.Name, out)
						return nil
					}),
				},
				{
					Name:  "ls",
					Usage: "list the admin creds, revoked ones too",
					Flags: withGlobals(jsonFlag()),
					Action: adminCall(e, nil, accounts.EndpointAdminCredsList, noRequest,
						func(_ *cli.Context, as []accounts.AdminCreds) error {
							return list(e.stdout, []string{"NAME", "KEY", "CREATED", "STATUS"}, as, func(a accounts.AdminCreds) []string {
								status := "active"
								if a.Revoked() {
									status = "revoked " + when(a.RevokedAt)
								}
								return []string{a.Name, a.PublicKey, when(a.Created), status}
							})
						}),
				},
				{
					Name:      "revoke",
					Usage:     "revoke admin creds: their connections close at once and they never connect again",
					ArgsUsage: "NAME",
					Flags:     withGlobals(jsonFlag()),
					Action: adminCall(e, []string{"NAME"}, accounts.EndpointAdminCredsRevoke,
						func(_ *cli.Context, a []string) (accounts.AdminCredsRequest, error) {
							return accounts.AdminCredsRequest{Name: a[0]}, nil
						},
						func(_ *cli.Context, r accounts.AdminCreds) error {
							fmt.Fprintf(e.stdout, "revoked admin creds %s (%s)\n", r.Name, r.PublicKey)
							return nil
						}),
				},
			},
		}},
	}
}
