// Command latch is the latch account server and its command line: the
// operator key ceremony, the server itself, and the admin commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/latch-dev/latch/server"
	"github.com/urfave/cli/v2"
)

// version and commit are set at build time with
// -ldflags "-X main.version=… -X main.commit=…" (Makefile, .goreleaser.yaml).
var (
	version = "0.1.0-dev"
	commit  = "unknown"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "latch:", err)
		os.Exit(exitCode(err))
	}
}

// exitCode is latch's exit status for an error run returned: 2 for a
// command used wrongly, 1 for any other failure, 0 for none.
func exitCode(err error) int {
	var u usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &u):
		return 2
	}
	return 1
}

// usageError is a command used wrongly; latch exits 2 on it.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return usageError{msg: fmt.Sprintf(format, args...)}
}

// env carries what run was given to the commands.
type env struct {
	getenv func(string) string
	// started, when set, is told of the server `latch serve` runs: tests
	// read its addresses back.
	started func(*server.Server)
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
}

// run runs the latch command line with args (args[0] is the program name).
// Standard input is the process's: only `latch client put KEY -` reads
// it, and tests that feed it call runIn.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runIn(ctx, args, getenv, os.Stdin, stdout, stderr)
}

// runIn is run with its own standard input.
func runIn(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	return runEnv(ctx, args, &env{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr})
}

// runEnv runs the command line in e.
func runEnv(ctx context.Context, args []string, e *env) error {
	var misuse error
	app := &cli.App{
		Name:      "latch",
		Usage:     "an account server for NATS decentralized auth: people sign in with passkeys, their devices get their own NATS users",
		Version:   version,
		Writer:    e.stdout,
		ErrWriter: e.stderr,
		// A help and a version flag of this run's own: urfave/cli's shared
		// ones are written to as they are parsed, so two runs at once
		// would race on them.
		Flags:       append(globalFlags(), helpFlag(), &cli.BoolFlag{Name: "version", Aliases: []string{"v"}, Usage: "print the version", DisableDefaultText: true}),
		HideHelp:    true,
		HideVersion: true,
		Action: func(c *cli.Context) error {
			if c.Bool("version") {
				fmt.Fprintf(e.stdout, "latch version %s (commit %s)\n", version, commit)
				return nil
			}
			if c.Args().Present() {
				return usagef("no command %q; see `latch --help`", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		Commands: []*cli.Command{
			initCommand(e),
			serveCommand(e),
			setupLinkCommand(e),
			operatorCommand(e),
			identityCommand(e),
			clusterCommand(e),
			accountCommand(e),
			deviceCommand(e),
			adminCommand(e),
			inviteCommand(e),
			auditCommand(e),
			releaseCommand(e),
			benchCommand(e),
			clientCommand(e),
		},
		HideHelpCommand: true,
		// Errors are returned to main, which prints them and picks the
		// exit code; urfave/cli must not exit by itself.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usagef("%v; see `latch --help`", err)
		},
		CommandNotFound: func(_ *cli.Context, name string) {
			misuse = usagef("no command %q; see `latch --help`", name)
		},
	}
	setUsageErrors(app.Commands)
	setGroupHelp(app.Commands, "latch")
	ownHelp(app.Commands)
	err := app.RunContext(ctx, flagsFirst(app.Flags, app.Commands, args))
	if misuse != nil {
		return misuse
	}
	return err
}

// setUsageErrors makes every command report misuse as a usageError, and
// makes a command group refuse an unknown subcommand.
func setUsageErrors(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = func(cc *cli.Context, err error, _ bool) error {
			return usagef("%v; see `%s --help`", err, cc.Command.HelpName)
		}
		if len(c.Subcommands) > 0 && c.Action == nil {
			c.Action = func(cc *cli.Context) error {
				if cc.Args().Present() {
					return usagef("no command %q in `%s`; see `%s --help`", cc.Args().First(), cc.Command.HelpName, cc.Command.HelpName)
				}
				return usagef("`%s` needs a command; see `%s --help`", cc.Command.HelpName, cc.Command.HelpName)
			}
		}
		setUsageErrors(c.Subcommands)
	}
}

// helpFlag is --help, one of each command's own.
func helpFlag() cli.Flag {
	return &cli.BoolFlag{Name: "help", Aliases: []string{"h"}, Usage: "show help", DisableDefaultText: true}
}

// ownHelp gives every command a help flag of its own instead of
// urfave/cli's shared one (see runEnv).
func ownHelp(cmds []*cli.Command) {
	for _, c := range cmds {
		c.HideHelp = true
		c.Flags = append(c.Flags, helpFlag())
		ownHelp(c.Subcommands)
	}
}

// setGroupHelp gives each command group a usage line that names the
// command it needs, and no help subcommand (--help is everywhere).
func setGroupHelp(cmds []*cli.Command, path string) {
	for _, c := range cmds {
		if len(c.Subcommands) == 0 {
			continue
		}
		c.UsageText = path + " " + c.Name + " command [command options] [arguments...]"
		c.HideHelpCommand = true
		setGroupHelp(c.Subcommands, path+" "+c.Name)
	}
}

// args checks that a command got exactly the positional arguments it names.
func args(c *cli.Context, names ...string) ([]string, error) {
	got := c.Args().Slice()
	if len(got) != len(names) {
		want := "no arguments"
		if len(names) > 0 {
			want = strings.Join(names, " ")
		}
		return nil, usagef("`%s` takes %s, got %d; see `%s --help`", c.Command.HelpName, want, len(got), c.Command.HelpName)
	}
	return got, nil
}

// flagsFirst moves a command's flags before its positional arguments, so
// `latch account add alice --json` works as `latch account add --json
// alice` does: urfave/cli v2 stops reading flags at the first argument.
// Flags given before a command stay where they are, with their values
// (`latch --data ./d account ls`); appFlags are those of the top level.
// After "--" everything is an argument.
func flagsFirst(appFlags []cli.Flag, cmds []*cli.Command, in []string) []string {
	out := []string{in[0]}
	i := 1
	flags := appFlags
	// Walk down the command path.
	for i < len(in) {
		a := in[i]
		if a != "--" && strings.HasPrefix(a, "-") && len(a) > 1 {
			out = append(out, a)
			i++
			if name := strings.TrimLeft(a, "-"); takesValue(flags)[name] && i < len(in) {
				out = append(out, in[i])
				i++
			}
			continue
		}
		var next *cli.Command
		for _, c := range cmds {
			if c.HasName(a) {
				next = c
			}
		}
		if next == nil {
			break
		}
		out = append(out, a)
		cmds, flags = next.Subcommands, next.Flags
		i++
		if len(cmds) == 0 {
			break
		}
	}
	takes := takesValue(flags)
	var opts, pos []string
	for ; i < len(in); i++ {
		a := in[i]
		switch {
		case a == "--":
			pos = append(pos, in[i+1:]...)
			i = len(in)
		case strings.HasPrefix(a, "-") && len(a) > 1:
			opts = append(opts, a)
			name := strings.TrimLeft(a, "-")
			if takes[name] && i+1 < len(in) {
				i++
				opts = append(opts, in[i])
			}
		default:
			pos = append(pos, a)
		}
	}
	out = append(out, opts...)
	if len(pos) > 0 {
		out = append(append(out, "--"), pos...)
	}
	return out
}

// takesValue names the flags that take a value; --name=value is none of
// them, since it carries its value.
func takesValue(flags []cli.Flag) map[string]bool {
	m := map[string]bool{}
	for _, f := range flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			m[n] = !isBool
		}
	}
	return m
}
