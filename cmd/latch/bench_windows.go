//go:build windows

package main

import "time"

// benchCPU and rss are not measured on Windows.
func benchCPU() time.Duration { return 0 }
func rss() int64              { return 0 }
