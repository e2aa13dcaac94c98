package server_test

import (
	"log/slog"
	"os"
)

// testLog is where a test server logs: nowhere, or with LATCH_TEST_LOG=1
// to standard error, every level, to see what a failing cluster test's
// nodes did.
func testLog() *slog.Logger {
	if os.Getenv("LATCH_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
