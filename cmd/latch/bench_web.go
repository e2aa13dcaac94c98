package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"time"

	"github.com/latch-dev/latch/accounts"
	"github.com/latch-dev/latch/internal/softpasskey"
	"github.com/urfave/cli/v2"
)

func benchWebCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "web",
		Usage: "sign persons up and log them in with passkeys over HTTP, and load their pages",
		Description: `Starts latch on a data folder of its own and has --persons persons, from
--parallel at once, do what a person does in the web GUI: open an invite
link an admin made, sign up with a new passkey (POST /register/begin and
/register/finish: the passkey checked, the person and their NATS account
made, a session started), load the Devices and Records pages, and log in
again in a new session with the same passkey (/login/begin and
/login/finish). The passkeys are software ones in this process (ES256,
user verified); each simulated person comes from an address of its own
(X-Forwarded-For, the server trusting it), so the per-address limits for
real browsers do not pace the bench. Reports sign-ups a second, the CPU
time per person for all of it, and the latency of each step.`,
		Flags: append(benchNodeFlags(),
			&cli.IntFlag{Name: "persons", Value: 200, Usage: "persons to sign up"},
			&cli.IntFlag{Name: "parallel", Value: 4, Usage: "persons at once"},
		),
		Action: func(c *cli.Context) error {
			if _, err := args(c); err != nil {
				return err
			}
			persons, parallel := c.Int("persons"), c.Int("parallel")
			if persons < 1 || parallel < 1 {
				return usagef("--persons and --parallel: at least 1")
			}
			o := e.benchNodeOptionsOf(c)
			o.trustProxy = true
			return e.runOps(c, o, persons, "persons", func(ctx context.Context, n *benchNode) (benchOps, error) {
				return benchWeb(ctx, n, persons, parallel)
			})
		},
	}
}

// webVisitor is a simulated browser: its cookies and its address.
type webVisitor struct {
	base string
	hc   *http.Client
}

func newWebVisitor(base, addr string, next http.RoundTripper) *webVisitor {
	jar, _ := cookiejar.New(nil)
	return &webVisitor{base: base, hc: &http.Client{Jar: jar, Timeout: time.Minute, Transport: forwardedFor{addr, next},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// post sends JSON as passkey.js does and returns the answer's body.
func (v *webVisitor) post(ctx context.Context, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", v.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	return v.do(req)
}

// get loads a page.
func (v *webVisitor) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", v.base+path, nil)
	if err != nil {
		return nil, err
	}
	return v.do(req)
}

func (v *webVisitor) do(req *http.Request) ([]byte, error) {
	resp, err := v.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, strings.TrimSpace(string(b)))
	}
	return b, err
}

func benchWeb(ctx context.Context, n *benchNode, persons, parallel int) (benchOps, error) {
	r := n.newOps("web", persons, parallel)
	base, err := n.webURL()
	if err != nil {
		return r, err
	}
	transport, err := n.transport()
	if err != nil {
		return r, err
	}
	// On a running latch, the persons signed up are found by their names
	// and deleted with the others at the end.
	defer n.adopt(ctx)
	// The invites, made beforehand: an admin's part, not the person's.
	tokens := make([]string, persons)
	for i := range tokens {
		inv, err := accounts.EndpointInviteCreate.Call(ctx, n.admin, accounts.InviteCreateRequest{})
		if err != nil {
			return r, fmt.Errorf("an invite: %w", err)
		}
		tokens[i] = inv.Token
	}
	steps := newStepTimes(persons, "invite page and sign-up with a new passkey", "the Devices page", "the Records page",
		"a login with the passkey", "all of it")
	person := func(i int) error {
		addr := benchAddr(i)
		v := newWebVisitor(base, addr, transport)
		t0 := time.Now()
		if _, err := v.get(ctx, "/invite/"+tokens[i]); err != nil {
			return err
		}
		body, _ := json.Marshal(map[string]string{"token": tokens[i], "display_name": n.person(i)})
		opts, err := v.post(ctx, "/register/begin", body)
		if err != nil {
			return err
		}
		pk, answer, err := softpasskey.Create(base, opts)
		if err != nil {
			return err
		}
		if _, err := v.post(ctx, "/register/finish", answer); err != nil {
			return err
		}
		t1 := time.Now()
		if _, err := v.get(ctx, "/devices"); err != nil {
			return err
		}
		t2 := time.Now()
		if _, err := v.get(ctx, "/records"); err != nil {
			return err
		}
		t3 := time.Now()
		// A new browser session: a login with the passkey.
		v = newWebVisitor(base, addr, transport)
		if opts, err = v.post(ctx, "/login/begin", []byte("{}")); err != nil {
			return err
		}
		if answer, err = pk.Get(opts); err != nil {
			return err
		}
		if _, err := v.post(ctx, "/login/finish", answer); err != nil {
			return err
		}
		t4 := time.Now()
		if _, err := v.get(ctx, "/devices"); err != nil {
			return fmt.Errorf("after the login: %w", err)
		}
		steps.record(i, t0, t1, t2, t3, t4)
		n.tick()
		return nil
	}
	began, cpu := time.Now(), benchCPU()
	err = inParallel(persons, parallel, func(i int) error {
		if err := person(i); err != nil {
			return fmt.Errorf("person %d: %w", i, err)
		}
		return nil
	})
	if err != nil {
		return r, err
	}
	r.timed(began, cpu)
	r.Latencies = steps.latencies()
	return r, nil
}
