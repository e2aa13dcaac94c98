package web

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestHTMXErrorIsANotice: an htmx request that fails gets its status and a
// notice, announced, with the message escaped, for the page's errors.js to
// put beside what made the request: no retarget to the page's one slot.
func TestHTMXErrorIsANotice(t *testing.T) {
	t.Parallel()
	tw := mustWeb(t, webOptions{Members: []string{"alice"}})
	pk := addTestPasskey(t, tw, "alice", "One", false)
	c := tw.loginAs(t, "alice")

	// The message quotes the name, which holds a tag and a control character.
	resp := c.do("POST", "/passkeys/"+pk.ID+"/rename", url.Values{"name": {"<b>bold</b>\a"}}, hxRequest, "true")
	body := strings.TrimSpace(text(t, resp))
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("rename to a bad name with htmx: got %d, want %d", resp.StatusCode, http.StatusBadRequest)
	}
	for _, h := range []string{"HX-Retarget", "HX-Reswap"} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("%s: got %q, want none: the page places the notice", h, v)
		}
	}
	const open = `<p class="notice error" role="alert">`
	if !strings.HasPrefix(body, open) || !strings.HasSuffix(body, "</p>") || strings.Count(body, "<") != 2 {
		t.Errorf("answer: got %s, want one %s…</p>", body, open)
	}
	if !strings.Contains(body, "&lt;b&gt;bold&lt;/b&gt;") || !strings.Contains(body, "control or non-printing character") {
		t.Errorf("answer: got %s, want the message with the name escaped", body)
	}
}
