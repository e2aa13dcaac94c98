package main

import (
	"fmt"
	"os"

	"github.com/latch-dev/latch/keys"
	"github.com/latch-dev/latch/operator"
	"github.com/urfave/cli/v2"
)

func identityCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "identity",
		Usage: "a deployment's identity: what makes a data folder a node of it (works on the data folder, offline)",
		Subcommands: []*cli.Command{
			{
				Name:  "export",
				Usage: "write the deployment's identity, for `latch serve --identity` on another node",
				Description: `Writes the identity to standard output (made 0600 when it is a file, as
with > acme.identity) or to --out, a new file of mode 0600. It holds the
operator JWT, the seeds of the operator signing key, of the SYS, LATCH
and LATCH_ADMIN signing keys and of the release key (made now in a
deployment's first folder made before releases), the JetStream key and
the route secret:
whoever has it can sign accounts and read JetStream. It does not hold the
operator identity key. Keep it like a seed: a secret store (fly secrets set
LATCH_IDENTITY=- < acme.identity), never a repository.`,
				Flags: withData(&cli.StringFlag{Name: "out", Usage: "write to this new file (mode 0600) instead of standard output"}),
				Action: e.operatorAction(nil, func(c *cli.Context, op *operator.Tree, _ []string) error {
					// A deployment's first folder made before releases
					// gets its release key now, so that the identity
					// carries it to nodes that never ran this folder.
					if _, err := op.UpgradeReleaseKey(); err != nil {
						return err
					}
					id, err := op.Identity(e.getenv)
					if err != nil {
						return err
					}
					b, err := id.Encode()
					if err != nil {
						return err
					}
					where := "standard output"
					if out := c.String("out"); out != "" {
						if err := keys.WriteFileNew(out, b); err != nil {
							return fmt.Errorf("--out: %w", err)
						}
						where = out
					} else {
						if f, ok := e.stdout.(*os.File); ok {
							if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
								if err := f.Chmod(0o600); err != nil {
									return fmt.Errorf("make the identity file readable by its owner only: %w", err)
								}
							}
						}
						if _, err := e.stdout.Write(b); err != nil {
							return err
						}
					}
					fmt.Fprintf(e.stderr, "wrote the identity of deployment %q (operator %s) to %s.\n", op.Name, op.Operator, where)
					fmt.Fprintln(e.stderr, "It holds the operator signing key, the SYS, LATCH and LATCH_ADMIN signing keys, the JetStream key and the route secret (not the operator identity key).")
					fmt.Fprintln(e.stderr, "Whoever has it can act as latch: keep it as a secret (0600, a secret store such as fly secrets), never in a repository.")
					return nil
				}),
			},
		},
	}
}
