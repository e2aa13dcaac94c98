package qr

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestPath(t *testing.T) {
	const link = "https://latch.example.com/enroll?code=BCDF-GHJK"
	size, path, err := Path(link)
	if err != nil {
		t.Fatal(err)
	}
	// Version 3 or 4 at medium correction for a link this long, plus the
	// quiet zone of 4 modules on each side.
	if size < 29+8 || size > 41+8 {
		t.Errorf("size %d modules, want a small QR code with its quiet zone", size)
	}
	runs := regexp.MustCompile(`M(\d+) (\d+)h(\d+)v1h-(\d+)z`).FindAllStringSubmatch(path, -1)
	if len(runs) == 0 || strings.Join(regexp.MustCompile(`M\d+ \d+h\d+v1h-\d+z`).FindAllString(path, -1), "") != path {
		t.Fatalf("path is not made of runs: %.80s", path)
	}
	// The three finder patterns: a run of 7 dark modules at the top left,
	// top right and bottom left, inside the quiet zone.
	want := map[[2]string]bool{{"4", "4"}: false, {itoa(size - 11), "4"}: false, {"4", itoa(size - 11)}: false}
	for _, r := range runs {
		if r[3] == "7" {
			if _, ok := want[[2]string{r[1], r[2]}]; ok {
				want[[2]string{r[1], r[2]}] = true
			}
		}
	}
	for at, seen := range want {
		if !seen {
			t.Errorf("no finder pattern at %v", at)
		}
	}
	if _, _, err := Path(strings.Repeat("x", 5000)); err == nil {
		t.Error("a text too long for a QR code was drawn")
	}
}

func TestTerminal(t *testing.T) {
	s, err := Terminal("https://latch.example.com/enroll?code=BCDF-GHJK")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) < 18 || !strings.ContainsAny(s, "█▀▄") {
		t.Errorf("terminal drawing of %d lines:\n%s", len(lines), s)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
