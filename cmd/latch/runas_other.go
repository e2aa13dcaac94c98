//go:build !linux

package main

import "errors"

// runAs is Linux's only: elsewhere $LATCH_RUN_AS is refused.
func runAs(spec, data string) error {
	if spec == "" {
		return nil
	}
	return errors.New("$LATCH_RUN_AS works on Linux only; start latch as the user it should run as")
}
