//go:build !windows

package main

import (
	"os"
	"syscall"
)

// reexec replaces this process with exe, the same arguments and
// environment: the program after an update, in the same process.
func reexec(exe string) error {
	return syscall.Exec(exe, os.Args, os.Environ())
}
