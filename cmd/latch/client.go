package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/latch-dev/latch/client"
	"github.com/urfave/cli/v2"
)

func clientCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "client",
		Usage: "the device side: enrol this machine as a device of your account",
		Subcommands: []*cli.Command{
			{
				Name:  "enroll",
				Usage: "enrol this machine: make its own nkey, show a code to approve in the web GUI, then write its creds",
				Description: `Makes a user nkey on this machine and asks the latch server at --url to
enrol it, proving it holds the seed; the seed never leaves the machine.
Prints a code such as WDJB-MJHT, a link, and the key's fingerprint, then
waits (up to 10 minutes) while you open the link or type the code under
"Enroll a device" in the web GUI and approve it with your passkey. Then it
writes device.creds (mode 0600) and client.json into the home folder
(--home, $LATCH_CLIENT_HOME, or latch in your configuration folder).
Nothing is written unless the enrolment is approved. An existing
enrolment in the home folder is never replaced without --force.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "url", Usage: "the latch server's web address, such as https://latch.example.com [$LATCH_URL]"},
					&cli.StringFlag{Name: "name", Usage: "this device's name (default: the host name)"},
					&cli.StringFlag{Name: "home", Usage: "the folder for the creds and client.json [$" + client.HomeEnv + "]"},
					&cli.BoolFlag{Name: "force", Usage: "replace an enrolment already in the home folder"},
				},
				Action: func(c *cli.Context) error {
					if _, err := args(c); err != nil {
						return err
					}
					url := c.String("url")
					if url == "" {
						url = e.getenv("LATCH_URL")
					}
					if url == "" {
						return usagef("`latch client enroll` needs --url, the latch server's web address; see `latch client enroll --help`")
					}
					home := c.String("home")
					if home == "" {
						var err error
						if home, err = client.DefaultHome(e.getenv); err != nil {
							return err
						}
					}
					name := c.String("name")
					if name == "" {
						h, err := os.Hostname()
						if err != nil || h == "" {
							return usagef("this machine's host name is unknown; give the device a name with --name")
						}
						name = h
					}
					p, err := client.StartEnroll(c.Context, client.EnrollOptions{
						URL: url, Name: name, Home: home, Force: c.Bool("force"),
					})
					if err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "To enrol %s, open\n\n    %s\n\nor go to %s and enter the code\n\n    %s\n\n",
						oneLine(p.Name), p.VerificationURIComplete, p.VerificationURI, p.UserCode)
					fmt.Fprintf(e.stdout, "The page must show this key fingerprint: %s\n", p.Fingerprint)
					fmt.Fprintf(e.stdout, "Waiting for approval (the code expires in %d minutes)...\n", int(time.Until(p.Expires).Round(time.Minute)/time.Minute))
					d, err := p.Wait(c.Context)
					if errors.Is(err, context.Canceled) {
						return errors.New("interrupted; nothing was written, and the code expires by itself")
					}
					if err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "enrolled as %s (%s) in account %s; creds in %s\n", oneLine(d.Name), d.PublicKey, d.Account, d.CredsPath)
					return nil
				},
			},
		},
	}
}
