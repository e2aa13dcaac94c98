package resolver

import (
	"fmt"
	"io"
	"sort"
)

// ConfigFile is what a stock nats-server needs to trust the same accounts
// as latch: the operator, the system account, a full resolver and the
// account JWTs to preload.
type ConfigFile struct {
	OperatorName, OperatorJWT, SystemAccount string
	// ResolverDir is the stock server's own JWT folder.
	ResolverDir string
	// Preload is account public key → JWT.
	Preload map[string]string
}

// WriteConfig writes c as a nats-server configuration file. It says what
// options() sets for the embedded server, so that the two agree: a full
// resolver that deletes outright (allow_delete) and syncs every
// DefaultSyncInterval.
func WriteConfig(w io.Writer, c ConfigFile) error {
	pubs := make([]string, 0, len(c.Preload))
	for p := range c.Preload {
		pubs = append(pubs, p)
	}
	sort.Strings(pubs)
	fmt.Fprintf(w, "# nats-server configuration for operator %q, written by `latch operator config`.\n", c.OperatorName)
	fmt.Fprintf(w, "# Trusts account JWTs signed by the operator's signing keys; the full resolver\n")
	fmt.Fprintf(w, "# keeps them in %s and syncs them with its peers.\n\n", c.ResolverDir)
	fmt.Fprintf(w, "operator: %s\n\n", c.OperatorJWT)
	fmt.Fprintf(w, "system_account: %s\n\n", c.SystemAccount)
	fmt.Fprintf(w, "resolver {\n  type: full\n  dir: %q\n  allow_delete: true\n  interval: %q\n  timeout: \"1.9s\"\n}\n\n",
		c.ResolverDir, DefaultSyncInterval.String())
	fmt.Fprintf(w, "resolver_preload {\n")
	for _, p := range pubs {
		fmt.Fprintf(w, "  %s: %s\n", p, c.Preload[p])
	}
	_, err := fmt.Fprintf(w, "}\n")
	return err
}
