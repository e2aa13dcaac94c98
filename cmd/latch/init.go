package main

import (
	"fmt"
	"path/filepath"

	"github.com/latch-dev/latch/operator"
	"github.com/urfave/cli/v2"
)

func initCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create a data folder: operator keys, the SYS, LATCH and LATCH_ADMIN accounts, sys.creds, admin.creds, the JetStream key",
		Description: `Makes the operator identity key and one operator signing key (strict
signing-key usage: only signing keys sign accounts, so the identity key can
go offline afterwards), the system account SYS, latch's own account LATCH
(no user outside the server), the admins' account LATCH_ADMIN, sys.creds
(the operator's system user: it sees all traffic of every account),
admin.creds (the first admin's creds: the admin service and nothing else)
and a random JetStream encryption key. Seeds and creds are files of mode
0600; seeds are in <data>/keys (mode 0700). It refuses a folder that is
already initialised or not empty.`,
		Flags: withData(
			&cli.StringFlag{Name: "name", Value: "latch", Usage: "the operator's name"},
		),
		Action: func(c *cli.Context) error {
			if _, err := args(c); err != nil {
				return err
			}
			dir := e.global(c, "data")
			op, err := operator.Init(dir, c.String("name"))
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "initialised %s for operator %q\n", dir, op.Name)
			fmt.Fprintf(e.stderr, "  %s: the first admin's creds, for latch's admin commands; give each admin their own with `latch admin creds issue`\n",
				filepath.Join(dir, operator.AdminCredsFile))
			fmt.Fprintf(e.stderr, "  %s: the operator's system user; it can read every message of every account, so keep it off machines that do not run latch\n",
				filepath.Join(dir, operator.SysCredsFile))
			fmt.Fprintln(e.stdout, op.Operator)
			return nil
		},
	}
}
