package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/client"
	"github.com/latch-dev/latch/keys"
	"github.com/urfave/cli/v2"
)

func deviceCommand(e *env) *cli.Command {
	accountFlag := func() cli.Flag {
		return &cli.StringFlag{Name: "account", Usage: "the person account's name (required)"}
	}
	needAccount := func(c *cli.Context) error { return requireFlags(c, "account") }
	// deviceRequest asks about the device named by the first argument.
	deviceRequest := func(c *cli.Context, a []string) (accounts.DeviceRequest, error) {
		return accounts.DeviceRequest{Account: c.String("account"), Device: a[0]}, nil
	}
	return &cli.Command{
		Name:  "device",
		Usage: "issue, approve, list and revoke the devices of a person account (through the running server's admin service)",
		Subcommands: []*cli.Command{
			{
				Name:  "issue",
				Usage: "issue a device with a key the server makes; writes its creds and prints its public key (U…)",
				Description: `The server makes the device's nkey, signs its user JWT with the account's
scoped device key and returns the creds once; they are never stored.
With --out they go to a new file of mode 0600 (an existing file is never
overwritten); without it, to stdout. Device names: 1 to 64 printable
characters, unique among the account's active devices.`,
				Before: func(c *cli.Context) error {
					if err := requireFlags(c, "account", "name"); err != nil {
						return err
					}
					if err := accounts.ValidateDeviceName(c.String("name")); err != nil {
						return invalidArg("--name", err)
					}
					return nil
				},
				Flags: withGlobals(
					accountFlag(),
					&cli.StringFlag{Name: "name", Usage: "the device's name (required)"},
					&cli.StringFlag{Name: "out", Usage: "write the creds to this new file (mode 0600)"},
					&cli.StringFlag{Name: "expires", Usage: "the JWT's lifetime: 90d, 12h or never (default: the server's)"},
					jsonFlag(),
				),
				Action: e.adminAction(nil, func(c *cli.Context, ac *accounts.AdminClient, _ []string) error {
					req := accounts.DeviceIssueRequest{Account: c.String("account"), Name: c.String("name")}
					if c.IsSet("expires") {
						ttl, err := parseTTL(c.String("expires"))
						if err != nil {
							return usagef("--expires: %v", err)
						}
						req.TTLSeconds = int64(ttl.Seconds())
						if ttl < 0 {
							req.TTLSeconds = -1
						}
					}
					out := c.String("out")
					if out != "" {
						// Fail before issuing if the file could not be written.
						if err := checkNewFile(out); err != nil {
							return err
						}
					}
					r, err := accounts.EndpointDeviceIssue.Call(c.Context, ac, req)
					if err != nil {
						return err
					}
					if out == "" {
						fmt.Fprint(e.stdout, r.Creds)
						fmt.Fprintf(e.stderr, "issued %s (%s); the creds above are shown once\n", r.Device.Name, r.Device.PublicKey)
						return nil
					}
					if err := keys.WriteFileNew(out, []byte(r.Creds)); err != nil {
						return fmt.Errorf("device %s was issued but its creds could not be written: %v; revoke it with `latch device revoke --account %s %s`", r.Device.PublicKey, err, r.Device.AccountName, r.Device.PublicKey)
					}
					if c.Bool("json") {
						return printJSON(e.stdout, r.Device)
					}
					fmt.Fprintln(e.stdout, r.Device.PublicKey)
					return nil
				}),
			},
			{
				Name:      "approve",
				Usage:     "approve a device's pending enrollment by the code it shows; prints its public key (U…)",
				ArgsUsage: "CODE (as the device shows it, such as WDJB-MJHT)",
				Description: `A device enrolling with ` + "`latch client enroll`" + ` made its own nkey and shows a
code. Approving the code makes the device's key a device of the account
(its JWT signed by the account's scoped device key); the device picks the
JWT up on its next poll and writes its own creds. Case, dashes and spaces
in CODE do not matter. The device's public key is printed: compare it with
the key the device shows, and revoke the device if they differ.`,
				Before: needAccount,
				Flags:  withGlobals(accountFlag(), jsonFlag()),
				Action: adminCall(e, []string{"CODE"}, accounts.EndpointDeviceApprove,
					func(c *cli.Context, a []string) (accounts.DeviceApproveRequest, error) {
						return accounts.DeviceApproveRequest{Account: c.String("account"), Code: a[0]}, nil
					},
					func(_ *cli.Context, d accounts.Device) error {
						fmt.Fprintln(e.stdout, d.PublicKey)
						fmt.Fprintf(e.stderr, "approved %s (key fingerprint %s, which the device shows) in account %s; the device receives its JWT on its next poll\n", d.Name, client.Fingerprint(d.PublicKey), d.AccountName)
						return nil
					}),
			},
			{
				Name:   "ls",
				Usage:  "list the devices of a person account",
				Before: needAccount,
				Flags:  withGlobals(accountFlag(), jsonFlag()),
				Action: adminCall(e, nil, accounts.EndpointDeviceList,
					func(c *cli.Context, _ []string) (accounts.DeviceRequest, error) {
						return accounts.DeviceRequest{Account: c.String("account")}, nil
					},
					func(_ *cli.Context, ds []accounts.Device) error {
						return list(e.stdout, []string{"NAME", "KEY", "ENROLLED", "CREATED", "EXPIRES", "STATUS", "SEEN"}, ds, func(d accounts.Device) []string {
							status := "active"
							if d.Revoked() {
								status = "revoked " + whenPtr(d.RevokedAt)
							}
							return []string{d.Name, d.PublicKey, d.Enrolled, when(d.Created), whenPtr(d.Expires), status, seen(d)}
						})
					}),
			},
			{
				Name:      "disconnect",
				Usage:     "close a device's open connections without revoking it; its client reconnects as after a network failure",
				ArgsUsage: "DEVICE (its name or public key)",
				Description: `A person account allows --account-conns connections (64 by default) for all
its devices together, and one device may hold many of them. This closes
the device's connections now, on this server; its creds still work and a
client that reconnects by itself comes back. To keep it out, revoke it.`,
				Before: needAccount,
				Flags:  withGlobals(accountFlag(), jsonFlag()),
				Action: adminCall(e, []string{"DEVICE"}, accounts.EndpointDeviceDisconnect, deviceRequest,
					func(_ *cli.Context, r accounts.DeviceDisconnectReply) error {
						fmt.Fprintf(e.stdout, "closed %d connections of %s\n", r.Closed, r.Device.Name)
						return nil
					}),
			},
			{
				Name:      "rename",
				Usage:     "give an active device another name",
				ArgsUsage: "DEVICE NEW-NAME (DEVICE is its name or public key)",
				Description: `Names are unique among a person's active devices. The device's JWT
keeps its old name until it is renewed.`,
				Before: needAccount,
				Flags:  withGlobals(accountFlag(), jsonFlag()),
				Action: adminCall(e, []string{"DEVICE", "NEW-NAME"}, accounts.EndpointDeviceRename,
					func(c *cli.Context, a []string) (accounts.DeviceRenameRequest, error) {
						if err := accounts.ValidateDeviceName(a[1]); err != nil {
							return accounts.DeviceRenameRequest{}, invalidArg("NEW-NAME", err)
						}
						return accounts.DeviceRenameRequest{Account: c.String("account"), Device: a[0], Name: a[1]}, nil
					},
					func(c *cli.Context, d accounts.Device) error {
						fmt.Fprintf(e.stdout, "renamed %s to %s (%s)\n", c.Args().First(), d.Name, client.Fingerprint(d.PublicKey))
						return nil
					}),
			},
			{
				Name:      "revoke",
				Usage:     "revoke a device: its live connections close at once and its creds never connect again",
				ArgsUsage: "DEVICE (its name or public key)",
				Before:    needAccount,
				Flags:     withGlobals(accountFlag(), jsonFlag()),
				Action: adminCall(e, []string{"DEVICE"}, accounts.EndpointDeviceRevoke, deviceRequest,
					func(_ *cli.Context, r accounts.DeviceRevokeReply) error {
						if r.AlreadyRevoked {
							fmt.Fprintf(e.stdout, "%s (%s) was already revoked at %s\n", r.Device.Name, r.Device.PublicKey, whenPtr(r.Device.RevokedAt))
							return nil
						}
						fmt.Fprintf(e.stdout, "revoked %s (%s)\n", r.Device.Name, r.Device.PublicKey)
						return nil
					}),
			},
		},
	}
}

// checkNewFile fails when path exists or its folder does not.
func checkNewFile(path string) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s already exists; choose another --out (nothing was issued)", path)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
		return fmt.Errorf("folder %s does not exist; create it first (nothing was issued)", filepath.Dir(path))
	}
	return nil
}

// seen says whether a device is online now, with how many connections,
// or when it was last seen.
func seen(d accounts.Device) string {
	switch {
	case d.Conns == 1:
		return "online"
	case d.Conns > 1:
		return "online, " + strconv.Itoa(d.Conns) + " connections"
	case d.LastSeen != nil:
		return "last seen " + when(*d.LastSeen)
	}
	return "never"
}
