package main

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
)

// toolColor is each tool's line colour in the chart.
var toolColor = map[string]string{
	"sandnet":       "#1f77b4",
	"sandnet-going": "#17becf",
	"cni":           "#d62728",
	"netavark":      "#ff7f0e",
	"kernel":        "#7f7f7f",
	"kernel-lean":   "#bcbd22",
}

// svg draws p50 latency against N, log-log, one panel per operation and
// port count, one line per tool.
func (rep *report) svg() []byte {
	const (
		pw, ph   = 420, 280 // panel size
		ml, mt   = 60, 40   // panel margins: left (y labels), top (title)
		mr, mb   = 20, 40
		legendH  = 30
		cols     = 2
		fontAttr = `font-family="sans-serif" font-size="12"`
	)
	var ports, ns []int
	var tools []string
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range rep.results {
		if !r.ok {
			continue
		}
		ports = append(ports, r.ports)
		ns = append(ns, r.n)
		tools = append(tools, r.tool)
		for _, op := range []string{"attach", "detach"} {
			v := float64(r.stats(op).p50) / 1e6
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	slices.Sort(ports)
	ports = slices.Compact(ports)
	slices.Sort(ns)
	ns = slices.Compact(ns)
	tools = orderTools(tools)
	type panel struct {
		op    string
		ports int
	}
	var panels []panel
	for _, p := range ports {
		for _, op := range []string{"attach", "detach"} {
			panels = append(panels, panel{op, p})
		}
	}
	rows := (len(panels) + cols - 1) / cols
	width, height := cols*(pw+ml+mr), rows*(ph+mt+mb)+legendH+10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	if len(panels) == 0 || len(ns) == 0 {
		fmt.Fprintf(&b, `<text x="20" y="30" %s>no results</text></svg>`+"\n", fontAttr)
		return []byte(b.String())
	}
	// Log scales: y over whole decades around the data, x over the N measured.
	ylo, yhi := math.Floor(math.Log10(math.Max(lo, 0.01))), math.Ceil(math.Log10(math.Max(hi, 0.1)))
	if yhi <= ylo {
		yhi = ylo + 1
	}
	xlo, xhi := math.Log10(float64(ns[0])), math.Log10(float64(ns[len(ns)-1]))
	if xhi <= xlo {
		xlo, xhi = xlo-0.5, xhi+0.5
	}
	for k, p := range panels {
		ox := (k%cols)*(pw+ml+mr) + ml
		oy := (k/cols)*(ph+mt+mb) + mt
		x := func(n int) float64 { return float64(ox) + (math.Log10(float64(n))-xlo)/(xhi-xlo)*pw }
		y := func(v float64) float64 {
			return float64(oy+ph) - (math.Log10(math.Max(v, math.Pow(10, ylo)))-ylo)/(yhi-ylo)*ph
		}
		title := fmt.Sprintf("%s, %d published port", p.op, p.ports)
		if p.ports != 1 {
			title += "s"
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" %s font-weight="bold">%s: p50 ms vs N</text>`+"\n", ox, oy-15, fontAttr, html.EscapeString(title))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333"/>`+"\n", ox, oy, pw, ph)
		for e := ylo; e <= yhi; e++ {
			yy := y(math.Pow(10, e))
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", ox, yy, ox+pw, yy)
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" %s text-anchor="end">%s</text>`+"\n", ox-6, yy+4, fontAttr, strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", math.Pow(10, e)), "0"), "."))
		}
		for _, n := range ns {
			xx := x(n)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", xx, oy, xx, oy+ph)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" %s text-anchor="middle">N=%d</text>`+"\n", xx, oy+ph+16, fontAttr, n)
		}
		for _, t := range tools {
			var pts []string
			for _, n := range ns {
				r := rep.find(t, n, p.ports)
				if r == nil || !r.ok {
					continue
				}
				v := float64(r.stats(p.op).p50) / 1e6
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(n), y(v)))
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s N=%d: %.2f ms</title></circle>`+"\n",
					x(n), y(v), toolColor[t], html.EscapeString(toolLabel[t]), n, v)
			}
			if len(pts) > 1 {
				fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), toolColor[t])
			}
		}
	}
	// Legend under the panels.
	lx, ly := ml, rows*(ph+mt+mb)+20
	for _, t := range tools {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="14" height="4" fill="%s"/>`, lx, ly-5, toolColor[t])
		fmt.Fprintf(&b, `<text x="%d" y="%d" %s>%s</text>`+"\n", lx+18, ly, fontAttr, html.EscapeString(toolLabel[t]))
		lx += 30 + 7*len(toolLabel[t])
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

// orderTools puts the tools in the order of allTools, once each.
func orderTools(seen []string) []string {
	var out []string
	for _, t := range allTools {
		if slices.Contains(seen, t.name) {
			out = append(out, t.name)
		}
	}
	return out
}
