//go:build windows

package client

import "os"

// swapExecutable puts next in exe's place: Windows does not replace a
// running program's file, but lets it be renamed, so exe goes aside first
// (and is put back if next cannot take its place). The old file is removed
// at the next update.
func swapExecutable(next, exe string) error {
	old := exe + ".old"
	os.Remove(old)
	if err := os.Rename(exe, old); err != nil {
		return err
	}
	if err := os.Rename(next, exe); err != nil {
		os.Rename(old, exe)
		return err
	}
	return nil
}
