package main

import (
	"fmt"

	"github.com/latch-dev/latch/accounts"
	"github.com/urfave/cli/v2"
)

func inviteCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "invite",
		Usage: "make, list and revoke sign-up links (through the running server's admin service)",
		Subcommands: []*cli.Command{
			{
				Name:  "create",
				Usage: "make a one-time sign-up link, or a link that gives an existing person a passkey; prints it",
				Description: `Whoever opens the link registers a passkey and gets a person account.
With --admin the new person is an admin. With --for NAME the link signs
up nobody: it adds a passkey to that person (made with latch account add,
say), who then signs in as themselves. A person who has a passkey already
gets such a link only with --recover (they lost theirs): whoever opens it
can sign in as them.

The link works once and for 7 days; it is shown only now (the server
keeps a hash of it). When the server runs without --public-url, the path
is printed: put the address people reach latch at in front of it.`,
				Flags: withGlobals(
					&cli.BoolFlag{Name: "admin", Usage: "the person who signs up becomes an admin"},
					&cli.StringFlag{Name: "for", Usage: "give this existing person a passkey instead of signing someone up"},
					&cli.BoolFlag{Name: "recover", Usage: "with --for: allow it though the person has a passkey (whoever opens the link can sign in as them)"},
					jsonFlag(),
				),
				Action: adminCall(e, nil, accounts.EndpointInviteCreate,
					func(c *cli.Context, _ []string) (accounts.InviteCreateRequest, error) {
						req := accounts.InviteCreateRequest{Admin: c.Bool("admin"), For: c.String("for"), Recover: c.Bool("recover")}
						switch {
						case req.For != "" && req.Admin:
							return req, usagef("--admin and --for do not go together: a link for an existing person adds a passkey, it does not change their role")
						case req.Recover && req.For == "":
							return req, usagef("--recover goes with --for NAME")
						}
						if req.For != "" {
							if err := accounts.ValidatePersonName(req.For); err != nil {
								return req, invalidArg("--for", err)
							}
						}
						return req, nil
					},
					func(_ *cli.Context, r accounts.InviteCreateReply) error {
						if r.Link == "" {
							fmt.Fprintln(e.stdout, "/invite/"+r.Token)
							fmt.Fprintln(e.stderr, "the server has no --public-url: put the address people reach latch at in front of this path")
						} else {
							fmt.Fprintln(e.stdout, r.Link)
						}
						if r.Invite.Recover {
							fmt.Fprintf(e.stderr, "warning: whoever opens this link can sign in as %s; hand it to them alone\n", r.Invite.For)
						}
						fmt.Fprintf(e.stderr, "invite %s works once, until %s; the link is shown only now\n", r.Invite.ID, when(r.Invite.Expires))
						return nil
					}),
			},
			{
				Name:  "ls",
				Usage: "list the invites that still work (not their links, which are shown once)",
				Flags: withGlobals(jsonFlag()),
				Action: adminCall(e, nil, accounts.EndpointInviteList, noRequest,
					func(_ *cli.Context, invs []accounts.Invite) error {
						return list(e.stdout, []string{"ID", "KIND", "CREATED", "EXPIRES", "BY"}, invs, func(inv accounts.Invite) []string {
							return []string{inv.ID, inviteKind(inv), when(inv.Created), when(inv.Expires), dash(inv.CreatedBy)}
						})
					}),
			},
			{
				Name:      "revoke",
				Usage:     "make an invite stop working",
				ArgsUsage: "ID",
				Flags:     withGlobals(),
				Action: e.adminAction([]string{"ID"}, func(c *cli.Context, ac *accounts.AdminClient, a []string) error {
					if _, err := accounts.EndpointInviteRevoke.Call(c.Context, ac, accounts.InviteRevokeRequest{ID: a[0]}); err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "invite %s revoked\n", a[0])
					return nil
				}),
			},
		},
	}
}

// inviteKind says what an invite does.
func inviteKind(inv accounts.Invite) string {
	switch {
	case inv.Setup:
		return "setup"
	case inv.For != "" && inv.Recover:
		return "recover " + inv.For
	case inv.For != "":
		return "passkey for " + inv.For
	case inv.Admin:
		return "admin"
	}
	return "member"
}
