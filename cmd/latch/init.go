package main

import (
	"fmt"

	"github.com/latch-dev/latch/accounts"
	"github.com/urfave/cli/v2"
)

func initCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create a data folder: operator keys, the SYS and LATCH accounts, sys.creds, admin.creds, the JetStream key",
		Description: `Makes the operator identity key and one operator signing key (strict
signing-key usage: only signing keys sign accounts, so the identity key can
go offline afterwards), the system account SYS and latch's own account
LATCH, sys.creds and admin.creds, and a random JetStream encryption key.
Seeds are files of mode 0600 in <data>/keys (mode 0700). It refuses a
folder that is already initialised or not empty.`,
		Flags: withGlobals(
			&cli.StringFlag{Name: "name", Value: "latch", Usage: "the operator's name"},
		),
		Action: func(c *cli.Context) error {
			if _, err := args(c); err != nil {
				return err
			}
			dir := e.global(c, "data")
			op, err := accounts.InitOperator(dir, c.String("name"))
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "initialised %s for operator %q\n", dir, op.Name)
			fmt.Fprintln(e.stdout, op.Operator)
			return nil
		},
	}
}
