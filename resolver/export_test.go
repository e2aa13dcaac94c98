package resolver

import "time"

// SetSilentAfter changes how long presence waits for a silent server,
// for the length of a test; the returned func puts it back.
func SetSilentAfter(d time.Duration) func() {
	old := silentAfter
	silentAfter = d
	return func() { silentAfter = old }
}
