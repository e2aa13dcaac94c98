//go:build windows

package main

import (
	"os"
	"os/exec"
)

// reexec starts exe with the same arguments, environment and standard
// streams, waits for it and exits with its code: Windows cannot replace a
// running process's program.
func reexec(exe string) error {
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		os.Exit(ee.ExitCode())
	}
	if err != nil {
		return err
	}
	os.Exit(0)
	return nil
}
