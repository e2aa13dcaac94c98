package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// runAs makes `latch serve`, started as root, run as uid:gid ($LATCH_RUN_AS,
// which the container image sets): a volume is mounted owned by root
// (fly.io's are), so root first gives the data folder, and anything in it
// root owns, to uid:gid, then gives up root for good before anything is
// opened. Started as any other user, it does nothing.
func runAs(spec, data string) error {
	if spec == "" || os.Getuid() != 0 {
		return nil
	}
	uid, gid, err := parseRunAs(spec)
	if err != nil {
		return err
	}
	if uid == 0 {
		return nil
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("$LATCH_RUN_AS: %w", err)
	}
	err = filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == 0 {
			return os.Lchown(path, uid, gid)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("$LATCH_RUN_AS: give %s to %d:%d: %w", data, uid, gid, err)
	}
	// Go's set*id calls change every thread of the process.
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("$LATCH_RUN_AS: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("$LATCH_RUN_AS: %w", err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("$LATCH_RUN_AS: %w", err)
	}
	if os.Getuid() != uid || os.Geteuid() != uid {
		return fmt.Errorf("$LATCH_RUN_AS: still uid %d after giving up root", os.Geteuid())
	}
	return nil
}
