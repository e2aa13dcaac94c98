package main

import (
	"fmt"
	"strconv"
	"strings"
)

// parseRunAs reads "uid:gid", numbers both.
func parseRunAs(spec string) (uid, gid int, err error) {
	u, g, ok := strings.Cut(spec, ":")
	uid, uerr := strconv.Atoi(u)
	gid, gerr := strconv.Atoi(g)
	if !ok || uerr != nil || gerr != nil || uid < 0 || gid < 0 {
		return 0, 0, fmt.Errorf("$LATCH_RUN_AS %q: want uid:gid, two numbers", spec)
	}
	return uid, gid, nil
}
