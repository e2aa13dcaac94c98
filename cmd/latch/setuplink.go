package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
)

func setupLinkCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "setup-link",
		Usage: "print the one-time setup link `latch serve` keeps in <data>/setup-link when it runs without a terminal",
		Description: `While no admin has a passkey, latch serve makes a one-time setup link at
every start. On a terminal it prints it; in a container or under a service
manager it writes it to <data>/setup-link (0600), out of the log, and this
prints it. On fly.io:

    fly ssh console --machine <id> -C "/latch setup-link"

Whoever opens the link becomes a person and an admin. Once one has, the
file is gone at the next start; make more admins with
latch invite create --admin.`,
		Flags: withData(),
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef("setup-link takes no arguments")
			}
			file := filepath.Join(e.global(c, "data"), setupLinkFile)
			b, err := os.ReadFile(file)
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%s does not exist: an admin has signed up already (then make more with latch invite create --admin), "+
					"latch serve printed the link on its terminal, or it has not started on this data folder yet", file)
			}
			if err != nil {
				return err
			}
			link := strings.TrimSpace(string(b))
			if !strings.Contains(link, "/setup/") {
				return fmt.Errorf("%s does not hold a setup link; start latch serve again to make one", file)
			}
			fmt.Fprintln(e.stdout, link)
			return nil
		},
	}
}
