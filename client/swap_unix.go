//go:build !windows

package client

import (
	"os"
	"path/filepath"
)

// swapExecutable renames next over exe, in one step, and makes the rename
// durable. A running program keeps the file it was started from.
func swapExecutable(next, exe string) error {
	if err := os.Rename(next, exe); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(exe))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
