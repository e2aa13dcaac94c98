// Package semver reads the versions latch releases carry: MAJOR.MINOR.PATCH
// with an optional -PRERELEASE, as Semantic Versioning 2.0 orders them
// (build metadata, +…, is not allowed).
package semver

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
)

// Version is a parsed version.
type Version struct {
	Major, Minor, Patch int
	Pre                 []string // the dot-separated prerelease identifiers
}

// Parse reads v, with or without a leading "v".
func Parse(v string) (Version, error) {
	s := strings.TrimPrefix(v, "v")
	core, pre, hasPre := strings.Cut(s, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 || len(s) > 64 {
		return Version{}, fmt.Errorf("version %q: want MAJOR.MINOR.PATCH, such as 1.4.0 or 1.4.0-rc.1", v)
	}
	var n [3]int
	for i, p := range parts {
		x, err := strconv.Atoi(p)
		if err != nil || x < 0 || p != strconv.Itoa(x) {
			return Version{}, fmt.Errorf("version %q: %q is not a number without leading zeros", v, p)
		}
		n[i] = x
	}
	out := Version{Major: n[0], Minor: n[1], Patch: n[2]}
	if hasPre {
		for _, id := range strings.Split(pre, ".") {
			if id == "" || strings.Trim(id, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-") != "" {
				return Version{}, fmt.Errorf("version %q: the prerelease %q may hold letters, digits, hyphens and dots", v, pre)
			}
			out.Pre = append(out.Pre, id)
		}
	}
	return out, nil
}

// String is the version without a leading "v".
func (v Version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch)
	if len(v.Pre) > 0 {
		s += "-" + strings.Join(v.Pre, ".")
	}
	return s
}

// Compare orders a and b: -1, 0 or +1. A prerelease comes before its
// release; prerelease identifiers compare as numbers when both are, else
// as text, numbers first.
func Compare(a, b Version) int {
	if c := cmp.Compare(a.Major, b.Major); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Minor, b.Minor); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Patch, b.Patch); c != 0 {
		return c
	}
	switch {
	case len(a.Pre) == 0 && len(b.Pre) == 0:
		return 0
	case len(a.Pre) == 0:
		return 1
	case len(b.Pre) == 0:
		return -1
	}
	for i := 0; i < len(a.Pre) && i < len(b.Pre); i++ {
		x, xerr := strconv.Atoi(a.Pre[i])
		y, yerr := strconv.Atoi(b.Pre[i])
		var c int
		switch {
		case xerr == nil && yerr == nil:
			c = cmp.Compare(x, y)
		case xerr == nil:
			c = -1
		case yerr == nil:
			c = 1
		default:
			c = strings.Compare(a.Pre[i], b.Pre[i])
		}
		if c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a.Pre), len(b.Pre))
}

// Less reports whether version a comes before b; either that does not
// parse comes first.
func Less(a, b string) bool {
	va, erra := Parse(a)
	vb, errb := Parse(b)
	switch {
	case erra != nil || errb != nil:
		return erra != nil && errb == nil
	}
	return Compare(va, vb) < 0
}
