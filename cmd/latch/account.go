package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"
)

func accountCommand(e *env) *cli.Command {
	nameArg := []string{"NAME"}
	return &cli.Command{
		Name:  "account",
		Usage: "manage person accounts (through the running server's admin service)",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "create a person account; prints its public key (A…)",
				ArgsUsage: "NAME",
				Description: `NAME: 1 to 32 of a-z, 0-9, '-' and '_', starting with a letter or digit.
The account gets a scoped device signing key, a service signing key,
JetStream quotas (the server's defaults unless given here) and a records bucket.`,
				Before: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return nil // the action says what is wrong with the arguments
					}
					if err := accounts.ValidatePersonName(c.Args().First()); err != nil {
						return invalidArg("account name", err)
					}
					return nil
				},
				Flags: withGlobals(append([]cli.Flag{
					&cli.StringFlag{Name: "display-name", Usage: "the person's name as shown"},
					&cli.BoolFlag{Name: "admin", Usage: "make the person an admin"},
					jsonFlag(),
				}, limitFlags(" (default: the server's --account-* setting)")...)...),
				Action: adminCall(e, nameArg, accounts.EndpointAccountAdd,
					func(c *cli.Context, a []string) (accounts.AccountAddRequest, error) {
						req := accounts.AccountAddRequest{Name: a[0], DisplayName: c.String("display-name"), Role: accounts.RoleMember}
						if c.Bool("admin") {
							req.Role = accounts.RoleAdmin
						}
						// What is not given is the server's (its --account-* flags).
						var err error
						req.Limits, err = limitsGiven(c)
						return req, err
					},
					func(_ *cli.Context, p accounts.Person) error {
						fmt.Fprintln(e.stdout, p.Account)
						fmt.Fprintf(e.stderr, "%s has no passkey yet: `latch invite create --for %s` makes a link that gives them one, to sign in to the web GUI\n", p.Name, p.Name)
						return nil
					}),
			},
			{
				Name:  "ls",
				Usage: "list person accounts",
				Flags: withGlobals(jsonFlag()),
				Action: adminCall(e, nil, accounts.EndpointAccountList, noRequest,
					func(_ *cli.Context, ps []accounts.Person) error {
						return list(e.stdout, []string{"NAME", "ACCOUNT", "ROLE", "STATUS", "DISK", "CREATED"}, ps, func(p accounts.Person) []string {
							return []string{p.Name, p.Account, p.Role, p.Status, size(p.Limits.Disk), when(p.Created)}
						})
					}),
			},
			{
				Name:      "show",
				Usage:     "show a person account",
				ArgsUsage: "NAME",
				Flags:     withGlobals(jsonFlag()),
				Action: adminCall(e, nameArg, accounts.EndpointAccountShow, nameRequest,
					func(_ *cli.Context, d accounts.AccountDetail) error {
						return fields(e.stdout,
							"name", d.Name, "display name", dash(d.DisplayName), "account", d.Account, "role", d.Role,
							"status", d.Status, "created", when(d.Created), "disabled at", whenPtr(d.DisabledAt),
							"disk quota", size(d.Limits.Disk), "records", recordsUsage(d.Usage),
							"records history", historyUsage(d.Usage), "memory quota", size(d.Limits.Memory),
							"connections", strconv.FormatInt(d.Limits.Conns, 10), "payload", size(d.Limits.Payload),
							"devices", fmt.Sprintf("%d active, %d revoked", d.DevicesActive, d.DevicesRevoked),
							"jwt issued", when(d.IssuedAt), "jwt issuer", d.Issuer,
							"revocations", strconv.Itoa(d.Revocations),
						)
					}),
			},
			{
				Name:      "edit",
				Usage:     "change a person's limits: disk and memory quotas, connections, largest message, consumers",
				ArgsUsage: "NAME",
				Description: `Changes the limits given, through the account's single writer, audited;
the others stay. When the disk quota is smaller than what the records
hold, nothing is lost: devices cannot write until deletes bring the
records under it.`,
				Flags: withGlobals(append(limitFlags(""), jsonFlag())...),
				Action: adminCall(e, nameArg, accounts.EndpointAccountEdit,
					func(c *cli.Context, a []string) (accounts.AccountEditRequest, error) {
						l, err := limitsGiven(c)
						if err != nil {
							return accounts.AccountEditRequest{}, err
						}
						if l == (accounts.Limits{}) {
							return accounts.AccountEditRequest{}, usagef("give at least one of --disk, --memory, --conns, --payload, --consumers")
						}
						return accounts.AccountEditRequest{Name: a[0], LimitsEdit: accounts.LimitsEdit{
							Disk: l.Disk, Memory: l.Memory, Conns: l.Conns, Payload: l.Payload, Consumers: l.Consumers,
						}}, nil
					},
					func(_ *cli.Context, p accounts.Person) error {
						return fields(e.stdout, "name", p.Name, "disk quota", size(p.Limits.Disk), "memory quota", size(p.Limits.Memory),
							"connections", strconv.FormatInt(p.Limits.Conns, 10), "payload", size(p.Limits.Payload),
							"consumers", strconv.FormatInt(p.Limits.Consumers, 10))
					}),
			},
			{
				Name:      "disable",
				Usage:     "refuse the account's connections and close the open ones; its data and devices are kept",
				ArgsUsage: "NAME",
				Flags:     withGlobals(jsonFlag()),
				Action:    e.personAction("disabled", accounts.EndpointAccountDisable),
			},
			{
				Name:      "enable",
				Usage:     "let a disabled account's devices connect again",
				ArgsUsage: "NAME",
				Flags:     withGlobals(jsonFlag()),
				Action:    e.personAction("enabled", accounts.EndpointAccountEnable),
			},
			{
				Name:      "delete",
				Usage:     "delete a person account: devices revoked, JetStream data purged, JWT removed from the resolver",
				ArgsUsage: "NAME",
				Description: `It cannot be undone. On a terminal it asks you to type the name again;
elsewhere (a script) it needs --yes.`,
				Flags: withGlobals(jsonFlag(), &cli.BoolFlag{Name: "yes", Usage: "delete without asking"}),
				// Asked before anything connects.
				Before: func(c *cli.Context) error {
					if c.Bool("yes") || c.NArg() != 1 {
						return nil
					}
					return e.confirm(fmt.Sprintf("Delete %s for good? Their account, devices, records and passkeys are removed; this cannot be undone.\nType the name to confirm: ", c.Args().First()), c.Args().First())
				},
				Action: e.personAction("deleted", accounts.EndpointAccountDelete),
			},
			{
				Name:      "restore",
				Usage:     "set a person's records back to what they were at a time (after a lost device wiped them)",
				ArgsUsage: "NAME",
				Description: `Every write to a person's records is kept for 30 days (up to their disk
quota again) in a history their devices cannot write, delete or purge.
This sets the bucket back to what it was just before --at: keys made since
are deleted, keys changed or removed since get their value back. It writes
like a device, so it can itself be undone by another restore.
--at is RFC 3339 (2026-12-01T15:04:05Z) or a duration ago (90m, 2h, 3d).`,
				Before: func(c *cli.Context) error { return requireFlags(c, "at") },
				Flags:  withGlobals(&cli.StringFlag{Name: "at", Usage: "when: RFC 3339, or a duration ago such as 2h (required)"}, jsonFlag()),
				Action: adminCall(e, nameArg, accounts.EndpointAccountRestore,
					func(c *cli.Context, a []string) (accounts.RestoreRequest, error) {
						at, err := parseWhen(c.String("at"), time.Now())
						if err != nil {
							return accounts.RestoreRequest{}, usagef("--at: %v", err)
						}
						return accounts.RestoreRequest{Name: a[0], At: at}, nil
					},
					func(c *cli.Context, r accounts.Restored) error {
						fmt.Fprintf(e.stdout, "restored %s's records to %s: %d keys put back, %d deleted\n", c.Args().First(), when(r.At), r.Put, r.Deleted)
						return nil
					}),
			},
			{
				Name:      "consumers",
				Usage:     "list the consumers of a person's records bucket; --clear deletes them all",
				ArgsUsage: "NAME",
				Description: `Devices' watches, keys and history make consumers of the records bucket,
and a device may make durable ones. The server removes any consumer idle
for 15 minutes; an account holds at most 256 at once (its JetStream limit). When a
device has filled them (watches fail with "maximum consumers limit
reached"), --clear deletes them all: the watches of connected devices make
themselves again, durable consumers are gone. Revoke the device first.`,
				Flags: withGlobals(&cli.BoolFlag{Name: "clear", Usage: "delete every consumer of the bucket first"}, jsonFlag()),
				Action: adminCall(e, nameArg, accounts.EndpointAccountConsumers,
					func(c *cli.Context, a []string) (accounts.ConsumersRequest, error) {
						return accounts.ConsumersRequest{Name: a[0], Clear: c.Bool("clear")}, nil
					},
					func(c *cli.Context, r accounts.ConsumersReply) error {
						if c.Bool("clear") {
							fmt.Fprintf(e.stderr, "deleted %d consumers\n", r.Cleared)
						}
						return list(e.stdout, []string{"NAME", "KIND", "FILTER", "CREATED", "REMOVED IDLE AFTER", "PENDING"}, r.Consumers, func(cs accounts.RecordsConsumer) []string {
							kind, idle := "ephemeral", "never"
							if cs.Durable {
								kind = "durable"
							}
							if cs.Idle > 0 {
								idle = cs.Idle.String()
							}
							return []string{cs.Name, kind, dash(cs.Filter), when(cs.Created), idle, strconv.FormatUint(cs.Pending, 10)}
						})
					}),
			},
		},
	}
}

// personAction runs an admin call on the account named by the one
// argument and reports what it did.
func (e *env) personAction(did string, endpoint accounts.Endpoint[accounts.AccountRequest, accounts.Person]) cli.ActionFunc {
	return adminCall(e, []string{"NAME"}, endpoint, nameRequest, func(_ *cli.Context, p accounts.Person) error {
		fmt.Fprintf(e.stdout, "%s %s (%s)\n", did, p.Name, p.Account)
		return nil
	})
}

// nameRequest asks about the account named by the one argument.
func nameRequest(_ *cli.Context, a []string) (accounts.AccountRequest, error) {
	return accounts.AccountRequest{Name: a[0]}, nil
}

// recordsUsage says how full a person's records are: "-" when the
// person is not active, so their records cannot be read.
func recordsUsage(u *accounts.Usage) string {
	if u == nil {
		return "-"
	}
	if u.Quota <= 0 {
		return approxSize(u.Records)
	}
	return fmt.Sprintf("%s of %s (%d%%)", approxSize(u.Records), approxSize(u.Quota), u.Records*100/u.Quota)
}

// historyUsage is what the records history holds.
func historyUsage(u *accounts.Usage) string {
	if u == nil {
		return "-"
	}
	return approxSize(u.History)
}

// limitFlags are the flags of a person's limits; note follows each usage.
func limitFlags(note string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "disk", Usage: "JetStream disk quota for the records, such as 256MiB" + note},
		&cli.StringFlag{Name: "memory", Usage: "JetStream memory quota for watchers, such as 2MiB" + note},
		&cli.Int64Flag{Name: "conns", Usage: "most connections of the person's devices at once" + note},
		&cli.StringFlag{Name: "payload", Usage: "largest message, such as 1MiB" + note},
		&cli.Int64Flag{Name: "consumers", Usage: "most watchers (JetStream consumers) at once" + note},
	}
}

// limitsGiven reads the limit flags given; the others are 0.
func limitsGiven(c *cli.Context) (accounts.Limits, error) {
	var l accounts.Limits
	for _, f := range []struct {
		flag string
		dst  *int64
	}{{"disk", &l.Disk}, {"memory", &l.Memory}, {"payload", &l.Payload}} {
		if !c.IsSet(f.flag) {
			continue
		}
		n, err := parseSize(c.String(f.flag))
		if err == nil && n == 0 {
			err = fmt.Errorf("a limit must be more than 0")
		}
		if err != nil {
			return l, usagef("--%s: %v", f.flag, err)
		}
		*f.dst = n
	}
	for _, f := range []struct {
		flag string
		dst  *int64
	}{{"conns", &l.Conns}, {"consumers", &l.Consumers}} {
		if !c.IsSet(f.flag) {
			continue
		}
		if n := c.Int64(f.flag); n <= 0 {
			return l, usagef("--%s: a limit must be more than 0", f.flag)
		} else {
			*f.dst = n
		}
	}
	return l, nil
}

// confirm asks on the terminal for want to be typed. Away from a terminal
// it refuses, so that a script says --yes on purpose.
func (e *env) confirm(question, want string) error {
	f, ok := e.stdin.(*os.File)
	if !ok || !isTerminal(f) {
		return usagef("this cannot be undone, and there is no terminal to ask on: add --yes")
	}
	fmt.Fprint(e.stderr, question)
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && line == "" {
		return fmt.Errorf("nothing typed; nothing deleted")
	}
	if strings.TrimSpace(line) != want {
		return fmt.Errorf("%q is not %q; nothing deleted", strings.TrimSpace(line), want)
	}
	return nil
}

// isTerminal reports whether f is a terminal: a character device that
// answers terminal requests, which /dev/null does not.
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
