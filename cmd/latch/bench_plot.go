package main

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
)

func benchPlotCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "plot",
		Usage:     "draw the curves of latch bench accounts runs as an SVG",
		ArgsUsage: "RUN.json [RUN.json ...]",
		Description: `Reads the --json output of one or more latch bench accounts runs and
writes an SVG with four panels against the number of persons: the time to
create a person (p50), a restart to ready, a cold connect and first get
(p99), and the resident memory per person (above the empty server's). Both axes are logarithmic, so
a cost that grows with the square of the persons rises twice as steeply
as one that grows with them. Each run is a line, named by --labels or by
its file's name.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Value: "-", Usage: "the SVG file to write; - is standard output"},
			&cli.StringFlag{Name: "labels", Usage: "comma-separated names of the runs, in the order given (default: the files' names)"},
			&cli.StringFlag{Name: "title", Value: "latch bench accounts", Usage: "the plot's title"},
		},
		Action: func(c *cli.Context) error {
			files := c.Args().Slice()
			if len(files) == 0 {
				return usagef("give one or more files of latch bench accounts --json")
			}
			var labels []string
			if l := c.String("labels"); l != "" {
				labels = strings.Split(l, ",")
				if len(labels) != len(files) {
					return usagef("--labels: %d names for %d files", len(labels), len(files))
				}
			}
			var runs []plotRun
			for i, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					return err
				}
				var res benchResult
				if err := json.Unmarshal(b, &res); err != nil || len(res.Checkpoints) == 0 {
					return usagef("%s: not the --json output of latch bench accounts (%v)", f, err)
				}
				name := strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))
				if labels != nil {
					name = strings.TrimSpace(labels[i])
				}
				runs = append(runs, plotRun{name: name, res: res})
			}
			if c.String("out") == "-" {
				return plotSVG(e.stdout, c.String("title"), runs)
			}
			f, err := os.Create(c.String("out"))
			if err != nil {
				return err
			}
			if err := plotSVG(f, c.String("title"), runs); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		},
	}
}

type plotRun struct {
	name string
	res  benchResult
}

// plotPanel is one of the figures, read from each checkpoint of a run.
type plotPanel struct {
	title, unit string
	value       func(benchResult, benchCheckpoint) float64
}

var plotPanels = []plotPanel{
	{"create a person, p50", "ms", func(_ benchResult, c benchCheckpoint) float64 { return float64(c.CreateP50) / 1e6 }},
	{"restart to ready", "s", func(_ benchResult, c benchCheckpoint) float64 { return c.Restart.Seconds() }},
	{"cold connect + first get, p99", "ms", func(_ benchResult, c benchCheckpoint) float64 { return float64(c.ColdP99) / 1e6 }},
	// Above what the server took before the first person.
	{"resident memory per person", "KiB", func(r benchResult, c benchCheckpoint) float64 {
		return float64(c.RSS-r.BaseRSS) / 1024 / float64(max(c.Persons, 1))
	}},
}

var plotColours = []string{"#1f6fb2", "#d1495b", "#2a9d3f", "#8e5cc8", "#e08e0b", "#444444"}

// plotSVG draws the panels side by side in two rows.
func plotSVG(w io.Writer, title string, runs []plotRun) error {
	const pw, ph, margin, cols = 420, 280, 60, 2
	rows := (len(plotPanels) + cols - 1) / cols
	width, height := cols*pw, rows*ph+70
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" text-anchor="middle">%s</text>`+"\n", width/2, html.EscapeString(title))
	// The legend.
	x := 20
	for i, r := range runs {
		col := plotColours[i%len(plotColours)]
		fmt.Fprintf(&b, `<line x1="%d" y1="46" x2="%d" y2="46" stroke="%s" stroke-width="3"/><text x="%d" y="50">%s</text>`+"\n",
			x, x+24, col, x+30, html.EscapeString(r.name))
		x += 40 + 7*len(r.name)
	}
	// Every panel shares the persons axis.
	xmin, xmax := math.Inf(1), math.Inf(-1)
	for _, r := range runs {
		for _, c := range r.res.Checkpoints {
			xmin, xmax = math.Min(xmin, float64(c.Persons)), math.Max(xmax, float64(c.Persons))
		}
	}
	lx0, lx1 := decadeBelow(xmin), decadeAbove(xmax)
	for pi, p := range plotPanels {
		ox, oy := (pi%cols)*pw, 70+(pi/cols)*ph
		left, top, right, bottom := ox+margin, oy+28, ox+pw-20, oy+ph-40
		ymin, ymax := math.Inf(1), math.Inf(-1)
		for _, r := range runs {
			for _, c := range r.res.Checkpoints {
				if v := p.value(r.res, c); v > 0 {
					ymin, ymax = math.Min(ymin, v), math.Max(ymax, v)
				}
			}
		}
		if math.IsInf(ymin, 1) {
			ymin, ymax = 1, 10
		}
		ly0, ly1 := decadeBelow(ymin), decadeAbove(ymax)
		if ly1 == ly0 {
			ly1++
		}
		px := func(v float64) float64 {
			return float64(left) + (math.Log10(v)-lx0)/(lx1-lx0)*float64(right-left)
		}
		py := func(v float64) float64 {
			return float64(bottom) - (math.Log10(v)-ly0)/(ly1-ly0)*float64(bottom-top)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="13" text-anchor="middle">%s (%s)</text>`+"\n", (left+right)/2, oy+16,
			html.EscapeString(p.title), p.unit)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`+"\n", left, top, right-left, bottom-top)
		for d := lx0; d <= lx1; d++ {
			v := math.Pow(10, d)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e4e4e4"/><text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n",
				px(v), top, px(v), bottom, px(v), bottom+16, plotNumber(v))
		}
		for d := ly0; d <= ly1; d++ {
			v := math.Pow(10, d)
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e4e4e4"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n",
				left, py(v), right, py(v), left-6, py(v)+4, plotNumber(v))
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="#555">persons</text>`+"\n", (left+right)/2, bottom+32)
		for i, r := range runs {
			col := plotColours[i%len(plotColours)]
			var pts []string
			for _, c := range r.res.Checkpoints {
				if v := p.value(r.res, c); v > 0 {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(float64(c.Persons)), py(v)))
				}
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", col, strings.Join(pts, " "))
			for _, pt := range pts {
				xy := strings.Split(pt, ",")
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", xy[0], xy[1], col)
			}
		}
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func decadeBelow(v float64) float64 { return math.Floor(math.Log10(v)) }
func decadeAbove(v float64) float64 { return math.Ceil(math.Log10(v)) }

// plotNumber writes a power of ten shortly: 0.1, 1, 10, 1k, 100k, 1M.
func plotNumber(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}
