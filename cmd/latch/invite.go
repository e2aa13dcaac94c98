package main

import (
	"fmt"

	"github.com/latch-dev/latch/accounts"
	"github.com/urfave/cli/v2"
)

func inviteCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "invite",
		Usage: "make sign-up links (through the running server's admin service)",
		Subcommands: []*cli.Command{
			{
				Name:  "create",
				Usage: "make a one-time sign-up link; prints it",
				Description: `Whoever opens the link registers a passkey and gets a person account.
The link works once and for 7 days; it is shown only now (the server keeps
a hash of it). With --admin the new person is an admin. When the server
runs without --public-url, the path is printed: put the address people
reach latch at in front of it.`,
				Flags: withGlobals(
					&cli.BoolFlag{Name: "admin", Usage: "the person who signs up becomes an admin"},
					jsonFlag(),
				),
				Action: e.adminAction(nil, func(c *cli.Context, ac *accounts.AdminClient, _ []string) error {
					r, err := ac.CreateInvite(c.Context, c.Bool("admin"))
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return printJSON(e.stdout, r)
					}
					if r.Link == "" {
						fmt.Fprintln(e.stdout, "/invite/"+r.Token)
						fmt.Fprintln(e.stderr, "the server has no --public-url: put the address people reach latch at in front of this path")
					} else {
						fmt.Fprintln(e.stdout, r.Link)
					}
					fmt.Fprintf(e.stderr, "invite %s works once, until %s; the link is shown only now\n", r.Invite.ID, when(r.Invite.Expires))
					return nil
				}),
			},
		},
	}
}
