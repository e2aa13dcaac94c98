package latchtest

import (
	"os"
	"testing"
)

// RootTestsEnv, set to "sudo", says the tests that need root run in a step
// of their own (GitHub's runners are not root; ci.yml runs those with
// sudo): elsewhere they skip. Unset, a test that needs root fails under CI
// and skips otherwise.
const RootTestsEnv = "LATCH_ROOT_TESTS"

// NeedRoot stops a test that needs root (network namespaces, mounts) when
// it runs as another user, saying why.
func NeedRoot(tb testing.TB, why string) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	switch {
	case os.Getenv(RootTestsEnv) == "sudo":
		tb.Skipf("needs root (%s); run as root in a step of its own ($%s=sudo)", why, RootTestsEnv)
	case os.Getenv("CI") != "":
		tb.Fatalf("needs root (%s): run as root, or set $%s=sudo and run it apart with sudo", why, RootTestsEnv)
	default:
		tb.Skipf("needs root (%s)", why)
	}
}
