package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/urfave/cli/v2"
)

// Global flags. Each may also be set by its environment variable; a flag
// given on the command line wins.
var globals = []struct {
	name, env, def, usage string
}{
	{"data", "LATCH_DATA", "./latch-data", "the data folder"},
	{"server", "LATCH_SERVER", "nats://127.0.0.1:4222", "the NATS URL of the latch server, for admin commands"},
	{"creds", "LATCH_CREDS", "", "admin creds for admin commands (default: <data>/admin.creds)"},
	{"ca", "LATCH_CA", "", "the CA (PEM) that signed the server's certificate, for admin commands, when the system does not trust it"},
	{"cert", "LATCH_CERT", "", "a client certificate (PEM) for admin commands, for a server started with --tls-ca"},
	{"key", "LATCH_KEY", "", "the key (PEM) of --cert"},
}

func globalFlags() []cli.Flag { return globalFlagsNamed() }

// globalFlagsNamed is the global flags with the given names, or all.
func globalFlagsNamed(names ...string) []cli.Flag {
	var fs []cli.Flag
	for _, g := range globals {
		if len(names) > 0 && !slices.Contains(names, g.name) {
			continue
		}
		fs = append(fs, &cli.StringFlag{
			Name:  g.name,
			Usage: fmt.Sprintf("%s [$%s]", g.usage, g.env),
			// No Value and no EnvVars here: global() resolves the default
			// and the environment through run's getenv.
			DefaultText: g.def,
		})
	}
	return fs
}

// global returns a global flag's value: from the command line (on the
// command or before it), else the environment, else the default.
func (e *env) global(c *cli.Context, name string) string {
	for _, l := range c.Lineage() {
		if l.IsSet(name) {
			return l.String(name)
		}
	}
	for _, g := range globals {
		if g.name != name {
			continue
		}
		if v := e.getenv(g.env); v != "" {
			return v
		}
		if name == "creds" {
			return filepath.Join(e.global(c, "data"), "admin.creds")
		}
		return g.def
	}
	panic("no global flag " + name)
}

// jsonFlag is --json; each command gets its own, since urfave/cli writes
// to a flag while it parses.
func jsonFlag() cli.Flag { return &cli.BoolFlag{Name: "json", Usage: "print JSON"} }

// withGlobals adds the global flags to a command's own, so they may be
// given after the command too.
func withGlobals(fs ...cli.Flag) []cli.Flag {
	return append(fs, globalFlags()...)
}

// withData adds --data alone, for the commands that work on the data
// folder and reach no server (init, serve, operator).
func withData(fs ...cli.Flag) []cli.Flag {
	return append(fs, globalFlagsNamed("data")...)
}

// parseSize reads a byte size: a number with an optional unit (B, KiB,
// MiB, GiB, TiB, PiB, or KB, MB, GB, TB, PB in powers of 1000).
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"PiB", 1 << 50},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"PB", 1e15}, {"B", 1},
	}
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range units {
		if num, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || (n > 0 && mult > (1<<62)/n) {
		return 0, fmt.Errorf("%q is not a size; write it like 64MiB or 1GiB", s)
	}
	return n * mult, nil
}

// parseTTL reads a lifetime: a Go duration, a number of days such as 90d,
// or "never".
func parseTTL(s string) (time.Duration, error) {
	if s == "never" {
		return -1, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err == nil && n > 0 && n < 100000 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a lifetime; write it like 90d, 12h or never", s)
	}
	return d, nil
}

// requireFlags refuses a command run without one of the named flags.
// urfave/cli's own Required would print the whole help to stdout and fail
// with exit status 1; a missing flag is misuse: one line, exit status 2.
func requireFlags(c *cli.Context, names ...string) error {
	for _, n := range names {
		if !c.IsSet(n) {
			return usagef("`%s` needs --%s; see `%s --help`", c.Command.HelpName, n, c.Command.HelpName)
		}
	}
	return nil
}

// invalidArg turns a name the accounts package refuses into misuse, so a
// bad name fails before anything connects, with exit status 2.
func invalidArg(what string, err error) error {
	msg := err.Error()
	var v *accounts.ValidationError
	if errors.As(err, &v) && len(v.Problems) == 1 {
		for _, p := range v.Problems {
			msg = p
		}
	}
	return usagef("%s: %s", what, msg)
}

// parseWhen reads a time: RFC 3339, or a duration before now (90m, 2h, 3d).
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := parseTTL(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither a time such as 2026-12-01T15:04:05Z nor a duration ago such as 2h", s)
}
