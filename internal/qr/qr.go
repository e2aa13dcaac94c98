// Package qr draws links as QR codes, for a phone's camera: on a terminal
// in text, and on a page as an SVG path.
package qr

import (
	"fmt"
	"strings"

	qrcode "github.com/skip2/go-qrcode"
)

// Terminal draws s for a terminal, two rows of modules to a line. Most
// terminals draw light text on a dark background, so the light modules
// and the quiet zone are the block characters and the dark modules the
// background.
func Terminal(s string) (string, error) {
	q, err := qrcode.New(s, qrcode.Medium)
	if err != nil {
		return "", fmt.Errorf("qr code: %w", err)
	}
	return q.ToSmallString(false), nil
}

// Path draws s as an SVG path in a square of size modules, quiet zone
// included: one "M x y h n v1 h-n z" per run of dark modules in a row.
func Path(s string) (size int, path string, err error) {
	q, err := qrcode.New(s, qrcode.Medium)
	if err != nil {
		return 0, "", fmt.Errorf("qr code: %w", err)
	}
	bm := q.Bitmap()
	var b strings.Builder
	for y, row := range bm {
		for x := 0; x < len(row); {
			if !row[x] {
				x++
				continue
			}
			start := x
			for x < len(row) && row[x] {
				x++
			}
			fmt.Fprintf(&b, "M%d %dh%dv1h-%dz", start, y, x-start, x-start)
		}
	}
	return len(bm), b.String(), nil
}
