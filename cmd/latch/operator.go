package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/latch-dev/latch/operator"
	"github.com/latch-dev/latch/resolver"
	"github.com/nats-io/jwt/v2"
	"github.com/urfave/cli/v2"
)

func operatorCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "operator",
		Usage: "the operator: its keys and a config for stock nats-servers (works on the data folder, offline)",
		Subcommands: []*cli.Command{
			{
				Name:  "show",
				Usage: "show the operator, its signing keys and latch's own accounts",
				Flags: withData(jsonFlag()),
				Action: e.operatorAction(nil, func(c *cli.Context, op *operator.Tree, _ []string) error {
					if err := op.CheckKeys(e.getenv); err != nil {
						return err
					}
					oc, err := op.OperatorClaims()
					if err != nil {
						return err
					}
					keys := oc.SigningKeys
					sort.Strings(keys)
					info := operatorInfo{op.Name, op.Operator, "offline", keys, op.SigningKey, oc.StrictSigningKeyUsage,
						op.SystemAccount.PublicKey, op.AppAccount.PublicKey, op.AdminAccount.PublicKey, op.Dir}
					if op.HasIdentityKey() {
						info.IdentityKey = "in " + op.Keys.Dir()
					}
					if c.Bool("json") {
						return printJSON(e.stdout, info)
					}
					return fields(e.stdout,
						"name", info.Name, "operator", info.Operator, "identity key", info.IdentityKey,
						"signing keys", strings.Join(keys, ", "), "signing key in use", info.SigningKey,
						"strict signing keys", strconv.FormatBool(info.Strict),
						"system account", info.SystemAccount, "app account", info.AppAccount,
						"admin account", info.AdminAccount, "data", info.Data,
					)
				}),
			},
			{
				Name:  "signing-key",
				Usage: "add or remove operator signing keys",
				Subcommands: []*cli.Command{
					{
						Name:  "add",
						Usage: "make a new operator signing key and sign accounts with it from the next start on; prints it",
						Description: `Needs the operator identity key. The running server trusts the new key,
and re-signs every account with it, when it is restarted. Then the old key
can be removed with ` + "`latch operator signing-key rm`" + `.`,
						Flags: withData(),
						Action: e.operatorAction(nil, func(c *cli.Context, op *operator.Tree, _ []string) error {
							pub, err := op.AddSigningKey()
							if err != nil {
								return err
							}
							fmt.Fprintln(e.stdout, pub)
							fmt.Fprintln(e.stderr, "restart `latch serve` to sign with the new key")
							return nil
						}),
					},
					{
						Name:      "rm",
						Usage:     "remove an operator signing key that signs no account any more",
						ArgsUsage: "KEY",
						Flags:     withData(),
						Action: e.operatorAction([]string{"KEY"}, func(c *cli.Context, op *operator.Tree, a []string) error {
							if err := op.RemoveSigningKey(a[0]); err != nil {
								return err
							}
							fmt.Fprintf(e.stdout, "removed %s; restart `latch serve` so the server stops trusting it\n", a[0])
							return nil
						}),
					},
				},
			},
			{
				Name:  "config",
				Usage: "print a nats-server config that trusts this operator (operator, system_account, resolver full, resolver_preload)",
				Description: `The config trusts latch's operator and preloads SYS, LATCH and LATCH_ADMIN
(--all-accounts: every account in <data>/resolver as it is now). It is a
starting point and a checking tool, not a server that serves latch's
devices: without --all-accounts it knows no person account, and with it
a snapshot that latch's later changes (revocations, disabled or deleted
persons, new persons) never reach. See docs/operations.md.`,
				Flags: withData(
					&cli.StringFlag{Name: "resolver-dir", Value: "./resolver", Usage: "the resolver folder in the printed config"},
					&cli.BoolFlag{Name: "all-accounts", Usage: "preload every account in <data>/resolver too, not only SYS and LATCH"},
				),
				Action: e.operatorAction(nil, func(c *cli.Context, op *operator.Tree, _ []string) error {
					return writeServerConfig(e, op, c.String("resolver-dir"), c.Bool("all-accounts"))
				}),
			},
		},
	}
}

// operatorInfo is what `latch operator show` shows, and its --json.
type operatorInfo struct {
	Name          string   `json:"name"`
	Operator      string   `json:"operator"`
	IdentityKey   string   `json:"identity_key"`
	SigningKeys   []string `json:"signing_keys"`
	SigningKey    string   `json:"signing_key_in_use"`
	Strict        bool     `json:"strict_signing_key_usage"`
	SystemAccount string   `json:"system_account"`
	AppAccount    string   `json:"app_account"`
	AdminAccount  string   `json:"admin_account"`
	Data          string   `json:"data"`
}

// operatorAction wraps an operator command: it checks the positional
// arguments and loads the data folder.
func (e *env) operatorAction(argNames []string, f func(c *cli.Context, op *operator.Tree, args []string) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		a, err := args(c, argNames...)
		if err != nil {
			return err
		}
		op, err := operator.Load(e.global(c, "data"))
		if err != nil {
			return err
		}
		return f(c, op, a)
	}
}

func writeServerConfig(e *env, op *operator.Tree, resolverDir string, all bool) error {
	preload := op.Preload()
	if all {
		files, err := filepath.Glob(filepath.Join(op.Dir, "resolver", "*.jwt"))
		if err != nil {
			return err
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			ac, err := jwt.DecodeAccountClaims(string(b))
			if err != nil {
				return fmt.Errorf("%s: %v", f, err)
			}
			if _, ok := preload[ac.Subject]; !ok {
				preload[ac.Subject] = string(b)
			}
		}
	}
	return resolver.WriteConfig(e.stdout, resolver.ConfigFile{
		OperatorName: op.Name, OperatorJWT: op.OperatorJWT, SystemAccount: op.SystemAccount.PublicKey,
		ResolverDir: resolverDir, Preload: preload,
	})
}
